"""
A hostile writer in the c10d store: seedwatch's keys hold what no rank wrote.

Every test runs over a real TCPStore on loopback. Each simulated rank has a
connection of its own, as in a real job, and the hostile writer writes through
yet another one into the keys that :mod:`seedwatch._ranks` uses.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import torch.distributed as dist
from structlog.testing import capture_logs

from seedwatch._collector import Collector
from seedwatch._finding import Member
from seedwatch._ranks import (
    MAX_COUNT,
    MAX_NOTICES,
    MAX_VALUE,
    Distributed,
    RankLink,
    RankSync,
    connect,
)
from seedwatch._report import Report, Stream

pytestmark = [
    pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning"),
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available"),
    pytest.mark.timeout(120),
]

FP = "000000000000000f"
OTHER = "00000000000000aa"
STREAM = f"ns/s/torch/{FP}"


@pytest.fixture(name="server")
def _server() -> Any:
    return dist.TCPStore(  # type: ignore[attr-defined]
        "127.0.0.1", 0, 1, is_master=True, timeout=timedelta(seconds=10), wait_for_workers=False
    )


def connection(server: Any) -> Any:
    """Open another client connection to the store, as another process would."""
    return dist.TCPStore(  # type: ignore[attr-defined]
        "127.0.0.1", server.port, is_master=False, timeout=timedelta(seconds=10)
    )


@pytest.fixture(name="hostile")
def _hostile(server: Any) -> Any:
    return connection(server)


@pytest.fixture(name="user")
def _user(server: Any) -> Any:
    """Rank 0's own connection: the one its process group and its code use."""
    return connection(server)


def forge(hostile: Any, key: str, value: str | bytes) -> None:
    """Write as another process would, and wait until the server has it (a set is not acked)."""
    hostile.set(key, value)
    hostile.check([key])


def member(rank: int) -> Member:
    return Member(0, 0, 1000 + rank, rank, 7)


def assert_usable(store: Any) -> None:
    """The user's own traffic on a connection: set, get, add, and a store-based barrier."""
    store.set("user/key", "value")
    assert b"value" == store.get("user/key")
    assert 1 == store.add("user/arrived", 1)
    store.wait(["user/arrived"], timedelta(seconds=5))


def bad_values(logs: list[MutableMapping[str, Any]]) -> list[str]:
    return [log["kind"] for log in logs if log["event"] == "seedwatch_bad_store_value"]


