"""The history file: what earlier runs drew, read defensively, written within bounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seedwatch import _history
from seedwatch._finding import Member
from seedwatch._history import History

MEMBER = Member(0, 1, 4242, None, 7)
FP = "00000000000000aa"


class TestHistory:
    def test_a_later_run_reads_what_an_earlier_one_wrote(self, tmp_path: Path) -> None:
        """Run A appends; run B sees A's process as a past member of that stream."""
        path = tmp_path / "history.jsonl"
        History(path, run="a").append([("rng", FP, MEMBER)])

        past = History(path, run="b").past()

        assert {("rng", FP): [Member(0, 1, 4242, None, 7, run="a")]} == past

    def test_a_run_never_reads_its_own_lines(self, tmp_path: Path) -> None:
        """Lines of this run (its own earlier reports, its sibling ranks') are not a past run."""
        path = tmp_path / "history.jsonl"
        History(path, run="a").append([("rng", FP, MEMBER)])

        assert {} == History(path, run="a").past()

    def test_no_file_is_no_history(self, tmp_path: Path) -> None:
        """A first run finds nothing, and creates the file when it appends."""
        history = History(tmp_path / "new.jsonl", run="a")

        assert {} == history.past()
        history.append([("rng", FP, MEMBER)])
        assert 1 == len((tmp_path / "new.jsonl").read_text().splitlines())

    def test_past_members_per_stream_are_bounded(self, tmp_path: Path) -> None:
        """A stream drawn in many earlier runs keeps a bounded sample of them."""
        path = tmp_path / "history.jsonl"
        for run in range(20):
            History(path, run=str(run)).append([("rng", FP, MEMBER)])

        [members] = History(path, run="new").past().values()

        assert _history.MAX_PAST_PER_STREAM == len(members)

    def test_appending_stops_at_the_size_limit(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past MAX_BYTES a history stops growing (and says so once), never raising."""
        monkeypatch.setattr(_history, "MAX_BYTES", 400)
        path = tmp_path / "history.jsonl"
        history = History(path, run="a")
        for _ in range(10):
            history.append([("rng", FP, MEMBER)])

        assert path.stat().st_size <= 400

    def test_an_unwritable_history_is_given_up_quietly(self, tmp_path: Path) -> None:
        """A directory in the file's place: nothing written, nothing raised."""
        History(tmp_path, run="a").append([("rng", FP, MEMBER)])

        assert {} == History(tmp_path, run="b").past()

    @pytest.mark.parametrize(
        "line",
        [
            "not json",
            "[" * 100_000,
            json.dumps({"v": 2, "run": "x", "source": "rng", "fp": FP, "member": {}}),
            json.dumps({"v": 1, "run": 5, "source": "rng", "fp": FP, "member": {}}),
            json.dumps({"v": 1, "run": "x", "source": "rng", "fp": FP, "member": {"pid": "1"}}),
            json.dumps({"v": 1, "run": "x", "source": "rng", "fp": FP}),
        ],
    )
    def test_bad_lines_are_skipped(self, tmp_path: Path, line: str) -> None:
        """Each damaged or hostile line is skipped; the good line after it still counts."""
        path = tmp_path / "history.jsonl"
        path.write_text(line + "\n")
        History(path, run="a").append([("rng", FP, MEMBER)])

        assert [("rng", FP)] == list(History(path, run="b").past())

    def test_a_torchrun_attempt_is_one_run(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Under torchrun, the ranks of one attempt share a run; a restart is another."""
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job7")
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")

        assert "job7.2" == History("unused").run

    def test_every_monitor_of_a_process_is_one_run(self, tmp_path: Path) -> None:
        """A train and a val monitor in one process never see each other as an earlier run."""
        path = tmp_path / "history.jsonl"
        History(path).append([("rng", FP, MEMBER)])

        assert {} == History(path).past()
