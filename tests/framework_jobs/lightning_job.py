# ruff: noqa: INP001, T201 - a script run by path (no package), which prints its results
"""
A Lightning job: ``Trainer.fit`` on a tiny model with a LightningDataModule, two epochs, on CPU.

Usage: ``lightning_job.py buggy|clean|seeded``. ``buggy`` holds ``np.random.default_rng(0)``
on its Dataset; ``clean`` builds the generator per worker; ``seeded`` is ``buggy`` after
``seed_everything(42, workers=True)``, which does not reach a generator the dataset holds.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import torch
from job_datasets import BuggySet
from lightning import LightningDataModule, LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, Dataset


class CleanSet(Dataset[torch.Tensor]):
    """The generator is built in each worker, on first use, from the worker's own seed."""

    def __init__(self) -> None:
        self.rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.rng is None:
            self.rng = np.random.default_rng(torch.initial_seed())
        return torch.tensor([float(index), self.rng.normal()])


class DataModule(LightningDataModule):
    def __init__(self, dataset: Dataset[torch.Tensor]) -> None:
        super().__init__()
        self.dataset = dataset

    def train_dataloader(self) -> DataLoader[torch.Tensor]:
        return DataLoader(self.dataset, batch_size=4, num_workers=2)


class Model(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.worker_init_fn = "none"

    def on_train_start(self) -> None:
        """Note the worker_init_fn Lightning gave the loader (a partial when it adds one)."""
        init = getattr(self.trainer.train_dataloader, "worker_init_fn", None)
        self.worker_init_fn = getattr(init, "func", init).__name__ if init else "none"

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self.layer(batch[:, :1]), batch[:, 1:])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main(scenario: str) -> None:
    print(f"lightning job {scenario}: start", flush=True)
    warnings.simplefilter("ignore")
    if scenario == "seeded":
        seed_everything(42, workers=True, verbose=False)
    dataset = CleanSet() if scenario == "clean" else BuggySet()
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    model = Model()
    trainer.fit(model, datamodule=DataModule(dataset))
    print(
        f"lightning job {scenario}: fitted {trainer.current_epoch} epochs, "
        f"worker_init_fn {model.worker_init_fn}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
