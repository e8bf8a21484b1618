"""Findings as text: what repeats, who drew it, the fix; and the strict-mode message."""

from __future__ import annotations

from seedwatch._finding import Finding, Findings, Member, Observed
from seedwatch._render import (
    duplicate_message,
    render_findings,
    render_table,
    render_watched,
    summarise_members,
)

HINT = "Build it per worker from get_worker_info().seed."


def finding(
    members: list[Member], source: str = "rng", kind: str = "workers", *more: str
) -> Finding:
    kinds = (kind, *more)
    return Finding((source,), kinds, tuple(members), ("00000000000000ab",), HINT)  # type: ignore[arg-type]


def workers(generations: range, count: int, rank: int | None = None) -> list[Member]:
    return [
        Member(gen, worker, 100 * gen + worker, rank)
        for gen in generations
        for worker in range(count)
    ]


class TestSummariseMembers:
    def test_generations_and_workers_as_ranges(self) -> None:
        """A full grid reads as two ranges and a count."""
        assert "gen 0-2 x worker 0-1 (6 processes)" == summarise_members(
            finding(workers(range(3), 2))
        )

    def test_gaps_are_listed(self) -> None:
        """Non-consecutive numbers are comma-separated ranges."""
        members = [Member(0, w, w) for w in (0, 1, 2, 5)]

        assert "gen 0 x worker 0-2,5 (4 processes)" == summarise_members(finding(members))

    def test_the_main_process_is_named(self) -> None:
        """A main-process member reads as 'main'; one process over two epochs is one process."""
        alone = finding([Member(0, None, 1), Member(1, None, 1)])
        mixed = finding([Member(0, 0, 2), Member(1, None, 1)])

        assert ("gen 0-1 x main (1 process)", "gen 0-1 x main + worker 0 (2 processes)") == (
            summarise_members(alone),
            summarise_members(mixed),
        )

    def test_ranks_come_first(self) -> None:
        """Members on ranks are summarised by rank too."""
        members = workers(range(1), 2, rank=0) + workers(range(1), 2, rank=1)

        assert "rank 0-1 x gen 0 x worker 0-1 (4 processes)" == summarise_members(
            finding(members, kind="ranks")
        )


class TestRenderFindings:
    def test_clean_says_so(self) -> None:
        """No findings is one line that says clean."""
        assert "  clean: no duplicate random streams" == render_findings([])

    def test_a_block_names_the_source_members_and_fix(self) -> None:
        """Each finding is a header, the members and the fix, wrapped to the page."""
        text = render_findings([finding(workers(range(3), 4))])

        lines = text.splitlines()
        assert "  DUPLICATE 'rng' across workers (stream 00000000000000ab)" == lines[0]
        assert lines[1].startswith("    drawn by: gen 0 worker 0 (pid 0), ")
        assert all(len(line) <= 88 for line in lines)
        assert "gen 2 worker 3 (pid 203)" in text
        assert f"    fix: {HINT}" == lines[-1]

    def test_one_problem_names_every_source_and_kind(self) -> None:
        """A finding of several generators and kinds is one block that lists them all."""
        owned = Finding(
            ("t.rng", "t.transforms[0].rng"),
            ("workers", "epochs"),
            tuple(workers(range(2), 2)),
            ("00000000000000ab", "00000000000000cd"),
            HINT,
            owner="albumentations at 't'",
        )

        lines = render_findings([owned]).splitlines()

        assert [
            (
                "  DUPLICATE 't.rng' and 1 more (albumentations at 't') across workers and epochs "
                "(2 streams)"
            ),
            "    sources: t.rng, t.transforms[0].rng",
        ] == lines[:2]


class TestRenderTable:
    def test_rows_line_up_with_their_fix_beneath(self) -> None:
        """A header, then each finding's row and its fix."""
        found = [
            finding(workers(range(2), 2), source="augs", kind="epochs"),
            finding(workers(range(1), 2)),
        ]

        lines = render_table(found).splitlines()

        assert ["SOURCE", "KIND", "WHO", "FINGERPRINT"] == lines[0].split()
        assert lines[1].startswith("augs    epochs   gen 0-1 x worker 0-1 (4 processes)")
        assert lines[3].startswith("rng     workers  gen 0 x worker 0-1 (2 processes)")
        assert [f"  fix: {HINT}"] * 2 == [lines[2], lines[4]]
        assert lines[0].index("KIND") == lines[1].index("epochs")


def test_the_strict_message_lists_each_finding_with_its_fix() -> None:
    """The DuplicateStreamError text: a title, then each finding and its fix."""
    first, second = finding([Member(0, 0, 7), Member(0, 1, 8)]), finding([], source="numpy")

    assert [
        "seedwatch: duplicate random streams",
        f"- {first.describe()}",
        f"  fix: {HINT}",
        f"- {second.describe()}",
        f"  fix: {HINT}",
    ] == duplicate_message([first, second]).splitlines()


class TestCountsOfOne:
    def test_what_was_checked_reads_in_the_singular(self) -> None:
        """One process, one rank: no stray plural, and no 'up to 0 workers' without workers."""
        observed = Observed(processes=1, generations=1, most_workers=0, ranks=1)

        assert "checked 1 process: 1 epoch, in the main process, 1 rank" == observed.describe()

    def test_an_overlap_one_draw_ahead(self) -> None:
        """'1 draw ahead', not '1 draws ahead'."""
        overlap = Finding(
            ("rng",), ("overlap",), tuple(workers(range(1), 2)), ("ab",), HINT, offset=1
        )

        assert "overlap (1 draw ahead)" == overlap.where()

    def test_one_member_is_one_process(self) -> None:
        """A finding drawn by one process (an epoch repeat in the main process) says so."""
        assert "gen 0 x main (1 process)" == summarise_members(finding([Member(0, None, 1)]))


class TestRenderWatched:
    def test_each_dataset_with_its_verdict(self) -> None:
        """A watched job's summary: a headline, then one line per dataset and its table."""
        seen = Observed(processes=4, generations=2, most_workers=2)
        found = Findings([finding(workers(range(2), 2), "rng", "workers", "epochs")], seen)
        text = render_watched(
            [
                ("Noisy (train.py:3)", found),
                ("Calm (train.py:9)", Findings([], seen)),
                ("Alone (train.py:12)", Findings([], Observed(processes=1, generations=1))),
                ("Idle (train.py:15)", Findings([])),
            ]
        )

        assert text.splitlines()[:3] == [
            "seedwatch: 4 datasets watched; 1 finding in 1 of them",
            (
                "Noisy (train.py:3): 1 finding; checked 4 processes: 2 epochs, up to 2 workers per "
                "epoch"
            ),
            "  SOURCE  KIND            WHO                                 FINGERPRINT",
        ]
        assert text.splitlines()[-3:] == [
            "Calm (train.py:9): clean; checked 4 processes: 2 epochs, up to 2 workers per epoch",
            (
                "Alone (train.py:12): nothing to compare (no two workers, epochs or ranks); "
                "checked 1 process: 1 epoch, in the main process"
            ),
            (
                "Idle (train.py:15): never iterated; checked 0 processes: 0 epochs, in the main "
                "process"
            ),
        ]

    def test_nothing_built_is_not_clean(self) -> None:
        """A job that built no loader is told so, not told it is clean."""
        assert "no DataLoader was watched" in render_watched([])
