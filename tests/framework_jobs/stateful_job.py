# ruff: noqa: INP001, T201 - a script run by path (no package), which prints its results
"""
A torchdata job: ``StatefulDataLoader`` with two workers.

Usage: ``stateful_job.py SCENARIO [STATE_FILE]``:

- ``buggy``: two epochs over a Dataset holding ``np.random.default_rng(0)``;
- ``resume``: half an epoch, ``state_dict()``, then the rest of that epoch in a new loader
  over the same dataset after ``load_state_dict()``;
- ``checkpoint STATE_FILE``: half an epoch, then the state saved to STATE_FILE and exit;
- ``restart STATE_FILE``: a new process finishes that epoch from STATE_FILE.

Except ``buggy``, the Dataset draws only from torch's global generator, which PyTorch
reseeds in every worker; a resumed loader restores the epoch's base seed, which replays it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from job_datasets import BuggySet
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

HALF_AN_EPOCH = 4


class GlobalsSet(Dataset[torch.Tensor]):
    """Noise from torch's global generator."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index), torch.rand(()).item()])


def loader(dataset: Dataset[torch.Tensor]) -> StatefulDataLoader:
    return StatefulDataLoader(dataset, batch_size=2, num_workers=2)


def half_an_epoch(train: StatefulDataLoader) -> int:
    """Fetch half an epoch's batches and stop, as a job interrupted by a checkpoint does."""
    batches = iter(train)
    for _ in range(HALF_AN_EPOCH):
        next(batches)
    return HALF_AN_EPOCH


def buggy() -> int:
    train = loader(BuggySet())
    return sum(1 for _ in range(2) for _batch in train)


def resume() -> int:
    dataset = GlobalsSet()
    first = loader(dataset)
    seen = half_an_epoch(first)
    state = first.state_dict()
    second = loader(dataset)
    second.load_state_dict(state)
    return seen + sum(1 for _batch in second)


def checkpoint(path: str) -> int:
    train = loader(GlobalsSet())
    seen = half_an_epoch(train)
    torch.save(train.state_dict(), path)
    return seen


def restart(path: str) -> int:
    train = loader(GlobalsSet())
    train.load_state_dict(torch.load(path))
    return sum(1 for _batch in train)


def main(scenario: str, *state_file: str) -> None:
    print(f"stateful job {scenario}: start", flush=True)
    scenarios: dict[str, Callable[..., int]] = {
        "buggy": buggy,
        "resume": resume,
        "checkpoint": checkpoint,
        "restart": restart,
    }
    batches = scenarios[scenario](*state_file)
    print(f"stateful job {scenario}: {batches} batches")


if __name__ == "__main__":
    main(*sys.argv[1:])
