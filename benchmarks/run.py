"""
seedwatch overhead benchmarks: raw and monitored, side by side, in one run.

    python benchmarks/run.py            # the full suite (about 45 minutes on 2 cores)
    python benchmarks/run.py --quick    # a seconds-long smoke run (what CI runs)

Every figure compares raw and monitored measured alternately in the same run,
repeated, as median and spread; ratios carry a 95% bootstrap confidence
interval over the paired repetitions. Results go to benchmarks/results/ as
Markdown and JSON, with the machine and library versions.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import random
import socket
import statistics
import sys
import time
import timeit
import tracemalloc
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import wrapt
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import (
    EveryPlace,
    FirstFetchSteps,
    Images,
    ManyGenerators,
    Timed,
    Trivial,
    plain_collate,
)

import seedwatch
from seedwatch._collector import Collector
from seedwatch._discover import find_generators
from seedwatch._finding import Member
from seedwatch._probe import drawn_since, look, look_after, take_report
from seedwatch._ranks import RankLink
from seedwatch._report import Report, Stream
from seedwatch._transport import send
from seedwatch._wire import HEADER_SIZE, decode_request, encode_request

Row = dict[str, Any]

# Spawned workers receive ManyGenerators' torch generators, whose states are tensors: share
# them through files, as the tests do (fd sharing fails in containers that restrict it).
torch.multiprocessing.set_sharing_strategy("file_system")  # type: ignore[no-untyped-call]


def spread(samples: Sequence[float]) -> Row:
    """Median and interquartile range."""
    ordered = sorted(samples)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    return {"median": statistics.median(ordered), "q1": quartiles[0], "q3": quartiles[2]}


def ratio_ci(raw: Sequence[float], monitored: Sequence[float], rounds: int = 4000) -> Row:
    """Median of paired monitored/raw ratios, with a 95% bootstrap interval."""
    ratios = [m / r for r, m in zip(raw, monitored, strict=True)]
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(rounds))
    return {
        "ratio": statistics.median(ratios),
        "low": medians[int(0.025 * rounds)],
        "high": medians[int(0.975 * rounds) - 1],
    }


def difference_ci(raw: Sequence[float], monitored: Sequence[float], rounds: int = 4000) -> Row:
    """Median of paired monitored-minus-raw differences, with a 95% bootstrap interval."""
    differences = [m - r for r, m in zip(raw, monitored, strict=True)]
    rng = random.Random(0)
    medians = sorted(
        statistics.median(rng.choices(differences, k=len(differences))) for _ in range(rounds)
    )
    return {
        "difference": statistics.median(differences),
        "low": medians[int(0.025 * rounds)],
        "high": medians[int(0.975 * rounds) - 1],
    }


def alternate(
    reps: int, raw: Callable[[], float], monitored: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """Run raw and monitored alternately (order flipped every repetition)."""
    raw_samples, monitored_samples = [], []
    for rep in range(reps):
        pair = [(raw, raw_samples), (monitored, monitored_samples)]
        for run, samples in pair if rep % 2 == 0 else reversed(pair):
            samples.append(run())
    return raw_samples, monitored_samples


# 1. Per-item path ------------------------------------------------------------------------


def per_item(quick: bool) -> Row:
    """ns per ds[i]: raw, a bare wrapt proxy, monitored (after the first fetch)."""
    number, reps = (20_000, 5) if quick else (200_000, 15)
    monitored = seedwatch.monitor(Trivial(10))
    monitored[0]
    candidates = {
        "raw": Trivial(10),
        "wrapt": wrapt.BaseObjectProxy(Trivial(10)),
        "monitored": monitored,
    }
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for rep in range(reps):
        order = list(candidates)
        order = order[rep % 3 :] + order[: rep % 3]
        for name in order:
            timer = timeit.Timer("ds[5]", globals={"ds": candidates[name]})
            samples[name].append(timer.timeit(number) / number * 1e9)
    result = {name: spread(values) for name, values in samples.items()}
    result["overhead_ns"] = result["monitored"]["median"] - result["raw"]["median"]
    result["over_wrapt_ns"] = difference_ci(samples["wrapt"], samples["monitored"])
    result["ratio"] = ratio_ci(samples["raw"], samples["monitored"])
    return result


# 2. DataLoader throughput --------------------------------------------------------------------


def _epoch(dataset: Any, batch_size: int, workers: int, method: str | None) -> tuple[float, float]:
    """Return (steady items/s after the first batch, seconds to the first batch)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        multiprocessing_context=method,
        collate_fn=plain_collate,
    )
    started = time.perf_counter()
    iterator = iter(loader)
    first = next(iterator)
    first_at = time.perf_counter()
    items = 0
    for batch in iterator:
        items += len(batch)
    ended = time.perf_counter()
    del first
    return items / (ended - first_at), first_at - started


