# ruff: noqa: INP001 - imported by the job scripts beside it, which run by path
"""A dataset the framework jobs share: the bug every one of them must find."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class BuggySet(Dataset[torch.Tensor]):
    """Every worker and every epoch gets a copy of the same generator."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([float(index), self.rng.normal()])