class TestCounters:
    def test_a_non_numeric_counter_leaves_the_users_connection_working(
        self, user: Any, hostile: Any, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """TCPStore drops a client that adds to b"abc": seedwatch never adds to it."""
        forge(hostile, f"{STREAM}/n", b"abc")

        with capture_logs() as logs:
            heard = RankLink(user, 0, "ns").publish("torch", FP, member(0))

        assert (0, ()) == (heard.count, heard.members)
        assert ["counter"] == bad_values(logs)
        assert b"abc" == hostile.get(f"{STREAM}/n")
        assert_usable(user)
        # The server (in this process) logs every add it could not parse.
        assert "stoll" not in capfd.readouterr().err

    def test_a_value_swapped_in_before_the_add_never_breaks_the_connection(
        self, user: Any, hostile: Any
    ) -> None:
        """A counter forged between seedwatch's read and its add: the stream is unknown, no more."""
        race = Race(hostile, f"{STREAM}/n", b"abc")
        hostile.add(f"{STREAM}/n", 1)
        link = RankLink(RacingStore(user, race), 0, "ns")

        with capture_logs() as logs:
            assert 0 == link.publish("torch", FP, member(0)).count
        RankLink(hostile, 1, "ns").publish("torch", OTHER, member(1))
        later = link.publish("torch", OTHER, member(0))

        assert race.fired
        assert ["counter"] == bad_values(logs)
        assert_usable(user)
        assert (1, (member(1),)) == (later.count, later.members)

    @pytest.mark.parametrize(
        "value",
        [b"-1", b"-9", str(MAX_COUNT + 1).encode(), b"99999999999999999999", b"7abc", b" 7", b""],
    )
    def test_an_impossible_total_invents_no_duplicate(
        self, user: Any, hostile: Any, value: bytes
    ) -> None:
        """A negative, absurd or loosely numeric total makes the stream unknown, not shared."""
        forge(hostile, f"{STREAM}/n", value)
        link = RankLink(user, 0, "ns")

        published = link.publish("torch", FP, member(0))
        looked = link.look("torch", FP)

        assert (0, 0) == (published.count, looked.count)
        assert value == hostile.get(f"{STREAM}/n")
        assert_usable(user)

    def test_a_rank_count_above_the_total_invents_no_duplicate(
        self, user: Any, hostile: Any
    ) -> None:
        """This rank's own count above the total is forged: the stream is unknown."""
        forge(hostile, f"{STREAM}/r0", b"5")
        link = RankLink(user, 0, "ns")

        with capture_logs() as logs:
            published = link.publish("torch", FP, member(0))
            looked = link.look("torch", FP)

        assert (0, 0) == (published.count, looked.count)
        assert ["counter"] == bad_values(logs)  # twice forged, one line: the log is throttled

    @pytest.mark.parametrize("value", [b"abc", b"-1"])
    def test_a_forged_told_counter_hides_no_duplicate(
        self, user: Any, hostile: Any, value: bytes
    ) -> None:
        """A forged "already told" mark still lets the first rank hear of the second."""
        forge(hostile, f"{STREAM}/told0", value)
        first, second = RankLink(user, 0, "ns"), RankLink(connection(hostile), 1, "ns")
        first.publish("torch", FP, member(0))

        assert 1 == second.publish("torch", FP, member(1)).count
        assert [("torch", FP)] == first.news()
        assert_usable(user)

    def test_a_forged_inbox_counter_breaks_nothing(self, user: Any, hostile: Any) -> None:
        """A non-numeric inbox counter is neither read as a count nor added to, by either side."""
        forge(hostile, "ns/inbox/0/n", b"abc")
        first, second = RankLink(user, 0, "ns"), RankLink(connection(hostile), 1, "ns")
        first.publish("torch", FP, member(0))

        assert 1 == second.publish("torch", FP, member(1)).count
        assert [] == first.news()
        assert b"abc" == hostile.get("ns/inbox/0/n")
        assert_usable(user)


class TestValues:
    def test_a_non_hex_fingerprint_in_an_inbox_leaves_findings_working(
        self, user: Any, hostile: Any
    ) -> None:
        """A notice naming no fingerprint is skipped; findings() keeps answering."""
        collector = Collector("hostile", frozenset(), RankSync(Distributed(user, 0, "ns"), "L:0"))
        collector.submit(report(FP), strict=False)
        hostile.add("ns/inbox/0/n", 2)
        forge(hostile, "ns/inbox/0/1", json.dumps(["torch", "not a fingerprint"]))
        forge(hostile, "ns/inbox/0/2", json.dumps(["torch", FP.upper()]))

        assert [] == list(collector.findings())
        assert [] == list(collector.findings())

    def test_an_oversized_value_is_not_decoded(self, user: Any, hostile: Any) -> None:
        """7 MB of a valid member, padded with blanks, is dropped before any parsing."""
        padded = json.dumps(member(1).as_dict()).encode() + b" " * (7 << 20)
        hostile.add(f"{STREAM}/n", 1)
        hostile.add(f"{STREAM}/r1", 1)
        forge(hostile, f"{STREAM}/m1", padded)
        hostile.add("ns/inbox/0/n", 1)
        forge(hostile, "ns/inbox/0/1", json.dumps(["torch", FP]).encode() + b" " * (7 << 20))
        link = RankLink(user, 0, "ns")

        with capture_logs() as logs:
            heard = link.publish("torch", FP, member(0))
            news = link.news()

        assert (1, (), []) == (heard.count, heard.members, news)
        assert ["member", "inbox"] == bad_values(logs)
        assert all(len(log["value"]) <= 200 for log in logs)

    @pytest.mark.parametrize("depth", [100_000, MAX_VALUE])
    def test_a_deeply_nested_value_is_skipped(self, user: Any, hostile: Any, depth: int) -> None:
        """JSON nested deeper than Python recurses is a bad value, not a RecursionError."""
        hostile.add(f"{STREAM}/n", 1)
        forge(hostile, f"{STREAM}/m1", b"[" * depth)
        hostile.add("ns/inbox/0/n", 1)
        forge(hostile, "ns/inbox/0/1", b"[" * depth)
        link = RankLink(user, 0, "ns")

        heard = link.publish("torch", FP, member(0))

        assert (1, (), []) == (heard.count, heard.members, link.news())


class TestInboxFlood:
    def test_notices_about_streams_this_rank_never_drew_are_no_news(
        self, user: Any, hostile: Any
    ) -> None:
        """Well-formed notices for streams rank 0 never published are dropped, never re-read."""
        sync = RankSync(Distributed(user, 0, "ns"), "L:0")
        sync.share([("torch", FP, member(0))])
        hostile.add("ns/inbox/0/n", 50)
        for index in range(1, 51):
            forge(hostile, f"ns/inbox/0/{index}", json.dumps(["torch", f"{index + 256:016x}"]))

        assert [] == sync.news()
        assert [] == sync.news(refresh=True)

    def test_one_call_reads_a_bounded_number_of_notices(self, user: Any, hostile: Any) -> None:
        """A flooded inbox costs a call at most MAX_NOTICES reads; a real notice still arrives."""
        first, second = RankLink(user, 0, "ns"), RankLink(hostile, 1, "ns")
        first.publish("torch", FP, member(0))
        flood = MAX_NOTICES + 10
        hostile.add("ns/inbox/0/n", flood)
        for index in range(1, flood + 1):
            hostile.set(f"ns/inbox/0/{index}", json.dumps(["torch", OTHER]))
        second.publish("torch", FP, member(1))  # the real notice, after the flood

        calls = [first.news(), first.news()]

        assert [MAX_NOTICES, 11] == [len(found) for found in calls]
        assert ("torch", FP) == calls[1][-1]


class TestRankCheckingSurvives:
    def test_a_real_duplicate_is_found_after_every_kind_of_bad_value(
        self, server: Any, user: Any, hostile: Any
    ) -> None:
        """After garbage in every key, two ranks that share a stream still both find it."""
        forge(hostile, "ns/s/torch/0000000000000001/n", b"abc")
        forge(hostile, "ns/s/torch/0000000000000002/n", b"-3")
        forge(hostile, "ns/s/torch/0000000000000003/r0", b"99")
        hostile.add("ns/s/torch/0000000000000004/n", 1)
        forge(hostile, "ns/s/torch/0000000000000004/m1", b"[" * 100_000)
        hostile.add("ns/inbox/0/n", 3)
        forge(hostile, "ns/inbox/0/1", json.dumps(["torch", "zz"]))
        forge(hostile, "ns/inbox/0/2", b"[" * 100_000)
        forge(hostile, "ns/inbox/0/3", b" " * (7 << 20))
        first = RankSync(Distributed(user, 0, "ns"), "L:0")
        second = RankSync(Distributed(connection(server), 1, "ns"), "L:0")
        garbage = [("torch", f"000000000000000{i}", member(0)) for i in range(1, 5)]
        # The fourth is a stream another rank counted but never named: a writer that died.
        assert [("0000000000000004", 1)] == [(fp, e.count) for _, fp, e in first.share(garbage)]
        assert [] == first.news()

        first.share([("torch", FP, member(0))])
        shared = second.share([("torch", FP, member(1))])
        heard = first.news()

        assert [("torch", FP, 1, (member(0),))] == [
            (s, fp, e.count, e.members) for s, fp, e in shared
        ]
        assert [("torch", FP, 1, (member(1),))] == [
            (s, fp, e.count, e.members) for s, fp, e in heard
        ]
        assert_usable(user)


class TestDistributed:
    @pytest.mark.parametrize(
        ("arguments", "error", "named"),
        [
            ({"store": object(), "rank": "0", "namespace": 5}, TypeError, "store="),
            ({"rank": "0"}, TypeError, "rank="),
            ({"rank": True}, TypeError, "rank="),
            ({"rank": 1.0}, TypeError, "rank="),
            ({"rank": -1}, ValueError, "rank="),
            ({"rank": 1 << 40}, ValueError, "rank="),
            ({"namespace": 5}, TypeError, "namespace="),
            ({"namespace": ""}, ValueError, "namespace="),
            ({"namespace": "n" * 10_000}, ValueError, "namespace="),
        ],
    )
    def test_bad_arguments_name_the_parameter(
        self, arguments: dict[str, Any], error: type[Exception], named: str
    ) -> None:
        """Each bad argument raises at once, with the parameter's name in the message."""
        with pytest.raises(error, match=f"Distributed\\({named}"):
            Distributed(**arguments)

    def test_a_numpy_rank_is_published_as_an_int(self, user: Any, hostile: Any) -> None:
        """rank=np.int64(1) is an int for the JSON that other ranks read."""
        settings = Distributed(user, np.int64(1), "ns")  # type: ignore[arg-type]
        RankLink(hostile, 0, "ns").publish("torch", FP, member(0))
        link = connect(settings, "label")
        assert link is not None

        heard = link.publish("torch", FP, member(1))

        assert int is type(settings.rank)
        assert [member(0)] == list(heard.members)

    def test_a_rank_variable_int_cannot_read_is_no_rank(
        self, user: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """$RANK="²" passes str.isdigit() but is no rank: no link, no ValueError."""
        monkeypatch.setenv("RANK", "²")

        with capture_logs() as logs:
            link = connect(Distributed(user), "label")

        assert link is None
        assert ["seedwatch_not_distributed"] == [log["event"] for log in logs]


def report(fp: str) -> Report:
    return Report("main:1", None, 1, 0, {"torch": Stream(fp, "global")})


@dataclass
class Race:
    """A forged write that a :class:`RacingStore` makes once, right after seedwatch reads."""

    hostile: Any
    key: str
    value: bytes
    fired: bool = False


class RacingStore:
    """
    A real store connection; the first read of the race's key is followed by its forged write.

    This makes deterministic the race a hostile writer could win: the value
    changes between seedwatch's read of a counter and its add.
    """

    def __init__(self, store: Any, race: Race) -> None:
        self._store = store
        self.race = race

    def multi_get(self, keys: list[str]) -> list[bytes]:
        values: list[bytes] = self._store.multi_get(keys)
        if self.race.key in keys and not self.race.fired:
            self.race.fired = True
            forge(self.race.hostile, self.race.key, self.race.value)
        return values

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
