"""
Pipelines that keep their randomness where real code keeps it, each beside its clean twin.

Importable (not in a test file) so spawn and forkserver workers can unpickle them.
Names starting ``bad`` repeat in every worker and epoch; names ending ``ok`` are
seeded per worker and must never be reported.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

#: Module globals the pipeline's code draws from: one constant, one reseeded per worker.
BAD_NOISE = np.random.default_rng(5)
NOISE_OK = np.random.default_rng(5)


def add_noise(value: int) -> int:
    """A helper the dataset calls: seedwatch follows its name to the globals it uses."""
    return value + int(BAD_NOISE.integers(1 << 20)) + int(NOISE_OK.integers(1 << 20))


def jitter(value: int, rng: random.Random) -> int:
    """A transform taking its generator as an argument (held by a functools.partial)."""
    return value + rng.getrandbits(16)


def make_noise(seed: int | None) -> Callable[[int], int]:
    """A closure capturing a generator: constant seed, or made per worker on first use."""
    rng = None if seed is None else np.random.default_rng(seed)

    def add(value: int) -> int:
        nonlocal rng
        if rng is None:
            rng = np.random.default_rng(torch.initial_seed())
        return value + int(rng.integers(1 << 20))

    return add


class Flipper:
    """An object whose bound method is the transform."""

    def __init__(self, seed: int | None) -> None:
        self.state = None if seed is None else np.random.RandomState(seed)

    def apply(self, value: int) -> int:
        if self.state is None:
            self.state = np.random.RandomState(torch.initial_seed() % 2**32)
        return -value if self.state.rand() < 0.5 else value


class BadAugment:
    """A generator stored on the class, shared by every instance (MONAI's Randomizable.R)."""

    R = np.random.RandomState(4)

    def __call__(self, value: int) -> int:
        return value + int(self.R.randint(1 << 20))


class AugmentOk:
    """The same, but worker_init_fn gives the class a generator per worker."""

    R = np.random.RandomState(4)

    def __call__(self, value: int) -> int:
        return value + int(self.R.randint(1 << 20))


class Reach(Dataset[torch.Tensor]):
    """Every place a map-style pipeline keeps a generator, bad and ok side by side."""

    def __init__(self, *, closures: bool = True, size: int = 16) -> None:
        # Closures do not pickle: spawn and forkserver users cannot hold them.
        self.noise_bad = make_noise(1) if closures else abs
        self.noise_ok = make_noise(None) if closures else abs
        self.jitter_bad = functools.partial(jitter, rng=random.Random(2))
        self.jitter_ok = functools.partial(jitter, rng=random.Random(2))  # reseeded per worker
        self.flip_bad = Flipper(3).apply
        self.flip_ok = Flipper(None).apply
        self.augment_bad = BadAugment()
        self.augment_ok = AugmentOk()
        self.lazy_bad: np.random.Generator | None = None
        self.lazy_ok: np.random.Generator | None = None
        self.per_item_bad: torch.Generator | None = None
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.lazy_bad is None:
            self.lazy_bad = np.random.default_rng(6)
        if self.lazy_ok is None:
            self.lazy_ok = np.random.default_rng(torch.initial_seed())
        self.per_item_bad = torch.Generator().manual_seed(7)
        random.seed(9)  # restarts the global `random` stream at every item
        value = add_noise(index)
        for transform in (self.noise_bad, self.noise_ok, self.jitter_bad, self.jitter_ok):
            value = transform(value)
        value = self.augment_ok(self.augment_bad(self.flip_ok(self.flip_bad(value))))
        drawn = [
            int(self.lazy_bad.integers(1 << 20)),
            int(self.lazy_ok.integers(1 << 20)),
            int(torch.randint(1 << 20, (1,), generator=self.per_item_bad).item()),
            random.getrandbits(20),
        ]
        return torch.tensor([index, value, *drawn])


def reach_worker_init(worker_id: int) -> None:
    """Seed the ok twins per worker: the class attribute, the module global, the partial."""
    global NOISE_OK  # noqa: PLW0603 - the fix for a module-level generator
    info = get_worker_info()
    assert info is not None
    AugmentOk.R = np.random.RandomState(info.seed % 2**32)
    NOISE_OK = np.random.default_rng(info.seed)
    dataset: Any = info.dataset
    if isinstance(dataset, Reach):
        dataset.jitter_ok = functools.partial(jitter, rng=random.Random(info.seed))


class ReachStream(IterableDataset[torch.Tensor]):
    """An iterable whose generators live only in its running __iter__ and what it delegates to."""

    def __init__(self, size: int = 16) -> None:
        self.size = size

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        rows = self._rows(start, step)  # a local generator: its frame is walked too
        yield from self._noisy(rows)  # delegation: the running delegate's frame

    def _noisy(self, rows: Iterator[list[int]]) -> Iterator[torch.Tensor]:
        rng_bad = random.Random(10)
        rng_ok = random.Random(torch.initial_seed())
        for row in rows:
            yield torch.tensor([*row, rng_bad.getrandbits(20), rng_ok.getrandbits(20)])

    def _rows(self, start: int, step: int) -> Iterator[list[int]]:
        order_bad = np.random.default_rng(11)
        order_ok = np.random.default_rng(torch.initial_seed())
        for index in range(start, self.size, step):
            yield [index, int(order_bad.integers(1 << 20)), int(order_ok.integers(1 << 20))]


def reset_generators() -> None:
    """Restore the module's and classes' generators to their import-time state."""
    global BAD_NOISE, NOISE_OK
    BAD_NOISE, NOISE_OK = np.random.default_rng(5), np.random.default_rng(5)
    BadAugment.R, AugmentOk.R = np.random.RandomState(4), np.random.RandomState(4)
