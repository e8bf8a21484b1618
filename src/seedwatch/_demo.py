"""
``python -m seedwatch demo``: the classic pipelines, through real DataLoaders.

The datasets live here, at module level, so spawn and forkserver workers can
import them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from seedwatch._announce import quiet_announcements
from seedwatch._api import findings, monitor
from seedwatch._config import DEMO_EPOCHS, DEMO_WORKERS
from seedwatch._finding import counted
from seedwatch._render import render_findings


class NoisyImages(Dataset[torch.Tensor]):
    """Fake images with numpy noise from the legacy global generator."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        noise = np.random.normal(size=4)  # noqa: NPY002 - the article's augmentation
        return torch.as_tensor(noise + index)


class CroppedImages(Dataset[torch.Tensor]):
    """Random crops from a generator made once in __init__, as a linter suggested."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.as_tensor(self.rng.integers(0, 224, size=2) + index)


class LazyCrops(Dataset[torch.Tensor]):
    """The generator is made lazily in the worker, as advised, but from a constant seed."""

    def __init__(self) -> None:
        self.rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.rng is None:
            self.rng = np.random.default_rng(0)
        return torch.as_tensor(self.rng.integers(0, 224, size=2) + index)


def article_worker_init(worker_id: int) -> None:
    """Reseed numpy like the widely copied article; get_state()[1][0] is constant in workers."""
    state: Any = np.random.get_state()  # noqa: NPY002 - the article reads the legacy global
    np.random.seed(state[1][0] + worker_id)  # noqa: NPY002


def per_worker_generator(worker_id: int) -> None:  # noqa: ARG001 - worker_init_fn's signature
    """Apply the real fix: a generator per worker, from the seed PyTorch gave that worker."""
    info = get_worker_info()
    if info is not None and isinstance(info.dataset, CroppedImages):
        info.dataset.rng = np.random.default_rng(info.seed)


@dataclass(frozen=True)
class Pipeline:
    """One demo case."""

    title: str
    dataset: Callable[[], Dataset[torch.Tensor]]
    worker_init_fn: Callable[[int], None] | None


PIPELINES = (
    Pipeline(
        "worker_init_fn: np.random.seed(np.random.get_state()[1][0] + worker_id)",
        NoisyImages,
        article_worker_init,
    ),
    Pipeline("a dataset holding np.random.default_rng(0) from __init__", CroppedImages, None),
    Pipeline(
        "a generator created lazily in __getitem__, from the constant seed 0", LazyCrops, None
    ),
    Pipeline(
        "correct: the generator is rebuilt per worker from get_worker_info().seed",
        CroppedImages,
        per_worker_generator,
    ),
)


def run_demo(
    *, workers: int = DEMO_WORKERS, epochs: int = DEMO_EPOCHS, start_method: str | None = None
) -> int:
    """Run every pipeline, print what seedwatch finds, and return the exit status (0)."""
    method = start_method or torch.multiprocessing.get_start_method()
    print(
        f"seedwatch demo: {counted(len(PIPELINES), 'pipeline')}, {counted(workers, 'worker')}, "
        f"{counted(epochs, 'epoch')} each (start method: {method})\n"
    )
    with quiet_announcements():
        for number, pipeline in enumerate(PIPELINES, start=1):
            dataset = monitor(pipeline.dataset())
            loader = DataLoader(
                dataset,
                batch_size=4,
                num_workers=workers,
                worker_init_fn=pipeline.worker_init_fn,
                multiprocessing_context=method if workers else None,
            )
            for _ in range(epochs):
                for _batch in loader:
                    pass
            print(f"[{number}/{len(PIPELINES)}] {pipeline.title}")
            print(render_findings(findings(dataset)), end="\n\n")
    return 0