def _items_per_s(
    monitored: bool, *, kind: str, size: int, batch: int, workers: int, method: str | None
) -> float:
    return _epoch(_make(kind, size, monitored), batch, workers, method)[0]


def _make(kind: str, size: int, monitored: bool) -> Any:
    dataset = Trivial(size) if kind == "trivial" else Images(size)
    return seedwatch.monitor(dataset) if monitored else dataset


def throughput(
    quick: bool, worker_counts: Sequence[int], methods: Sequence[str], reps: int | None = None
) -> list[Row]:
    """Items/s raw vs monitored for every configuration, ratio with its interval."""
    seconds, default_reps = (0.05, 3) if quick else (1.0, 9)
    reps = reps or default_reps
    rows = []
    for kind in ("trivial", "images"):
        for workers in worker_counts:
            for method in methods if workers else [None]:
                for batch_size in (1, 64):
                    probe_size = (16 if quick else 256) if kind == "images" else 4096
                    rate, _ = _epoch(_make(kind, probe_size, False), batch_size, workers, method)
                    size = max(int(rate * seconds), 4 * batch_size * max(workers, 1))

                    run = partial(
                        _items_per_s,
                        kind=kind,
                        size=size,
                        batch=batch_size,
                        workers=workers,
                        method=method,
                    )

                    run(False)
                    run(True)
                    raw, monitored = alternate(reps, partial(run, False), partial(run, True))
                    rows.append(
                        {
                            "dataset": kind,
                            "workers": workers,
                            "start_method": method or "-",
                            "batch_size": batch_size,
                            "items": size,
                            "raw_items_per_s": spread(raw),
                            "monitored_items_per_s": spread(monitored),
                            "ratio": ratio_ci(raw, monitored),
                        }
                    )
                    print(_throughput_line(rows[-1]), file=sys.stderr)
    return rows


def _throughput_line(row: Row) -> str:
    ratio = row["ratio"]
    return (
        f"  {row['dataset']:8} w={row['workers']} {row['start_method']:5} b={row['batch_size']:<3}"
        f" raw {row['raw_items_per_s']['median']:>10.0f}/s"
        f" monitored {row['monitored_items_per_s']['median']:>10.0f}/s"
        f" ratio {ratio['ratio']:.3f} [{ratio['low']:.3f}, {ratio['high']:.3f}]"
    )


# 3. First fetch --------------------------------------------------------------------------------


def first_fetch(quick: bool) -> Row:
    """Fingerprinting, report send and strict round trip, warm, in this process (µs)."""
    runs = 30 if quick else 300
    many = ManyGenerators()

    def micros(action: Callable[[], object]) -> Row:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            action()
            samples.append((time.perf_counter() - started) * 1e6)
        return spread(samples)

    report = take_report(many, 16)
    first, every_place = look(many, 16), EveryPlace()
    unmoved = look_after(many, 16, first)
    collector = Collector("bench", frozenset())
    channel = collector.listen()
    fire = encode_request(report, channel.token, strict=False, awaits_verdict=False)
    ask = encode_request(report, channel.token, strict=True, awaits_verdict=True)
    result: Row = {
        "sources": len(report.streams),
        "fingerprint_globals_us": micros(lambda: take_report(Trivial(1), 16)),
        "fingerprint_us": micros(lambda: take_report(many, 16)),
        # The second look, right after the first item: globals again, plus new generators.
        "second_look_us": micros(lambda: look_after(many, 16, first)),
        # At a worker's exit: re-read what had not moved by the second look (here: all of it).
        "exit_check_us": micros(lambda: drawn_since(unmoved)),
        # The walk alone over a pipeline with a generator in every kind of place.
        "walk_us": micros(lambda: find_generators(every_place)),
        "walk_generators": len(find_generators(every_place)),
        "send_us": micros(lambda: send(channel, fire, await_reply=False)),
        "strict_round_trip_us": micros(lambda: send(channel, ask, await_reply=True)),
    }
    collector.close()
    return result


