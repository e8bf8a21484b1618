"""Datasets for the benchmarks; a module of their own so spawned workers can import them."""

from __future__ import annotations

import functools
import random
import resource
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

_T = TypeVar("_T")


def plain_collate(batch: list[object]) -> np.ndarray:
    """
    Stack a batch as one numpy array, so no tensor crosses between processes.

    With torch's ``file_system`` sharing (the benchmarks' choice: ``file_descriptor``
    fails on some machines), every worker process that sends a tensor starts a
    ``torch_shm_manager`` that outlives it, about 57 MB each: a full run left 412 of
    them behind and ran the machine out of memory. Raw and monitored pay the same
    pickling, so the difference between them is still seedwatch's.
    """
    return np.stack([np.asarray(item) for item in batch])


class Trivial(Dataset[int]):
    """Returns its index: the cheapest possible item, so any overhead shows."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


class Images(Dataset[torch.Tensor]):
    """A realistic item: random crop, flip and noise on a 224x224x3 uint8 image, in numpy."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        top, left = np.random.randint(0, 32, size=2)
        crop = self.image[top : top + 224, left : left + 224]
        if np.random.rand() < 0.5:
            crop = crop[:, ::-1]
        noisy = crop.astype(np.int16) + np.random.randint(-8, 9, size=crop.shape, dtype=np.int16)
        return torch.from_numpy(np.clip(noisy, 0, 255).astype(np.uint8))


class ManyGenerators(Dataset[int]):
    """Eight instance generators of every kind, for the first-fetch cost."""

    def __init__(self) -> None:
        self.rngs = [np.random.default_rng(i) for i in range(3)]
        self.states = {"a": np.random.RandomState(1), "b": np.random.RandomState(2)}
        self.python = random.Random(3)
        self.torch = [torch.Generator().manual_seed(4), torch.Generator().manual_seed(5)]

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        return index


NOISE = np.random.default_rng(7)


def add_noise(value: int, rng: random.Random) -> int:
    return value + rng.getrandbits(8) + int(NOISE.integers(8))


class ClassLevel:
    """A transform drawing from a class-level generator."""

    R = np.random.RandomState(8)

    def __call__(self, value: int) -> int:
        return value + int(self.R.randint(8))


class EveryPlace(Dataset[int]):
    """Generators in every place the walk looks: attributes, a partial, a class, a module global."""

    def __init__(self) -> None:
        self.transforms = [functools.partial(add_noise, rng=random.Random(9)), ClassLevel()]
        self.rng = np.random.default_rng(10)
        self.samples = list(range(10_000))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> int:
        value = self.samples[index]
        for transform in self.transforms:
            value = transform(value)
        return value


class Timed(Dataset[tuple[float, int]]):
    """
    Serves how long each fetch of ``inner`` took, in µs, and the page faults it took.

    The first fetch's cost as a worker sees it. Minor page faults are what a forked
    worker pays to copy a page it shares with the main process before writing to it.
    """

    def __init__(self, inner: Dataset[object]) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[float, int]:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        started = time.perf_counter()
        self.inner[index]
        elapsed = (time.perf_counter() - started) * 1e6
        return elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


class FirstFetchSteps(Dataset[dict[str, float]]):
    """
    In a worker, times each step of a monitored first fetch of ManyGenerators, in µs.

    The steps seedwatch takes at a worker's first fetch, one by one and cold, as
    the worker meets them: custom sources resolved, the walk, the first look
    (walk and fingerprints), the second look, the report sent, a strict round trip.
    """

    def __init__(self, channel: object) -> None:
        from seedwatch._sources import entry_point_refs  # noqa: PLC0415 - seedwatch's own

        self.channel = channel
        self.inner = ManyGenerators()
        # What a monitored dataset hands its workers: the entry points found here, once.
        self.entry_points = entry_point_refs()

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, float]:
        from seedwatch._discover import find_generators  # noqa: PLC0415 - timed in the worker
        from seedwatch._probe import look, look_after, report_of  # noqa: PLC0415
        from seedwatch._sources import adopt_entry_points, custom_sources  # noqa: PLC0415
        from seedwatch._transport import send  # noqa: PLC0415
        from seedwatch._wire import encode_request  # noqa: PLC0415

        steps: dict[str, float] = {}

        def timed(name: str, action: Callable[[], _T]) -> _T:
            started = time.perf_counter()
            value = action()
            steps[name] = (time.perf_counter() - started) * 1e6
            return value

        adopt_entry_points(self.entry_points)  # as a monitored dataset does when unpickled
        timed("sources_us", custom_sources)
        timed("walk_us", lambda: find_generators(self.inner))
        first = timed("first_look_us", lambda: look(self.inner, 16))
        after = timed("second_look_us", lambda: look_after(self.inner, 16, first))
        report = report_of(first.streams, after.later)
        token = self.channel.token  # type: ignore[attr-defined]
        fire = encode_request(report, token, strict=False, awaits_verdict=False)
        ask = encode_request(report, token, strict=True, awaits_verdict=True)
        timed("send_us", lambda: send(self.channel, fire, await_reply=False))  # type: ignore[arg-type]
        timed("strict_round_trip_us", lambda: send(self.channel, ask, await_reply=True))  # type: ignore[arg-type]
        return steps
