"""The benchmark suite's smoke run: it works end to end and writes its tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks" / "run.py"


def test_the_quick_suite_writes_markdown_and_json(tmp_path: Path) -> None:
    """`benchmarks/run.py --quick` measures every section and records the machine (2 reps)."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS), "--quick", "--reps", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert 0 == result.returncode, result.stderr
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert {"machine", "per_item", "throughput", "first_fetch", "per_report", "ranks"} <= set(data)
    assert {"time_to_first_batch", "worker_first_fetch", "epochs"} <= set(data)
    assert all(
        row["added_us"]["low"] <= row["added_us"]["high"] for row in data["worker_first_fetch"]
    )
    assert {"torch", "numpy", "wrapt", "python", "cpus"} <= set(data["machine"])
    assert all(
        row["ratio"]["low"] <= row["ratio"]["ratio"] <= row["ratio"]["high"]
        for row in data["throughput"]
    )
    table = (tmp_path / "smoke.md").read_text()
    assert "| dataset | workers | start | batch |" in table
    assert "bytes per (worker generation, source)" in table
    assert "| start | raw | monitored | added [95% CI] (goal ≤ 1000) |" in table