# 3b. Time to first batch -----------------------------------------------------------------------


def time_to_first_batch(quick: bool, methods: Sequence[str]) -> list[Row]:
    """Seconds from iter(loader) to the first batch, 2 workers, raw vs monitored, per start method."""
    reps = 2 if quick else 9
    rows = []
    for method in methods:
        raw, monitored = alternate(
            reps,
            lambda method=method: _epoch(_make("trivial", 64, False), 8, 2, method)[1],
            lambda method=method: _epoch(_make("trivial", 64, True), 8, 2, method)[1],
        )
        rows.append(
            {
                "start_method": method,
                "raw_s": spread(raw),
                "monitored_s": spread(monitored),
                "ratio": ratio_ci(raw, monitored),
                "added_ms": _ms(difference_ci(raw, monitored)),
            }
        )
        print(f"  ttfb {method:10} {_ratio(rows[-1]['ratio'])}", file=sys.stderr)
    return rows


# 3c. A worker's first fetch, inside real workers -----------------------------------------------


def worker_first_fetch(quick: bool, methods: Sequence[str]) -> list[Row]:
    """
    What a worker's first fetch costs, measured inside real DataLoader workers.

    Each repetition starts a new one-worker loader over ManyGenerators (3 globals
    and 8 instance generators), raw or monitored alternately, and the worker
    times its first and second fetch. The steps are timed apart, cold, in another
    worker of the same start method.
    """
    reps = 3 if quick else 15
    rows = []
    collector = Collector("bench-steps", frozenset())
    channel = collector.listen()
    for method in methods:
        faults: dict[bool, list[float]] = {False: [], True: []}

        def fetches(
            monitored: bool, method: str = method, faults: dict[bool, list[float]] = faults
        ) -> list[float]:
            inner = seedwatch.monitor(ManyGenerators()) if monitored else ManyGenerators()
            loader = DataLoader(
                Timed(inner), batch_size=None, num_workers=1, multiprocessing_context=method
            )
            served = [(float(micros), int(paged)) for micros, paged in loader]
            faults[monitored].append(served[0][1])
            return [micros for micros, _ in served]

        pairs = alternate(reps, lambda f=fetches: f(False)[0], lambda f=fetches: f(True)[0])
        later = fetches(True)[1]
        steps_loader = DataLoader(
            FirstFetchSteps(channel), batch_size=None, num_workers=1, multiprocessing_context=method
        )
        # Each repetition a fresh worker; the loader is run to its end, so it shuts down.
        step_runs = [steps for _ in range(reps) for steps in steps_loader]
        rows.append(
            {
                "start_method": method,
                "raw_first_us": spread(pairs[0]),
                "monitored_first_us": spread(pairs[1]),
                "added_us": difference_ci(*pairs),
                "monitored_second_us": later,
                "raw_first_faults": spread(faults[False]),
                "monitored_first_faults": spread(faults[True]),
                "steps_us": {
                    name: spread([run[name] for run in step_runs]) for name in step_runs[0]
                },
            }
        )
        added = rows[-1]["added_us"]
        print(
            f"  first fetch in a {method} worker: +{added['difference']:.0f} µs "
            f"[{added['low']:.0f}, {added['high']:.0f}]",
            file=sys.stderr,
        )
    collector.close()
    return rows


# 3d. Whole epochs, worker start-up included ----------------------------------------------------


def _epoch_wall(dataset: Any, workers: int, method: str, persistent: bool, epochs: int) -> float:
    """Mean seconds per epoch over ``epochs`` epochs of a new loader, worker start-up included."""
    loader = DataLoader(
        dataset,
        batch_size=16,
        num_workers=workers,
        multiprocessing_context=method,
        persistent_workers=persistent,
        collate_fn=plain_collate,
    )
    started = time.perf_counter()
    for _ in range(epochs):
        for _batch in loader:
            pass
    elapsed = time.perf_counter() - started
    del loader
    return elapsed / epochs


def _monitored_epoch(
    size: int, workers: int, method: str, persistent: bool, monitored: bool
) -> float:
    return _epoch_wall(_make("images", size, monitored), workers, method, persistent, 3)


