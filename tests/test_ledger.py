from __future__ import annotations

import subprocess
import sys

from seedwatch._finding import Member
from seedwatch._ledger import StreamLedger
from seedwatch._report import Report, Stream


def fp(name: str) -> str:
    """Return a fingerprint as reports carry them (16 hex digits) for a readable name."""
    return f"{int.from_bytes(name.encode()[:8], 'big'):016x}"


def report(
    generation: str, worker: int | None, *, seed: int | None = None, **fingerprints: str
) -> Report:
    pid = 1000 + 10 * len(generation) + (worker or 0)
    streams = {
        name: Stream(fp(value), "global" if name == "numpy" else "random.Random")
        for name, value in fingerprints.items()
    }
    return Report(generation, worker, pid, seed, streams)


class TestStreamLedger:
    def test_distinct_streams_are_no_finding(self) -> None:
        """Workers drawing different streams produce nothing."""
        ledger = StreamLedger()
        ledger.record(report("g0", 0, numpy="a"))
        ledger.record(report("g0", 1, numpy="b"))

        assert [] == ledger.findings()

    def test_equal_streams_in_one_generation_are_workers(self) -> None:
        """Two workers of one generation with equal streams make a 'workers' finding."""
        ledger = StreamLedger()
        ledger.record(report("g0", 0, rng="a"))
        ledger.record(report("g0", 1, rng="a"))

        [finding] = ledger.findings()

        assert ("rng", "workers", fp("a")) == (finding.source, finding.kind, finding.fingerprint)
        assert [0, 1] == [member.worker for member in finding.members]

    def test_equal_streams_across_generations_are_epochs(self) -> None:
        """The same stream in two generations makes an 'epochs' finding."""
        ledger = StreamLedger()
        ledger.record(report("g0", 0, numpy="a"))
        ledger.record(report("g1", 0, numpy="a"))

        assert ["epochs"] == [finding.kind for finding in ledger.findings()]

    def test_k_equal_streams_are_one_finding_per_kind(self) -> None:
        """Four workers times three epochs of one stream: two findings, twelve members."""
        ledger = StreamLedger()
        for generation in ("g0", "g1", "g2"):
            for worker in range(4):
                ledger.record(report(generation, worker, rng="same"))

        found = ledger.findings()

        assert ["epochs", "workers"] == [finding.kind for finding in found]
        assert [12, 12] == [len(finding.members) for finding in found]
        assert [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2] == [m.generation for m in found[0].members]

    def test_new_findings_are_announced_once(self) -> None:
        """A finding is new only for the report that creates it."""
        ledger = StreamLedger()
        ledger.record(report("g0", 0, rng="a"))
        new_second = ledger.record(report("g0", 1, rng="a"))
        third = ledger.record(report("g0", 2, rng="a"))

        assert ["workers"] == [finding.kind for finding in new_second.new]
        assert [] == third.new
        assert ["workers"] == [finding.kind for finding in third.involving]

    def test_the_first_reporter_is_not_involved_yet(self) -> None:
        """The verdict for a stream nobody else drew is clean."""
        ledger = StreamLedger()

        recorded = ledger.record(report("g0", 0, rng="a"))

        assert ([], []) == (recorded.new, recorded.involving)

    def test_expected_shared_sources_are_never_reported(self) -> None:
        """A source declared shared is recorded but produces no finding."""
        ledger = StreamLedger(expect_shared=["shard_order"])
        ledger.record(report("g0", 0, shard_order="s", numpy="a"))
        recorded = ledger.record(report("g0", 1, shard_order="s", numpy="b"))

        assert ([], [], []) == (recorded.new, recorded.involving, ledger.findings())
        assert ["numpy"] == [source for source, _, _ in recorded.streams]

    def test_a_process_reporting_twice_counts_once(self) -> None:
        """Two copies reporting from one process do not make it its own duplicate."""
        ledger = StreamLedger()
        ledger.record(report("main", None, numpy="a", rng="r"))
        ledger.record(report("main", None, numpy="a", rng="r", other="o"))

        assert [] == ledger.findings()

    def test_generations_are_numbered_in_order_of_arrival(self) -> None:
        """Opaque generation keys become 0, 1, 2 in the order first heard."""
        ledger = StreamLedger()
        for key in ("zz", "aa", "mm"):
            ledger.record(report(key, 0, rng="x"))

        [finding] = ledger.findings()

        assert [0, 1, 2] == [member.generation for member in finding.members]


