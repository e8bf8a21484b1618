# ruff: noqa: INP001 - a script run by path, not a module of a package
"""
A DDP job for torchrun: a gloo process group, then two epochs through a DataLoader.

Usage: ``ddp_job.py same_seed|by_rank|no_workers``. ``same_seed`` calls
``torch.manual_seed(42)`` on every rank, so worker k of every rank draws the same streams;
``by_rank`` seeds with ``42 + rank``. ``no_workers`` loads in the main process
(``num_workers=0``) and calls ``torch.manual_seed(42)`` before every epoch, on every rank.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


class NoisySet(Dataset[torch.Tensor]):
    """Noise from torch's global generator, which PyTorch seeds per worker from the rank's."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index), torch.rand(()).item()])


def say(line: str) -> None:
    """Print a line in one write, so the ranks' lines do not interleave on a shared stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(scenario: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    say(f"ddp job {scenario}: rank {rank} start")
    torch.manual_seed(42 + rank if scenario == "by_rank" else 42)
    dataset = NoisySet()
    sampler: DistributedSampler[torch.Tensor] = DistributedSampler(dataset)
    workers = 0 if scenario == "no_workers" else 2
    loader = DataLoader(dataset, batch_size=4, num_workers=workers, sampler=sampler)
    batches = 0
    for epoch in range(2):
        if scenario == "no_workers":
            torch.manual_seed(42)
        sampler.set_epoch(epoch)
        batches += sum(1 for _batch in loader)
    dist.barrier()
    dist.destroy_process_group()
    say(f"ddp job {scenario}: rank {rank} saw {batches} batches")


if __name__ == "__main__":
    main(sys.argv[1])