def epochs(
    quick: bool, worker_counts: Sequence[int], methods: Sequence[str], reps: int | None = None
) -> list[Row]:
    """Whole-epoch wall time, raw vs monitored, per start method, epoch length and persistence."""
    reps = reps or (2 if quick else 7)
    lengths = (0.1,) if quick else (0.1, 2.0)
    rows = []
    for method in methods:
        for workers in [w for w in worker_counts if w > 0]:
            rate = 16 * 8 / _epoch_wall(Images(16 * 8), workers, method, True, 3)
            for seconds in lengths:
                for persistent in (False,) if quick else (False, True):
                    size = max(int(rate * seconds), 16 * workers)

                    run = partial(_monitored_epoch, size, workers, method, persistent)
                    raw, monitored = alternate(reps, partial(run, False), partial(run, True))
                    added = _ms(difference_ci(raw, monitored))
                    rows.append(
                        {
                            "start_method": method,
                            "workers": workers,
                            "persistent": persistent,
                            "epoch_s": seconds,
                            "items": size,
                            "raw_s": spread(raw),
                            "monitored_s": spread(monitored),
                            "ratio": ratio_ci(raw, monitored),
                            "added_ms": added,
                            "added_ms_per_worker": added["difference"] / workers,
                        }
                    )
                    print(
                        f"  epoch {method:10} w={workers} persistent={persistent!s:5} "
                        f"~{seconds:g}s {_ratio(rows[-1]['ratio'])} +{added['difference']:.1f} ms",
                        file=sys.stderr,
                    )
    return rows


def _ms(seconds: Row) -> Row:
    return {key: value * 1e3 for key, value in seconds.items()}


def _ratio(ratio: Row) -> str:
    return f"{ratio['ratio']:.3f} [{ratio['low']:.3f}, {ratio['high']:.3f}]"


# 4. Main-process cost per report ----------------------------------------------------------------


def per_report(quick: bool) -> Row:
    """Memory and time per report in the main process after many simulated reports."""
    count = 5_000 if quick else 100_000
    sources = ("numpy", "random", "torch", "rng")
    rng = random.Random(0)
    token = "bench"  # noqa: S105 - a monitor token, not a secret
    bodies = [
        encode_request(
            Report(
                generation=f"workers:1::{index // 8 * 8}",
                worker=index % 8,
                pid=100_000 + index,
                seed=rng.getrandbits(63),
                streams={name: Stream(f"{rng.getrandbits(64):016x}", "global") for name in sources},
            ),
            token,
            strict=False,
            awaits_verdict=False,
        )[HEADER_SIZE:]
        for index in range(count)
    ]
    collector = Collector("bench", frozenset())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    for body in bodies:
        # What the collector's server does with each frame: decode it, then judge it.
        collector.submit(decode_request(body, token).report, strict=False)
    elapsed = time.perf_counter() - started
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "reports": count,
        "sources_per_report": len(sources),
        "us_per_report": elapsed / count * 1e6,
        "bytes_per_generation_source": (after - before) / (count * len(sources)),
    }


# 5. Ranks -------------------------------------------------------------------------------------


