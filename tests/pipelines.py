"""
Datasets, transforms and worker_init_fns for the tests, one per real-world pattern.

They live in an importable module (not in test files) so spawn and forkserver
workers can unpickle them.
"""

from __future__ import annotations

import copy
import os
import random
import signal
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

START_METHODS = ("fork", "spawn", "forkserver")


def make_generator(kind: str) -> Any:
    """Return a generator of ``kind``, seeded with a constant, as a buggy __init__ would."""
    factories: dict[str, Callable[[], Any]] = {
        "numpy_generator": lambda: np.random.default_rng(0),
        "bit_generator": lambda: np.random.PCG64(0),
        "random_state": lambda: np.random.RandomState(0),
        "python_random": lambda: random.Random(0),
        "torch_generator": lambda: torch.Generator().manual_seed(0),
    }
    return factories[kind]()


def draw(rng: Any) -> int:
    """Draw one integer from any supported generator."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(1 << 30))
    if isinstance(rng, np.random.BitGenerator):
        return int(rng.random_raw() % (1 << 30))
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(1 << 30))
    if isinstance(rng, random.Random):
        return rng.getrandbits(30)
    return int(torch.randint(1 << 30, (1,), generator=rng).item())


def global_draws() -> list[int]:
    """Draw from the three global generators PyTorch reseeds per worker."""
    return [
        int(np.random.randint(1 << 30)),
        random.getrandbits(30),
        int(torch.randint(1 << 30, (1,)).item()),
    ]


class GlobalsDataset(Dataset[torch.Tensor]):
    """Clean: draws only from the globals PyTorch reseeds per worker."""

    def __init__(self, size: int = 16) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, *global_draws()])


class HoldsGenerator(Dataset[torch.Tensor]):
    """Bug pattern 1: a generator created once in __init__."""

    def __init__(self, kind: str = "numpy_generator", size: int = 16) -> None:
        self.rng = make_generator(kind)
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, draw(self.rng)])


class HoldsGeneratorDrawsNumpy(HoldsGenerator):
    """HoldsGenerator that also draws from np.random, the global PyTorch reseeds per worker."""

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, draw(self.rng), np.random.randint(1 << 30)])


class RandomFlip:
    """A transform owning its RandomState (bug pattern 2)."""

    def __init__(self, seed: int = 0) -> None:
        self.state = np.random.RandomState(seed)

    def __call__(self, value: int) -> int:
        return -value if self.state.rand() < 0.5 else value


class SlottedJitter:
    """A transform keeping its generator in a slot."""

    __slots__ = ("g",)

    def __init__(self) -> None:
        self.g = torch.Generator().manual_seed(1)

    def __call__(self, value: int) -> int:
        return value + int(torch.randint(3, (1,), generator=self.g).item())


class TransformedDataset(Dataset[torch.Tensor]):
    """Generators one level deeper: ``transform.state`` and ``transforms[1].g``."""

    def __init__(self, size: int = 16) -> None:
        self.transform = RandomFlip()
        self.transforms: list[Callable[[int], int]] = [abs, SlottedJitter()]
        self.augs = {"noise": random.Random(3)}
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        value = self.transform(index + 1)
        for transform in self.transforms:
            value = transform(value)
        return torch.tensor([index, value, self.augs["noise"].getrandbits(20)])


class BatchedDataset(Dataset[torch.Tensor]):
    """A dataset with ``__getitems__``: the DataLoader never calls its ``__getitem__``."""

    def __init__(self, size: int = 16) -> None:
        self.rng = np.random.default_rng(5)
        self.size = size
        self.single_fetches = 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        self.single_fetches += 1
        return torch.tensor([index, int(self.rng.integers(1 << 30))])

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        values = self.rng.integers(1 << 30, size=len(indices))
        return [torch.tensor([i, int(v)]) for i, v in zip(indices, values, strict=True)]


class StreamDataset(IterableDataset[torch.Tensor]):
    """Bug pattern 8: an IterableDataset holding a generator, sharded by worker."""

    def __init__(self, size: int = 16) -> None:
        self.rng = np.random.default_rng(9)
        self.size = size

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        for index in range(start, self.size, step):
            yield torch.tensor([index, int(self.rng.integers(1 << 30))])


class StreamDrawsNumpy(StreamDataset):
    """StreamDataset that also draws from np.random, the global PyTorch reseeds per worker."""

    def __iter__(self) -> Iterator[torch.Tensor]:
        for row in super().__iter__():
            yield torch.cat([row, torch.tensor([np.random.randint(1 << 30)])])


class CleanStreamDataset(IterableDataset[torch.Tensor]):
    """The fix for pattern 8: the generator is built per worker inside ``__iter__``."""

    def __init__(self, size: int = 16) -> None:
        self.size = size

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        rng = np.random.default_rng(torch.initial_seed())
        for index in range(start, self.size, step):
            yield torch.tensor([index, int(rng.integers(1 << 30))])


class ShardOrderDataset(Dataset[torch.Tensor]):
    """A generator that every worker must share (a shard order), plus clean globals."""

    def __init__(self, size: int = 16) -> None:
        self.shard_order = torch.Generator().manual_seed(1234)
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        shard = int(torch.randint(4, (1,), generator=self.shard_order))
        return torch.tensor([index, shard, *global_draws()])


class EveryGenerator(TransformedDataset):
    """
    Every generator kind a dataset can hold, at the top level and nested, in one dataset.

    Each kind is built once in ``__init__`` (bug pattern 1, with distinct seeds so no two
    sources share a stream); the transforms hide generators in an attribute, a list
    item with ``__slots__`` and a dict. ``shard_order`` is meant to be shared, and
    ``__getitem__`` also draws from the globals PyTorch reseeds, which stay clean.
    """

    def __init__(self, size: int = 8) -> None:
        super().__init__(size)
        self.numpy_generator = np.random.default_rng(0)
        self.bit_generator = np.random.PCG64(1)
        self.random_state = np.random.RandomState(2)
        self.python_random = random.Random(6)
        self.torch_generator = torch.Generator().manual_seed(4)
        self.shard_order = torch.Generator().manual_seed(1234)

    def __getitem__(self, index: int) -> torch.Tensor:
        transformed = super().__getitem__(index)  # transform, transforms, augs['noise']
        own = (
            self.numpy_generator,
            self.bit_generator,
            self.random_state,
            self.python_random,
            self.torch_generator,
        )
        return torch.cat([transformed, torch.tensor([*map(draw, own), *global_draws()])])


class FailingDataset(Dataset[int]):
    """Raises the user's own exception at one index."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> int:
        if index == 5:
            raise KeyError(f"missing sample {index}")
        return index


