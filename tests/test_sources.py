from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from pipelines import (
    START_METHODS,
    GlobalsDataset,
    HoldsGenerator,
    UsesLibrary,
    library_draws,
    library_rng,
    load,
)
from seedwatch import Source, findings, monitor, register_source, unregister_source
from seedwatch.testing import isolated_sources

pytestmark = pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    with isolated_sources():
        yield


class TestRegisterSource:
    @pytest.mark.parametrize("method", START_METHODS)
    def test_a_library_generator_is_watched(self, method: str) -> None:
        """A registered library-global generator repeats in every worker: reported by name."""
        register_source("library", generator=library_rng)
        monitored = monitor(UsesLibrary())

        load(monitored, method=method, epochs=1)

        [finding] = findings(monitored)
        assert ("library", "workers") == (finding.source, finding.kind)
        assert "custom source 'library'" in finding.hint

    def test_a_draws_reader_is_watched(self) -> None:
        """A source read through its own draws function (state no walk sees) is fingerprinted."""
        register_source("library", draws=library_draws)
        monitored = monitor(GlobalsDataset())

        load(monitored, epochs=2)

        assert [("library", ("workers", "epochs"))] == [
            (f.source, f.kinds) for f in findings(monitored)
        ]

    def test_an_unregistered_source_is_not_watched(self) -> None:
        """unregister_source stops reporting a source."""
        register_source("library", generator=library_rng)
        unregister_source("library")
        monitored = monitor(GlobalsDataset())

        load(monitored, epochs=1)

        assert [] == findings(monitored)

    def test_a_source_with_nothing_yet_is_skipped(self) -> None:
        """A getter returning None (not initialised) is no stream and no error."""
        register_source("later", generator=lambda: None)
        monitored = monitor(HoldsGenerator())
        load(monitored, epochs=1, workers=1)

        with capture_logs() as logs:
            monitored[0]  # the main process reports here, where its logs can be captured

        assert [("rng", "epochs")] == [(f.source, f.kind) for f in findings(monitored)]
        assert [] == [log for log in logs if log["event"] == "unreadable_source"]

    def test_a_broken_source_never_breaks_loading(self) -> None:
        """A reader that raises is skipped with a log event; the data flows, the rest is judged."""

        def broken(_n: int) -> bytes:
            raise RuntimeError("no state")

        register_source("broken", draws=broken)
        monitored = monitor(HoldsGenerator(size=4))

        batches: list[Any] = load(monitored, epochs=1, workers=1)[0]
        with capture_logs() as logs:
            monitored[0]  # the main process reports here, where its logs can be captured

        assert [[0, 1], [2, 3]] == [[item[0] for item in batch] for batch in batches]
        assert [("rng", "epochs")] == [(f.source, f.kind) for f in findings(monitored)]
        assert ["broken"] == [log["source"] for log in logs if log["event"] == "unreadable_source"]

    def test_an_unpicklable_source_is_dropped_for_spawn_workers(self) -> None:
        """A lambda source cannot reach spawn workers; loading still works."""
        register_source("local", generator=lambda: np.random.default_rng(0))
        monitored = monitor(GlobalsDataset(size=4))

        assert 2 == len(load(monitored, method="spawn", epochs=1)[0])
        assert [] == findings(monitored)

    @pytest.mark.parametrize("name", ["numpy", "random", "torch"])
    def test_built_in_names_are_refused(self, name: str) -> None:
        """The globals' names are taken."""
        with pytest.raises(ValueError, match="built-in"):
            register_source(name, generator=library_rng)

    def test_exactly_one_reader(self) -> None:
        """generator= and draws= are exclusive, and one is required."""
        with pytest.raises(TypeError, match="exactly one"):
            register_source("x")
        with pytest.raises(TypeError, match="exactly one"):
            register_source("x", generator=library_rng, draws=library_draws)

    def test_readers_must_be_callable(self) -> None:
        """A generator object instead of a getter is refused with a clear message."""
        with pytest.raises(TypeError, match="not callable"):
            Source("x", generator=np.random.default_rng(0))  # type: ignore[arg-type]


def install_plugin(tmp_path: Path) -> dict[str, str]:
    """Put a plugin with a seedwatch.sources entry point (and a broken one) on a PYTHONPATH."""
    (tmp_path / "libplugin.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            import seedwatch

            RNG = np.random.default_rng(5)

            def rng():
                return RNG

            SOURCE = seedwatch.Source("libplugin.rng", generator=rng)

            def broken():
                raise RuntimeError("plugin failed to load")
            """
        )
    )
    dist = tmp_path / "libplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: libplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[seedwatch.sources]\nlibplugin = libplugin:SOURCE\nbroken = libplugin:broken\n"
    )
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parent)]),
    }


def run_python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter with ``env``; it must succeed within 3 minutes."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=True,
    )


def test_entry_point_sources_are_loaded_in_every_worker(tmp_path: Path) -> None:
    """A plugin's seedwatch.sources entry point is read by spawned workers too."""
    env = install_plugin(tmp_path)
    script = textwrap.dedent(
        """
        import sys, warnings
        warnings.simplefilter("ignore")
        import seedwatch
        from pipelines import GlobalsDataset, load
        ds = seedwatch.monitor(GlobalsDataset())
        load(ds, method="spawn", epochs=1)
        print(sorted({f.source for f in seedwatch.findings(ds)}))
        """
    )

    result = run_python(script, env)

    assert "['libplugin.rng']" == result.stdout.strip().splitlines()[-1]
    assert "seedwatch_bad_entry_point" in result.stdout + result.stderr


def test_workers_never_scan_entry_points(tmp_path: Path) -> None:
    """
    The main process finds the entry points once; no worker scans, under any start method.

    Scanning reads every installed distribution's metadata: milliseconds a worker's
    first fetch would pay in every epoch. Every interpreter, from its start
    (sitecustomize), records each scan for the seedwatch.sources group.
    """
    env = install_plugin(tmp_path)
    scans = tmp_path / "scans.log"
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import importlib.metadata, os

            scan = importlib.metadata.entry_points

            def recorded_scan(**selection):
                if selection.get("group") == "seedwatch.sources":
                    with open({str(scans)!r}, "a") as log:
                        log.write(f"{{os.getpid()}}\\n")
                return scan(**selection)

            importlib.metadata.entry_points = recorded_scan
            """
        )
    )
    script = textwrap.dedent(
        """
        import os, warnings
        warnings.simplefilter("ignore")
        import seedwatch
        from pipelines import GlobalsDataset, load
        ds = seedwatch.monitor(GlobalsDataset())
        for method in ("fork", "spawn", "forkserver"):
            load(ds, method=method, epochs=2)
        found = seedwatch.findings(ds)
        print(os.getpid(), found.observed.processes, sorted({f.source for f in found}))
        """
    )

    result = run_python(script, env)

    main_pid, processes, sources = result.stdout.strip().splitlines()[-1].split(" ", 2)
    assert "['libplugin.rng']" == sources  # every worker read the plugin's source
    assert 12 == int(processes)  # 3 start methods x 2 epochs x 2 workers
    assert [main_pid] == scans.read_text().split()