def ranks(quick: bool) -> list[Row]:
    """Per-report cost of publishing to a real TCPStore on loopback, by number of ranks."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = torch.distributed.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)
    rows = []
    for world in (8,) if quick else (8, 64, 1024):
        for scenario in ("same seed", "distinct seeds"):
            namespace = f"bench/{world}/{scenario}"
            started = time.perf_counter()
            for rank in range(world):
                link = RankLink(store, rank, namespace)
                for worker in range(8):
                    member = Member(0, worker, rank * 100 + worker, rank, 0)
                    for source in ("numpy", "random", "torch"):
                        seed = worker if scenario == "same seed" else rank * 8 + worker
                        link.publish(source, f"{seed:016x}", member)
            reports = world * 8
            rows.append(
                {
                    "ranks": world,
                    "workers": 8,
                    "scenario": scenario,
                    "reports": reports,
                    "us_per_report": (time.perf_counter() - started) / reports * 1e6,
                }
            )
            print(
                f"  ranks={world:5} {scenario:14} {rows[-1]['us_per_report']:8.0f} µs/report",
                file=sys.stderr,
            )
    return rows


# Output ------------------------------------------------------------------------------------


def machine() -> Row:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "wrapt": wrapt.__version__,
        "distributions": len(list(importlib.metadata.distributions())),
    }


def markdown(results: Row) -> str:
    lines = [
        f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs, "
        f"Python {results['machine']['python']}, torch {results['machine']['torch']}, "
        f"numpy {results['machine']['numpy']}, wrapt {results['machine']['wrapt']}, "
        f"{results['machine']['distributions']} installed distributions; "
        f"{results['machine']['date']}.",
        "",
    ]
    if "per_item" in results:
        item = results["per_item"]
        lines += [
            "**Per item** (`ds[i]`, trivial dataset, after the first fetch, ns, median [IQR])",
            "",
            "| raw | bare wrapt proxy | monitored | monitored − raw | monitored − wrapt "
            "[95% CI] (goal ≤ 20) |",
            "|---|---|---|---|---|",
            f"| {_fmt(item['raw'])} | {_fmt(item['wrapt'])} | {_fmt(item['monitored'])} "
            f"| {item['overhead_ns']:.1f} | {_diff(item['over_wrapt_ns'])} |",
            "",
        ]
    if "throughput" in results:
        lines += [
            "**DataLoader throughput** (items/s after the first batch, median; ratio monitored/raw "
            "with 95% CI)",
            "",
            "| dataset | workers | start | batch | raw | monitored | ratio [95% CI] |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in results["throughput"]:
            ratio = row["ratio"]
            lines.append(
                f"| {row['dataset']} | {row['workers']} | {row['start_method']} | "
                f"{row['batch_size']} | {row['raw_items_per_s']['median']:.0f} | "
                f"{row['monitored_items_per_s']['median']:.0f} | "
                f"{ratio['ratio']:.3f} [{ratio['low']:.3f}, {ratio['high']:.3f}] |"
            )
        lines.append("")
    if "first_fetch" in results:
        first = results["first_fetch"]
        lines += [
            f"**First fetch, step by step, warm, in the main process** ({first['sources']} "
            "sources: 3 globals + 8 instance generators, 16 draws; µs, median [IQR])",
            "",
            "| fingerprint (3 globals) | fingerprint (all) | second look | exit check "
            "| report send | strict round trip |",
            "|---|---|---|---|---|---|",
            f"| {_fmt(first['fingerprint_globals_us'])} | {_fmt(first['fingerprint_us'])} | "
            f"{_fmt(first['second_look_us'])} | {_fmt(first['exit_check_us'])} | "
            f"{_fmt(first['send_us'])} | "
            f"{_fmt(first['strict_round_trip_us'])} |",
            "",
            f"The walk alone over a pipeline with a generator in every kind of place (attribute, "
            f"partial, class attribute, module global; {first['walk_generators']} found): "
            f"{_fmt(first['walk_us'])} µs.",
            "",
        ]
    if "time_to_first_batch" in results:
        lines += [
            "**Time to first batch** (`iter(loader)` to the first batch, 2 workers, a new "
            "monitor each time, worker start-up and seedwatch's imports included; s, median [IQR])",
            "",
            "| start | raw | monitored | ratio [95% CI] (goal ≤ 1.02) | added ms [95% CI] |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['start_method']} | {_fmt3(row['raw_s'])} | {_fmt3(row['monitored_s'])} | "
            f"{_ratio(row['ratio'])} | {_diff(row['added_ms'])} |"
            for row in results["time_to_first_batch"]
        ]
        lines.append("")
    if "worker_first_fetch" in results:
        rows = results["worker_first_fetch"]
        steps = list(rows[0]["steps_us"])
        lines += [
            "**A worker's first fetch, inside real workers** (ManyGenerators: 3 globals + 8 "
            "instance generators; the worker times its first `ds[i]`; µs, median [IQR])",
            "",
            "| start | raw | monitored | added [95% CI] (goal ≤ 1000) | monitored 2nd fetch "
            "| page faults, raw / monitored |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['start_method']} | {_fmt(row['raw_first_us'])} | "
            f"{_fmt(row['monitored_first_us'])} | {_diff(row['added_us'])} | "
            f"{row['monitored_second_us']:.1f} | "
            f"{row['raw_first_faults']['median']:.0f} / "
            f"{row['monitored_first_faults']['median']:.0f} |"
            for row in rows
        ]
        lines += [
            "",
            "The same steps timed one by one, cold, in a fresh worker (µs, median [IQR]; the "
            "first look includes the walk; the strict round trip is judged by the main process):",
            "",
            "| start | "
            + " | ".join(name.removesuffix("_us").replace("_", " ") for name in steps)
            + " |",
            "|---|" + "---|" * len(steps),
        ]
        lines += [
            f"| {row['start_method']} | "
            + " | ".join(_fmt(row["steps_us"][name]) for name in steps)
            + " |"
            for row in rows
        ]
        lines.append("")
    if "epochs" in results:
        lines += [
            "**Whole epochs** (wall time per epoch, 3 epochs of a new loader, worker start-up "
            "included; the Images dataset, batch 16, batches sent as numpy arrays; s, median; "
            "the ratio is monitored/raw time, so its goal is ≤ 1.01 (a speed ratio ≥ 0.99) for "
            "epochs of 1 s or more; added time ≤ 1 ms per worker plus a fixed cost)",
            "",
            "| start | workers | persistent | epoch | raw s | monitored s | time ratio [95% CI] | "
            "added ms [95% CI] | added ms per worker |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['start_method']} | {row['workers']} | {'yes' if row['persistent'] else 'no'}"
            f" | ~{row['epoch_s']:g} s | {row['raw_s']['median']:.3f} | "
            f"{row['monitored_s']['median']:.3f} | {_ratio(row['ratio'])} | "
            f"{_diff(row['added_ms'])} | {row['added_ms_per_worker']:.2f} |"
            for row in results["epochs"]
        ]
        lines.append("")
    if "per_report" in results:
        report = results["per_report"]
        lines += [
            f"**Main process per report** (after {report['reports']:,} simulated reports of "
            f"{report['sources_per_report']} sources): {report['us_per_report']:.1f} µs per "
            f"report, {report['bytes_per_generation_source']:.0f} bytes per "
            "(worker generation, source).",
            "",
        ]
    if "ranks" in results:
        lines += [
            "**Ranks** (publishing to a TCPStore on loopback; 8 workers per rank, 3 sources each)",
            "",
            "| ranks | scenario | reports | µs per report |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {row['ranks']} | {row['scenario']} | {row['reports']} | {row['us_per_report']:.0f} |"
            for row in results["ranks"]
        ]
        lines.append("")
    return "\n".join(lines)


def _fmt(value: Row) -> str:
    return f"{value['median']:.1f} [{value['q1']:.1f}–{value['q3']:.1f}]"


def _fmt3(value: Row) -> str:
    return f"{value['median']:.3f} [{value['q1']:.3f}–{value['q3']:.3f}]"


def _diff(value: Row) -> str:
    return f"{value['difference']:.1f} [{value['low']:.1f}, {value['high']:.1f}]"


#: Each section by name; throughput also takes the worker counts, start methods and repetitions.
SECTIONS: dict[str, Callable[..., Any]] = {
    "per_item": per_item,
    "throughput": throughput,
    "first_fetch": first_fetch,
    "time_to_first_batch": time_to_first_batch,
    "worker_first_fetch": worker_first_fetch,
    "epochs": epochs,
    "per_report": per_report,
    "ranks": ranks,
}
#: Sections that run per start method; the first two also per worker count.
_BY_WORKERS = ("throughput", "epochs")
_BY_METHOD = ("time_to_first_batch", "worker_first_fetch")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--workers", default="0,2", help="worker counts, e.g. 0,2,4,8,16")
    parser.add_argument("--start-methods", default="fork,spawn,forkserver")
    parser.add_argument("--reps", type=int, help="throughput repetitions per side (default 9)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", help="results file name (default: latest, or smoke)")
    arguments = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    worker_counts = [int(w) for w in arguments.workers.split(",")]
    methods = arguments.start_methods.split(",")
    if arguments.quick:
        methods = methods[:1]
    results: Row = {"machine": machine(), "quick": arguments.quick}
    name = arguments.name or ("smoke" if arguments.quick else "latest")
    arguments.out.mkdir(parents=True, exist_ok=True)
    table = ""
    for section in arguments.sections:
        print(f"{section} ...", file=sys.stderr)
        if section in _BY_WORKERS:
            results[section] = SECTIONS[section](
                arguments.quick, worker_counts, methods, arguments.reps
            )
        elif section in _BY_METHOD:
            results[section] = SECTIONS[section](arguments.quick, methods)
        else:
            results[section] = SECTIONS[section](arguments.quick)
        # Written after every section: a run cut short keeps what it measured.
        (arguments.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
        table = markdown(results)
        (arguments.out / f"{name}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