class SuicidalDataset(Dataset[int]):
    """Worker 1 is killed by SIGKILL in the middle of the epoch."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int) -> int:
        info = get_worker_info()
        if info is not None and info.id == 1 and index >= 9:
            os.kill(os.getpid(), signal.SIGKILL)
        return index


#: A library's own module-level generator, which no worker reseeds.
LIBRARY_RNG = np.random.default_rng(77)


def library_rng() -> np.random.Generator:
    """Return the library generator (a picklable getter for a custom source)."""
    return LIBRARY_RNG


def library_draws(n: int) -> list[int]:
    """Read the library generator's next ``n`` raw values from a copy of its state."""
    twin = copy.deepcopy(LIBRARY_RNG.bit_generator)
    return [int(v) for v in twin.random_raw(n)]


class UsesLibrary(GlobalsDataset):
    """Clean globals, but augments with the library's generator."""

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, int(LIBRARY_RNG.integers(1 << 30))])


def constant_seed(worker_id: int) -> None:
    """Bug pattern 3: every worker, every epoch, the same numpy seed."""
    np.random.seed(42)


def worker_id_seed(worker_id: int) -> None:
    """Bug pattern 4: seeded by worker id only, so every epoch repeats."""
    np.random.seed(worker_id)


def article_seed(worker_id: int) -> None:
    """Bug pattern 5: get_state()[1][0] is the constant 2147483648 in a worker."""
    np.random.seed(np.random.get_state()[1][0] + worker_id)  # type: ignore[index]


def per_worker_generator(worker_id: int) -> None:
    """The fix for pattern 1: rebuild the dataset's generator from the worker's seed."""
    info = get_worker_info()
    assert info is not None
    dataset: Any = info.dataset
    dataset.rng = np.random.default_rng(info.seed)


def article_seed_and_fix(worker_id: int) -> None:
    """The article's numpy seeding (pattern 5) next to the real fix for the dataset's generator."""
    article_seed(worker_id)
    per_worker_generator(worker_id)


def load(
    dataset: Any,
    *,
    epochs: int = 2,
    method: str = "fork",
    workers: int = 2,
    batch_size: int | None = 2,
    reseed_every_epoch: int | None = None,
    **loader_options: Any,
) -> list[list[list[int]]]:
    """Run ``epochs`` epochs through a real DataLoader; return every batch as lists."""
    context = method if workers else None
    loader = DataLoader(
        dataset,
        num_workers=workers,
        batch_size=batch_size,
        multiprocessing_context=context,
        **loader_options,
    )
    epochs_seen = []
    for _ in range(epochs):
        if reseed_every_epoch is not None:
            torch.manual_seed(reseed_every_epoch)
        iterator = iter(loader)
        try:
            epochs_seen.append([batch.tolist() for batch in iterator])
        except BaseException:
            # An iterator that raised sits in a reference cycle with its traceback;
            # when the garbage collector reaps it, PyTorch's shutdown waits 5 s per
            # worker. Shut it down now, as its own __del__ would.
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            raise
    return epochs_seen


class _ReseedingLoader(DataLoader[torch.Tensor]):
    """A loader whose every epoch starts with torch.manual_seed(0) (bug pattern 6)."""

    def __iter__(self) -> Any:
        torch.manual_seed(0)
        return super().__iter__()


def reseeding_loader() -> DataLoader[torch.Tensor]:
    """A main-process loader that reseeds torch before every epoch."""
    return _ReseedingLoader(GlobalsDataset(), batch_size=4)
