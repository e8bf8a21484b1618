from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from seedwatch._finding import Member
from seedwatch._ledger import StreamLedger
from seedwatch._report import MAX_OVERLAP, OVERLAP_SPAN, Report, Stream


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

    def test_k_equal_streams_are_one_finding_with_every_kind(self) -> None:
        """Four workers times three epochs of one stream: one finding, both kinds, 12 members."""
        ledger = StreamLedger()
        for generation in ("g0", "g1", "g2"):
            for worker in range(4):
                ledger.record(report(generation, worker, rng="same"))

        [finding] = ledger.findings()

        assert ("workers", "epochs") == finding.kinds
        assert [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2] == [m.generation for m in finding.members]

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
    """The judge (report, wire, ledger, hints, history, collector) loads neither torch nor numpy."""
    code = (
        "import sys\n"
        "import seedwatch._collector, seedwatch._ledger, seedwatch._wire, seedwatch._report\n"
        "import seedwatch._history, seedwatch._hints\n"
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


def owned(generation: str, worker: int, *, used: bool = True, **fingerprints: str) -> Report:
    """A report of generators held by one albumentations Compose at ``t``."""
    streams = {
        name: Stream(
            fp(value),
            "random.Random",
            "attribute",
            used=used,
            owner="t",
            holder="albumentations.core.composition.Compose",
        )
        for name, value in fingerprints.items()
    }
    return Report(generation, worker, 2000 + worker + 10 * len(generation), 7, streams)


class TestOneFindingPerProblem:
    def test_the_generators_of_one_owner_are_one_finding(self) -> None:
        """Twenty generators of one Compose, equal in two workers: one finding naming all."""
        names = {f"t.transforms[{i}].py_random": f"s{i}" for i in range(20)}
        ledger = StreamLedger()
        ledger.record(owned("g0", 0, used=True, **names))
        ledger.record(owned("g0", 1, used=True, **names))

        [finding] = ledger.findings()

        assert 20 == len(finding.sources) == len(finding.fingerprints)
        assert "albumentations at 't'" == finding.owner
        assert "info.dataset.t.set_random_seed(info.seed % 2**32)" in finding.hint

    def test_globals_repeating_for_one_reason_are_one_finding(self) -> None:
        """All three globals seeded with a constant in every worker: one finding, two kinds."""
        ledger = StreamLedger()
        for generation in ("g0", "g1"):
            for worker in (0, 1):
                streams = {
                    name: Stream(fp(name), "global") for name in ("numpy", "random", "torch")
                }
                ledger.record(Report(generation, worker, 10 * len(generation) + worker, 1, streams))

        [finding] = ledger.findings()

        assert (("numpy", "random", "torch"), ("workers", "epochs")) == (
            finding.sources,
            finding.kinds,
        )
        assert "process globals" == finding.owner
        assert "constant" in finding.hint

    def test_a_problem_is_announced_once(self) -> None:
        """Found across workers; repeating across epochs too is the same problem, not news."""
        ledger = StreamLedger()
        ledger.record(report("g0", 0, rng="a"))
        workers = ledger.record(report("g0", 1, rng="a"))
        epochs = ledger.record(report("g1", 0, rng="a"))

        assert ([("workers",)], []) == ([f.kinds for f in workers.new], epochs.new)
        assert [("workers", "epochs")] == [f.kinds for f in epochs.involving]

    def test_streams_repeating_per_worker_for_one_reason_are_one_finding(self) -> None:
        """torch.manual_seed before each epoch: each worker's globals replay, one problem."""
        ledger = StreamLedger()
        for generation in ("g0", "g1"):
            for worker in (0, 1):
                streams = {
                    name: Stream(fp(f"{name}{worker}"), "global")
                    for name in ("numpy", "random", "torch")
                }
                seed = 100 + worker
                ledger.record(
                    Report(generation, worker, 10 * len(generation) + worker, seed, streams)
                )

        [finding] = ledger.findings()

        assert (("epochs",), 4, 6) == (
            finding.kinds,
            len(finding.members),
            len(finding.fingerprints),
        )
        assert "before each epoch" in finding.hint


class TestUsedStreams:
    def test_a_duplicate_nobody_drew_from_is_latent(self) -> None:
        """Equal but unmoved in every worker: no finding, listed only as latent."""
        ledger = StreamLedger()
        ledger.record(owned("g0", 0, used=False, template="x"))
        recorded = ledger.record(owned("g0", 1, used=False, template="x"))

        assert ([], [], []) == (recorded.new, recorded.involving, ledger.findings())
        [latent] = ledger.findings(latent=True)
        assert (False, ["template"]) == (latent.used, [f.source for f in recorded.latent])

    def test_a_stream_only_one_worker_drew_is_no_repeat_yet(self) -> None:
        """Held by two workers, drawn by one: nobody drew the same numbers twice, yet."""
        ledger = StreamLedger()
        ledger.record(owned("g0", 0, used=False, rng="x"))
        ledger.record(owned("g0", 1, used=True, rng="x"))

        assert [] == ledger.findings(latent=True)

    def test_a_late_note_of_use_makes_it_a_repeat(self) -> None:
        """The other worker's exit note says it drew too: now the stream repeats."""
        ledger = StreamLedger()
        ledger.record(owned("g0", 0, used=False, rng="x"))
        ledger.record(owned("g0", 1, used=True, rng="x"))

        recorded = ledger.record(owned("g0", 0, used=True, rng="x"))  # worker 0, at its exit

        assert [("workers",)] == [finding.kinds for finding in recorded.new]


class TestResume:
    def test_a_resumed_generation_replaying_an_epoch_is_resume_not_epochs(self) -> None:
        """Same seed and stream as epoch 0, from a resumed loader: a replay, not an epoch repeat."""
        ledger = StreamLedger()
        ledger.record(Report("g0", 0, 1, 42, {"numpy": Stream(fp("a"), "global")}))
        ledger.record(Report("g1", 0, 2, 42, {"numpy": Stream(fp("a"), "global")}, resumed=True))

        [finding] = ledger.findings()

        assert ("resume",) == finding.kinds
        assert "load_state_dict" in finding.hint
        assert "before each epoch" not in finding.hint


def shifted(worker: int, offset: int, source: str = "rng") -> Report:
    """A worker's copy of one stream of counting draws, advanced by ``offset`` draws."""
    draws = [(offset + i).to_bytes(8, "little") for i in range(OVERLAP_SPAN)]
    prefix = b"".join(draws).hex()
    stream = Stream(fp(f"o{offset}"), "np.random.Generator(PCG64)", prefix=prefix)
    return Report("g0", worker, 3000 + worker, worker, {source: stream})


class TestOverlap:
    def test_a_stream_a_few_draws_ahead_of_another_is_an_overlap(self) -> None:
        """Workers advancing one copied generator by their id draw shifted copies of one stream."""
        ledger = StreamLedger()
        for worker in range(3):
            ledger.record(shifted(worker, worker))

        [finding] = ledger.findings()

        assert (("overlap",), 1, [0, 1, 2]) == (
            finding.kinds,
            finding.offset,
            [m.worker for m in finding.members],
        )
        assert "advanced" in finding.hint

    def test_offsets_beyond_the_bound_are_not_seen(self) -> None:
        """A shift of more than MAX_OVERLAP draws is out of reach (the stated bound)."""
        ledger = StreamLedger()
        ledger.record(shifted(0, 0))
        ledger.record(shifted(1, MAX_OVERLAP + 1))
        ledger.record(shifted(2, 2 * MAX_OVERLAP + 5))

        assert [] == ledger.findings()

    def test_one_process_continuing_its_own_stream_is_no_overlap(self) -> None:
        """The main process's epochs draw one stream in turn: not an overlap."""
        ledger = StreamLedger()
        ledger.record(replace(shifted(0, 0), generation="e0", worker=None))
        ledger.record(replace(shifted(0, 3), generation="e1", worker=None))

        assert [] == ledger.findings()

    def test_a_worker_continuing_the_main_process_is_no_overlap(self) -> None:
        """The main process drew one value (a peek at ds[0]); its forked worker goes on."""
        ledger = StreamLedger()
        ledger.record(replace(shifted(0, 0), generation="main", worker=None, pid=1))
        ledger.record(replace(shifted(0, 1), pid=2))

        assert [] == ledger.findings()

    def test_workers_of_different_epochs_are_not_compared(self) -> None:
        """A later epoch's worker, a few draws ahead of an earlier one's, draws in turn."""
        ledger = StreamLedger()
        ledger.record(replace(shifted(0, 0), generation="g0"))
        ledger.record(replace(shifted(1, 3), generation="g1"))

        assert [] == ledger.findings()


class TestObserved:
    def test_says_how_many_processes_epochs_and_workers_reported(self) -> None:
        """Two epochs of two workers, and what that lets the ledger see."""
        ledger = StreamLedger()
        for pid, (generation, worker) in enumerate([("g0", 0), ("g0", 1), ("g1", 0), ("g1", 1)]):
            streams = {"numpy": Stream(fp(f"{generation}{worker}"), "global")}
            ledger.record(Report(generation, worker, 100 + pid, None, streams))
        ledger.record(Report("g2", 0, 200, None, {"numpy": Stream(fp("x"), "global")}))

        observed = ledger.observed()

        assert (5, 3, 2, ("workers", "epochs")) == (
            observed.processes,
            observed.generations,
            observed.most_workers,
            observed.can_see(),
        )

    def test_one_worker_cannot_see_worker_repeats(self) -> None:
        """A run where one worker fetched everything can only have seen epoch repeats."""
        ledger = StreamLedger()
        ledger.record(report("g0", 0, numpy="a"))
        ledger.record(report("g1", 0, numpy="b"))

        assert ("epochs",) == ledger.observed().can_see()


class TestLateUse:
    def test_a_latent_first_look_explains_no_later_repeat(self) -> None:
        """'rng' only shuffles in __init__ (latent), then is re-created per item alike: reported."""
        ledger = StreamLedger()
        for generation, worker in (("g0", 0), ("g1", 0)):
            first = owned(generation, worker, used=False, rng="init")
            late = {"rng": Stream(fp("per item"), "np.random.Generator(PCG64)", "attribute")}
            ledger.record(replace(first, later=late))

        [finding] = ledger.findings()
        assert ("rng", ("epochs",)) == (finding.source, finding.kinds)
        assert "created while items are served" in finding.hint

    def test_streams_born_late_meet_earlier_runs(self) -> None:
        """A generator created while serving, drawn by an earlier run too: a resume."""
        past = {("lazy", fp("l")): [Member(0, 0, 1, run="before")]}
        ledger = StreamLedger(past=past)
        late = {"lazy": Stream(fp("l"), "np.random.Generator(PCG64)", "attribute")}

        recorded = ledger.record(Report("g0", 0, 7, 1, {}, later=late))

        assert [("lazy", ("resume",))] == [(f.source, f.kinds) for f in recorded.new]
        assert [("lazy", fp("l"))] == [(source, value) for source, value, _ in recorded.streams]

    def test_a_stream_drawn_late_is_shared_and_compared_once(self) -> None:
        """The exit note's newly used stream goes to ranks and history, and overlap, once."""
        ledger = StreamLedger()
        ledger.record(
            replace(
                shifted(0, 0), streams={"rng": replace(shifted(0, 0).streams["rng"], used=False)}
            )
        )

        noted = ledger.record(shifted(0, 0))  # the same process, at its exit: it drew
        again = ledger.record(shifted(0, 0))

        assert (1, 0) == (len(noted.streams), len(again.streams))
