# ruff: noqa: INP001, T201 - a script run by path (no package), which prints its results
"""
A Hugging Face job: ``transformers.Trainer`` (which prepares its loader with accelerate).

Usage: ``hf_trainer_job.py buggy|clean OUTPUT_DIR``: two epochs of a tiny torch model on CPU
with two loader workers. ``buggy`` holds ``np.random.default_rng(0)`` on its Dataset;
``clean`` draws from numpy's global generator, which PyTorch reseeds in every worker.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments


class BuggySet(Dataset[dict[str, torch.Tensor]]):
    """Every worker and every epoch gets a copy of the same generator."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        noise = self.rng.normal()
        return {"x": torch.tensor([float(index)]), "y": torch.tensor([float(index) + noise])}


class CleanSet(Dataset[dict[str, torch.Tensor]]):
    """Noise from numpy's global generator, seeded per worker by PyTorch."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        noise = np.random.normal()
        return {"x": torch.tensor([float(index)]), "y": torch.tensor([float(index) + noise])}


class Model(torch.nn.Module):
    """The least a Trainer needs: a forward that returns the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": torch.nn.functional.mse_loss(self.layer(x), y)}


def main(scenario: str, output_dir: str) -> None:
    print(f"hf trainer job {scenario}: start", flush=True)
    warnings.simplefilter("ignore")
    arguments = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=2,
        per_device_train_batch_size=4,
        dataloader_num_workers=2,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    dataset = CleanSet() if scenario == "clean" else BuggySet()
    trainer = Trainer(model=Model(), args=arguments, train_dataset=dataset)
    result = trainer.train()
    print(f"hf trainer job {scenario}: {result.global_step} steps")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
