"""Duplicate streams across ranks: the store protocol, then real process groups."""

from __future__ import annotations

import json
import multiprocessing
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch.distributed as dist
import torch.multiprocessing
from structlog.testing import capture_logs

import rank_jobs
from seedwatch import DuplicateStreamWarning
from seedwatch._collector import Collector
from seedwatch._finding import Member
from seedwatch._ranks import SLOTS, Distributed, RankLink, RankSync, connect
from seedwatch._report import RESEEDED_GLOBAL, Report, Stream

pytestmark = [
    pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning"),
    pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available"),
]


@pytest.fixture(name="store")
def _store(tmp_path: Path) -> Any:
    return dist.FileStore(str(tmp_path / "store"), 1)  # type: ignore[attr-defined]


def member(rank: int, worker: int = 0, generation: int = 0) -> Member:
    return Member(generation, worker, 1000 + 10 * rank + worker, rank, 7)


class TestRankLink:
    def test_the_first_publisher_sees_nobody(self, store: Any) -> None:
        """A stream nobody else drew is nobody else's."""
        link = RankLink(store, 0, "ns")

        heard = link.publish("torch", "000000000000000f", member(0))

        assert (0, ()) == (heard.count, heard.members)

    def test_every_publishing_rank_is_counted_once(self, store: Any) -> None:
        """Ranks with nothing in common still count each other, so a clean result says so."""
        first, second, idle = (
            RankLink(store, 0, "ns"),
            RankLink(store, 1, "ns"),
            RankLink(store, 2, "ns"),
        )
        first.publish("torch", "000000000000000f", member(0))
        first.publish("numpy", "00000000000000aa", member(0))
        second.publish("torch", "00000000000000ee", member(1))

        assert (2, 2, 2) == (first.ranks(), second.ranks(), idle.ranks())

    def test_a_later_rank_sees_the_earlier_ones(self, store: Any) -> None:
        """The second rank to publish a stream learns who drew it before."""
        RankLink(store, 0, "ns").publish("torch", "000000000000000f", member(0))

        heard = RankLink(store, 1, "ns").publish("torch", "000000000000000f", member(1))

        assert 1 == heard.count
        assert [member(0)] == list(heard.members)

    def test_the_earlier_rank_hears_through_its_inbox(self, store: Any) -> None:
        """The first publisher learns of later ones on its next look at the news."""
        first, second = RankLink(store, 0, "ns"), RankLink(store, 1, "ns")
        first.publish("torch", "000000000000000f", member(0))
        second.publish("torch", "000000000000000f", member(1))

        assert [("torch", "000000000000000f")] == first.news()
        assert [member(1)] == list(first.look("torch", "000000000000000f").members)
        assert [] == first.news()

    def test_own_ranks_streams_are_not_elsewhere(self, store: Any) -> None:
        """Two workers of one rank are that rank's business, not a rank finding."""
        link = RankLink(store, 0, "ns")
        link.publish("rng", "000000000000000f", member(0, worker=0))

        assert 0 == link.publish("rng", "000000000000000f", member(0, worker=1)).count

    def test_counts_stay_exact_beyond_the_named_slots(self, store: Any) -> None:
        """After SLOTS members, more are counted but not named: O(1) per report."""
        for rank in range(SLOTS + 4):
            RankLink(store, rank, "ns").publish("torch", "000000000000000f", member(rank))

        heard = RankLink(store, 99, "ns").look("torch", "000000000000000f")

        assert (SLOTS + 4, SLOTS) == (heard.count, len(heard.members))

    def test_namespaces_do_not_see_each_other(self, store: Any) -> None:
        """Two monitors or runs on one store are separate."""
        RankLink(store, 0, "run-a").publish("torch", "000000000000000f", member(0))

        assert (
            0 == RankLink(store, 1, "run-b").publish("torch", "000000000000000f", member(1)).count
        )

    def test_malformed_values_are_ignored(self, store: Any) -> None:
        """Garbage in member slots and inboxes is logged and skipped, never fatal."""
        store.add("ns/s/torch/000000000000000f/n", 1)
        store.set("ns/s/torch/000000000000000f/m1", b"\x80not json")
        store.add("ns/inbox/1/n", 2)
        store.set("ns/inbox/1/1", b'{"a": 1}')
        store.set("ns/inbox/1/2", b'["torch", "000000000000000f"]')
        link = RankLink(store, 1, "ns")

        heard = link.publish("torch", "000000000000000f", member(1))

        assert (1, ()) == (heard.count, heard.members)
        assert [("torch", "000000000000000f")] == link.news()

    def test_a_crashed_writer_never_blocks(self, store: Any) -> None:
        """A slot or inbox entry counted but never written (a dead rank) costs no waiting."""
        store.add("ns/s/torch/000000000000000f/n", 1)  # a rank died between counting and writing
        store.add("ns/inbox/1/n", 1)
        link = RankLink(store, 1, "ns")
        store.set_timeout(timedelta(seconds=60))
        started = time.monotonic()

        heard = link.publish("torch", "000000000000000f", member(1))
        news = link.news()

        assert time.monotonic() - started < 2
        assert (1, (), []) == (heard.count, heard.members, news)