class TestRemoteStreams:
    def test_a_stream_drawn_on_another_rank_is_a_ranks_finding(self) -> None:
        """Equal streams on two ranks make one 'ranks' finding with both ranks' members."""
        ledger = StreamLedger()
        ledger.record(report("g0", 0, torch="t"))
        remote = Member(0, 0, 9999, rank=1)

        new, involving = ledger.merge_remote("torch", fp("t"), 1, [remote])

        assert ["ranks"] == [finding.kind for finding in new]
        assert [None, 1] == [member.rank for member in involving[0].members]
        assert ["ranks"] == [finding.kind for finding in ledger.findings()]

    def test_a_ranks_finding_is_announced_once(self) -> None:
        """Hearing of more ranks later updates the finding without announcing it again."""
        ledger = StreamLedger()
        ledger.record(report("g0", 0, torch="t"))
        ledger.merge_remote("torch", fp("t"), 1, [Member(0, 0, 1, rank=1)])

        new, _ = ledger.merge_remote("torch", fp("t"), 2, [Member(0, 0, 2, rank=2)])

        assert [] == new
        assert 3 == len(ledger.findings()[0].members)

    def test_unknown_and_expected_streams_are_ignored(self) -> None:
        """Remote news about a stream this rank never drew, or a shared one, is no finding."""
        ledger = StreamLedger(expect_shared=["order"])
        ledger.record(report("g0", 0, order="o"))

        assert ([], []) == ledger.merge_remote("torch", fp("x"), 3, [])
        assert ([], []) == ledger.merge_remote("order", fp("o"), 3, [])
        assert [] == ledger.findings()


def test_the_judge_loads_without_torch() -> None:
    """Report, wire, ledger and collector import neither torch nor numpy: judging is plain data."""
    code = (
        "import sys\n"
        "import seedwatch._collector, seedwatch._ledger, seedwatch._wire, seedwatch._report\n"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert "[]" == result.stdout.strip()


def later(generation: str, worker: int, **fingerprints: str) -> Report:
    """A report whose streams were all seen after the first item."""
    first = report(generation, worker, numpy=f"{generation}-{worker}")
    streams = {
        name: Stream(fp(value), "global, reseeded in a fetch")
        for name, value in fingerprints.items()
    }
    return Report(first.generation, worker, first.pid, None, first.streams, later=streams)


class TestLaterStreams:
    def test_a_repeat_seen_only_after_the_first_item_is_a_finding(self) -> None:
        """Distinct before, equal after the first item: a global reseeded inside a fetch."""
        ledger = StreamLedger()
        ledger.record(later("g0", 0, numpy="same"))
        ledger.record(later("g0", 1, numpy="same"))

        [finding] = ledger.findings()
        assert ("numpy", "workers") == (finding.source, finding.kind)
        assert "restarts at the same point" in finding.hint

    def test_a_repeat_the_first_look_explains_is_not_reported_twice(self) -> None:
        """Equal before and after the first item (a constant worker_init_fn seed): one finding."""
        ledger = StreamLedger()
        for worker in (0, 1):
            first = report("g0", worker, numpy="const")
            streams = {"numpy": Stream(fp("after"), "global, reseeded in a fetch")}
            ledger.record(Report("g0", worker, first.pid, None, first.streams, later=streams))

        assert [("numpy", "workers")] == [(f.source, f.kind) for f in ledger.findings()]
