"""
Pipelines for judgement: streams that are used or only latent, used late, or overlapping.

Importable (not in a test file) so spawn and forkserver workers can unpickle them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

FILES = [f"shard-{index:02d}" for index in range(16)]


class ShuffledOnce(Dataset[torch.Tensor]):
    """A generator used in __init__ only, to shuffle the file list: never drawn in a worker."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.files = list(self.rng.permutation(FILES))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, len(self.files[index])])


class RareAugment(Dataset[torch.Tensor]):
    """A generator drawn from for the last items only: unmoved at a worker's first batch."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(1)

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        noise = float(self.rng.random()) if index >= 12 else 0.0
        return torch.tensor([float(index), noise])


class SharedCursor(Dataset[torch.Tensor]):
    """A generator every worker copies, advanced by its id in worker_init_fn (pattern 10)."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(2)

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index), float(self.rng.random())])


def advance_by_worker_id(worker_id: int) -> None:
    """'Decorrelate' the workers by skipping worker_id draws: their streams overlap instead."""
    info = get_worker_info()
    assert info is not None
    dataset: Any = info.dataset
    dataset.rng.random(worker_id)


def reseed_per_worker(worker_id: int) -> None:
    """The overlap hint applied: a generator per worker from its own seed."""
    info = get_worker_info()
    assert info is not None
    dataset: Any = info.dataset
    dataset.rng = np.random.default_rng(info.seed)


class NoisyRows(Dataset[torch.Tensor]):
    """Rows with noise from the torch global, which PyTorch reseeds per worker from the seed."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index)]) + torch.rand(1)


def train_once(history: str, method: str, seed: int) -> list[dict[str, Any]]:
    """One run of a job: seed, two epochs through two workers, with a history file."""
    from seedwatch import findings, monitor

    torch.manual_seed(seed)
    dataset = monitor(NoisyRows(), history=history)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context=method)
    for _epoch in range(2):
        for _batch in loader:
            pass
    return [finding.as_dict() for finding in findings(dataset)]


class ShuffledEachEpoch(IterableDataset[int]):
    """Builds random.Random(0) in __iter__: with persistent workers, every epoch alike."""

    def __iter__(self) -> Iterator[int]:
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        order = list(range(start, 16, step))
        rng = random.Random(0)
        rng.shuffle(order)
        for index in order:
            yield index + int(rng.random() > 0.5)