class TestConnect:
    def test_no_process_group_means_one_machine(self) -> None:
        """Without a process group, automatic mode is off."""
        assert connect(None, "label") is None

    def test_insisting_without_a_store_warns_and_stays_local(self) -> None:
        """distributed=True with nothing to connect to logs why and carries on."""
        with capture_logs() as logs:
            link = connect(True, "label")

        assert link is None
        assert [("seedwatch_not_distributed", "warning")] == [
            (log["event"], log["log_level"]) for log in logs
        ]

    def test_an_explicit_store_and_rank(self, store: Any) -> None:
        """Distributed(store, rank, namespace) connects without a process group."""
        link = connect(Distributed(store=store, rank=3, namespace="mine"), "label")

        assert link is not None
        assert 3 == link.rank


def run_ranks(world: int, scenario: str, tmp_path: Path) -> list[dict[str, Any]]:
    torch.multiprocessing.spawn(  # type: ignore[attr-defined,no-untyped-call]
        rank_jobs.run_rank,
        args=(world, rank_jobs.free_port(), str(tmp_path), scenario),
        nprocs=world,
        join=True,
    )
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


def kinds(result: dict[str, Any]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    return [(tuple(f["sources"]), tuple(f["kinds"])) for f in result["findings"]]


class TestProcessGroups:
    @pytest.mark.parametrize("world", [2, 4])
    def test_the_same_seed_on_every_rank(self, world: int, tmp_path: Path) -> None:
        """manual_seed(42) on every rank: numpy, random and torch repeat across ranks."""
        results = run_ranks(world, "same_seed", tmp_path)

        for result in results:
            assert [(("numpy", "random", "torch"), ("ranks",))] == kinds(result)
            assert all(list(range(world)) == f["ranks"] for f in result["findings"])

    def test_distinct_seeds_are_clean(self, tmp_path: Path) -> None:
        """manual_seed(42 + rank) gives every rank its own streams."""
        results = run_ranks(2, "distinct", tmp_path)

        assert [[], []] == [result["findings"] for result in results]

    def test_instance_generators_repeat_across_ranks(self, tmp_path: Path) -> None:
        """A generator built in __init__ repeats in workers, epochs and ranks."""
        results = run_ranks(2, "instance", tmp_path)

        for result in results:
            assert [(("rng",), ("workers", "epochs", "ranks"))] == kinds(result)

    def test_expect_shared_applies_across_ranks(self, tmp_path: Path) -> None:
        """A declared shard order equal on every rank is not reported."""
        results = run_ranks(2, "expect_shared", tmp_path)

        assert [[], []] == [result["findings"] for result in results]

    def test_strict_mode_raises_on_a_rank(self, tmp_path: Path) -> None:
        """In strict mode the loop of a rank that repeats another's stream raises."""
        results = run_ranks(2, "strict", tmp_path)

        raised = [result["raised"] for result in results if result["raised"]]
        assert raised
        assert all("repeats across ranks" in message for message in raised)

    def test_a_dead_rank_does_not_hang_the_others(self, tmp_path: Path) -> None:
        """A rank that crashed mid-write leaves holes; the survivor's calls still return."""
        context = multiprocessing.get_context("spawn")
        port = rank_jobs.free_port()
        ranks = [
            context.Process(target=rank_jobs.lonely_rank, args=(rank, port, str(tmp_path)))
            for rank in (0, 1)
        ]
        for process in ranks:
            process.start()
        for process in ranks:
            process.join(timeout=120)

        assert [0, 3] == [process.exitcode for process in ranks]
        assert {"findings": 0} == json.loads((tmp_path / "rank0.json").read_text())


def test_automatic_mode_links_once_a_process_group_exists(tmp_path: Path) -> None:
    """A report made before init_process_group stays local; later ones reach the store."""
    collector = Collector("late", frozenset(), RankSync(None, "Late:0"))

    def report(pid: int, fingerprint: str) -> Report:
        return Report("main:1", None, pid, 0, {"numpy": Stream(fingerprint, "global")})

    collector.submit(report(1, "00000000000000aa"), strict=False)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        collector.submit(report(2, "00000000000000bb"), strict=False)
        store = dist.distributed_c10d._get_default_store()  # noqa: SLF001 - the group's own store
        counts = [
            store.add(f"seedwatch/run/Late:0/s/numpy/{fp}/n", 0)
            for fp in ("00000000000000aa", "00000000000000bb")
        ]
    finally:
        dist.destroy_process_group()

    assert [0, 1] == counts


class InterleavingStore:
    """
    A rank's store that runs another rank's report just after its own first stream is in.

    The order two ranks that report at the same moment may take: this rank
    publishes its first stream, the other rank publishes both of its own, then
    this rank publishes its second. Afterwards the store fails, as one does once
    the job destroys its process group.
    """

    def __init__(self, store: Any, other_rank: Any) -> None:
        self._store = store
        self._other_rank = other_rank
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        if self.broken:
            return BrokenStore().__getattr__(name)
        method = getattr(self._store, name)
        if name != "set":
            return method

        def set_then_interleave(key: str, value: Any) -> Any:
            result = method(key, value)
            other, self._other_rank = self._other_rank, None
            if other is not None:
                other()
            return result

        return set_then_interleave


def test_a_stream_joined_while_its_report_was_shared_is_seen_without_news(
    store: Any,
) -> None:
    """
    Its other rank published both of a report's streams between this rank's two.

    The first stream is this rank's by inbox news, which comes too late when the
    job destroys its process group; the second, seen at once, tells that the
    other rank had published the first already. Seen as one problem: the
    stream before the first item (``aa``), not the one after it (``bb``).
    """

    def report(rank: int) -> Report:
        return Report(
            "workers:1::0",
            0,
            100 + rank,
            7,
            {"torch": Stream("00000000000000aa", "global")},
            later={"torch": Stream("00000000000000bb", RESEEDED_GLOBAL)},
        )

    other = Collector("t", frozenset(), RankSync(Distributed(store, 1, "ns"), "x"))

    def other_reports() -> None:
        with warnings.catch_warnings():  # what the other rank says is its own
            warnings.simplefilter("ignore")
            other.submit(report(1), strict=False)

    interleaving = InterleavingStore(store, other_reports)
    this = Collector("t", frozenset(), RankSync(Distributed(interleaving, 0, "ns"), "x"))

    with pytest.warns(DuplicateStreamWarning) as warned:
        this.submit(report(0), strict=False)
    interleaving.broken = True

    assert [(("torch",), ("ranks",), ("00000000000000aa",))] == [
        (f.sources, f.kinds, f.fingerprints) for f in this.findings()
    ]
    assert 1 == len(warned), "announced once, as the problem it is"


class BrokenStore:
    """A store whose server went away: every operation fails."""

    def __getattr__(self, name: str) -> Any:
        def fail(*_args: object) -> None:
            raise RuntimeError(f"store {name} failed: connection reset")

        return fail


def test_a_failing_store_leaves_local_checks_working() -> None:
    """Store errors are logged once and the rank carries on as on one machine."""
    from pipelines import HoldsGenerator, load
    from seedwatch import findings, monitor

    monitored = monitor(HoldsGenerator(), distributed=Distributed(store=BrokenStore(), rank=0))

    load(monitored, epochs=1)

    assert [("rng", "workers")] == [(f.source, f.kind) for f in findings(monitored)]
