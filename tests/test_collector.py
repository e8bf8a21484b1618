"""The collector: record a report, share it with other ranks, announce, answer the reporter."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable

import pytest
from structlog.testing import capture_logs

from seedwatch import DuplicateStreamWarning
from seedwatch._collector import Collector, collector_for
from seedwatch._finding import Member
from seedwatch._ranks import Elsewhere
from seedwatch._report import Report, Stream
from seedwatch._transport import send
from seedwatch._wire import encode_request

FP = "00000000000000aa"


def report(pid: int, worker: int | None = 0, generation: str = "g0", fp: str = FP) -> Report:
    return Report(generation, worker, pid, 7, {"rng": Stream(fp, "np.random.RandomState")})


class FakeRanks:
    """Other ranks as a test describes them: what they drew, and what they told us."""

    def __init__(self, rank: int, drawn: dict[tuple[str, str], Elsewhere]) -> None:
        self._rank = rank
        self.drawn = drawn
        self.told: list[tuple[str, str]] = []
        self.shared: list[tuple[str, str, Member]] = []
        self.published = 1  # ranks that published streams, this one included

    def rank(self) -> int | None:
        return self._rank

    def share(self, streams: Iterable[tuple[str, str, Member]]) -> list[tuple[str, str, Elsewhere]]:
        streams = list(streams)
        self.shared += streams
        return [(s, fp, self.drawn[s, fp]) for s, fp, _ in streams if (s, fp) in self.drawn]

    def news(self, *, refresh: bool = False) -> list[tuple[str, str, Elsewhere]]:
        told, self.told = self.told, []
        return [(s, fp, self.drawn[s, fp]) for s, fp in told]

    def ranks(self) -> int:
        return self.published


@pytest.fixture(name="collector")
def _collector() -> Collector:
    return Collector("test", frozenset())


class TestSubmit:
    def test_a_repeat_answers_a_strict_reporter_with_the_error(self, collector: Collector) -> None:
        """The second process with the stream gets the strict-mode message; the first did not."""
        first = collector.submit(report(1), strict=True)
        second = collector.submit(report(2, worker=1), strict=True)

        assert first is None
        assert second is not None
        assert second.startswith("seedwatch: duplicate random streams\n- 'rng' repeats across")

    def test_warn_mode_warns_once_and_answers_nothing(self, collector: Collector) -> None:
        """In warn mode, in a script, a finding is one warning (no log line), and no verdict."""
        collector.submit(report(1), strict=False)
        with pytest.warns(DuplicateStreamWarning, match="'rng'") as warned:
            verdict = collector.submit(report(2, worker=1), strict=False)

        assert verdict is None
        assert 1 == len(warned)

    def test_structured_logs_get_the_event_instead(
        self, collector: Collector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SEEDWATCH_ANNOUNCE=log: one structlog event, and no warning."""
        monkeypatch.setenv("SEEDWATCH_ANNOUNCE", "log")
        collector.submit(report(1), strict=False)
        with warnings.catch_warnings(), capture_logs() as logs:
            warnings.simplefilter("error", DuplicateStreamWarning)
            collector.submit(report(2, worker=1), strict=False)

        assert ["duplicate_rng_stream"] == [log["event"] for log in logs]

    def test_both_channels_on_request(
        self, collector: Collector, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SEEDWATCH_ANNOUNCE=both: the event and the warning."""
        monkeypatch.setenv("SEEDWATCH_ANNOUNCE", "both")
        collector.submit(report(1), strict=False)
        with capture_logs() as logs, pytest.warns(DuplicateStreamWarning):
            collector.submit(report(2, worker=1), strict=False)

        assert ["duplicate_rng_stream"] == [log["event"] for log in logs]

    def test_the_warning_points_at_the_callers_code(self, collector: Collector) -> None:
        """The warning's location is the user's line that fed the report, not seedwatch:0."""
        collector.submit(report(1), strict=False)
        with pytest.warns(DuplicateStreamWarning) as warned:
            line = sys._getframe().f_lineno + 1  # noqa: SLF001 - the line below
            collector.submit(report(2, worker=1), strict=False)

        assert (__file__, line) == (warned[0].filename, warned[0].lineno)

    def test_one_process_reporting_twice_is_not_a_duplicate(self, collector: Collector) -> None:
        """Two copies of a dataset in one process share its streams: not a finding."""
        collector.submit(report(1), strict=True)

        assert collector.submit(report(1), strict=True) is None
        assert [] == collector.findings()


class TestRanks:
    def test_reports_carry_this_processs_rank(self) -> None:
        """Every member of a finding names the rank its collector is on."""
        collector = Collector("test", frozenset(), FakeRanks(3, {}))
        collector.submit(report(1), strict=False)
        with pytest.warns(DuplicateStreamWarning):
            collector.submit(report(2, worker=1), strict=False)

        [finding] = collector.findings()
        assert {3} == {member.rank for member in finding.members}

    def test_a_clean_result_counts_the_ranks_it_was_compared_with(self) -> None:
        """No stream shared, yet two ranks published: a clean result says ranks were compared."""
        ranks = FakeRanks(0, {})
        ranks.published = 2
        collector = Collector("test", frozenset(), ranks)
        collector.submit(report(1), strict=False)

        found = collector.findings()
        assert ([], 2) == (list(found), found.observed.ranks)
        assert "ranks" in found.observed.can_see()

    def test_each_stream_is_shared_with_its_member(self) -> None:
        """What a report recorded is handed to the ranks, one entry per stream."""
        ranks = FakeRanks(0, {})
        Collector("test", frozenset(), ranks).submit(report(1), strict=False)

        assert [("rng", FP, Member(0, 0, 1, 0, 7))] == ranks.shared

    def test_a_stream_another_rank_drew_fails_a_strict_reporter(self) -> None:
        """A single local process whose stream another rank drew is a 'ranks' finding."""
        other = Member(0, 0, 99, rank=1, seed=7)
        collector = Collector(
            "test", frozenset(), FakeRanks(0, {("rng", FP): Elsewhere(1, (other,))})
        )

        error = collector.submit(report(1), strict=True)

        assert error is not None
        assert "repeats across ranks" in error
        [finding] = collector.findings()
        assert ("ranks", [0, 1]) == (finding.kind, [m.rank for m in finding.members])

    def test_news_from_other_ranks_arrives_at_the_next_sync(self) -> None:
        """A later rank's notice turns a lone stream into a finding at sync."""
        ranks = FakeRanks(0, {})
        collector = Collector("test", frozenset(), ranks)
        collector.submit(report(1), strict=False)
        assert [] == collector.findings()
        ranks.drawn["rng", FP] = Elsewhere(1, (Member(0, 0, 99, rank=1),))
        ranks.told.append(("rng", FP))

        with pytest.warns(DuplicateStreamWarning, match="repeats across ranks"):
            collector.sync()

        assert ["ranks"] == [finding.kind for finding in collector.findings()]


class TestWorkersReports:
    def test_a_worker_frame_is_judged_at_the_next_findings(self, collector: Collector) -> None:
        """Frames sent to the collector's channel are read before findings() answers."""
        channel = collector.listen()
        try:
            # The server thread may judge (and warn) before findings() is called.
            with pytest.warns(DuplicateStreamWarning):
                for pid in (1, 2):
                    frame = encode_request(
                        report(pid, worker=pid), channel.token, strict=False, awaits_verdict=False
                    )
                    send(channel, frame, await_reply=False)
                found = collector.findings()
        finally:
            collector.close()

        assert [("rng", "workers")] == [(f.source, f.kind) for f in found]

    def test_frames_with_another_token_are_ignored(self, collector: Collector) -> None:
        """Only holders of the monitor's token are heard; repeated bad input logs one line."""
        channel = collector.listen()
        try:
            with capture_logs() as logs:
                for pid in (1, 2):
                    frame = encode_request(
                        report(pid, worker=pid), "forged", strict=False, awaits_verdict=False
                    )
                    send(channel, frame, await_reply=False)
                found = collector.findings()
        finally:
            collector.close()

        assert [] == found
        assert 1 == sum(log["event"] == "seedwatch_bad_message" for log in logs)


def test_each_monitor_has_its_own_collector() -> None:
    """collector_for() gives one collector per monitor id in a process, never a shared one."""
    first, again, other = (
        collector_for("a", frozenset()),
        collector_for("a", frozenset()),
        (collector_for("b", frozenset())),
    )

    assert first is again
    assert first is not other
