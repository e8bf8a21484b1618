"""
Pipelines built with real third-party libraries, bad and clean, as their users write them.

Importable (not in a test file) so spawn and forkserver workers can unpickle them.
"""

from __future__ import annotations

import functools
import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import albumentations as A  # noqa: N812 - as its documentation writes it
import datasets
import monai
import numpy as np
import torch
import webdataset as wds
from monai.transforms import Compose, RandGaussianNoise, RandGaussianNoised
from torch.utils.data import Dataset, get_worker_info

IMAGES = [{"img": np.full((1, 4, 4), i, dtype=np.float32)} for i in range(16)]


class MonaiArrays(Dataset[Any]):
    """A MONAI array transform used on its own: it draws from the class-level Randomizable.R."""

    def __init__(self) -> None:
        self.noise = RandGaussianNoise(prob=1.0)

    def __len__(self) -> int:
        return len(IMAGES)

    def __getitem__(self, index: int) -> Any:
        return self.noise(IMAGES[index]["img"])


def monai_dictionary_pipeline() -> Any:
    """monai.data.Dataset with a Compose: every transform gets its own RandomState, once."""
    return monai.data.Dataset(IMAGES, transform=Compose([RandGaussianNoised(keys="img", prob=1.0)]))


def add_noise(batch: dict[str, list[Any]], rng: np.random.Generator) -> dict[str, list[Any]]:
    """A Hugging Face transform drawing from the generator it is given."""
    batch["x"] = [x + float(rng.random()) for x in batch["x"]]
    return batch


def closure_noise(seed: int) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
    """The same transform as a closure, as notebooks write it (fork only: closures don't pickle)."""
    rng = np.random.default_rng(seed)

    def noisy(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return add_noise(batch, rng)

    return noisy


class NoisePerWorker:
    """The fix: a transform that builds its generator per worker, on first use."""

    def __init__(self) -> None:
        self.rng: np.random.Generator | None = None

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if self.rng is None:
            self.rng = np.random.default_rng(torch.initial_seed())
        return add_noise(batch, self.rng)


def hugging_face(transform: Callable[..., Any]) -> datasets.Dataset:
    """A Hugging Face dataset with an on-the-fly transform."""
    return datasets.Dataset.from_dict({"x": [float(i) for i in range(16)]}).with_transform(
        transform
    )


def hugging_face_partial() -> datasets.Dataset:
    """The transform as a functools.partial holding a constant-seed generator (it pickles)."""
    return hugging_face(functools.partial(add_noise, rng=np.random.default_rng(0)))


def write_shards(directory: Path, shards: int = 4, per_shard: int = 4) -> list[str]:
    """Write small webdataset tar shards of text samples; return their paths."""
    urls = []
    for shard in range(shards):
        path = directory / f"shard-{shard}.tar"
        with tarfile.open(path, "w") as tar:
            for item in range(per_shard):
                data = str(shard * per_shard + item).encode()
                info = tarfile.TarInfo(f"{shard * per_shard + item:06d}.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        urls.append(str(path))
    return urls


def webdataset_shuffled_shards(urls: list[str], *, detshuffle: bool = False) -> wds.WebDataset:
    """Shard shuffling as the docs show it, seeded once when the dataset is built.

    With ``detshuffle`` the seed also counts epochs, in each worker's copy.
    """
    return wds.WebDataset(urls, shardshuffle=100, detshuffle=detshuffle).decode()


def webdataset_sample_shuffle(urls: list[str]) -> wds.DataPipeline:
    """Shards split by worker, samples shuffled by a generator seeded per process."""
    return wds.DataPipeline(
        wds.SimpleShardList(urls), wds.split_by_worker, wds.tarfile_to_samples(), wds.shuffle(8)
    )


PICTURE = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)


def compose(seed: int | None = None) -> A.Compose:
    """A typical albumentations 2.x augmentation: nine transforms in one Compose."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomBrightnessContrast(p=1.0),
            A.GaussNoise(p=1.0),
            A.RandomRotate90(p=1.0),
            A.Transpose(p=0.5),
            A.Blur(p=0.5),
            A.ToGray(p=0.5),
            A.Affine(p=0.5),
        ],
        seed=seed,
    )


class Augmented(Dataset[Any]):
    """Pictures through an albumentations Compose built in __init__, as its docs show."""

    def __init__(self, seed: int | None = None) -> None:
        self.augment = compose(seed)

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> Any:
        return self.augment(image=PICTURE)["image"]


def reseed_compose(worker_id: int) -> None:
    """The hint applied: each worker reseeds the Compose from its own seed."""
    info = get_worker_info()
    assert info is not None
    info.dataset.augment.set_random_seed(info.seed % 2**32)  # type: ignore[attr-defined]


def reseed_monai(worker_id: int) -> None:
    """The hint applied to MonaiArrays: each worker gives the transform its own state."""
    info = get_worker_info()
    assert info is not None
    info.dataset.noise.set_random_state(seed=info.seed % 2**32)  # type: ignore[attr-defined]


class NoisyRows(Dataset[Any]):
    """Rows with noise from the torch global, which PyTorch reseeds per worker (and epoch)."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int) -> Any:
        return torch.tensor([float(index)]) + torch.rand(1)


class NoisyRowsPerSample(Dataset[Any]):
    """The resume hint applied: noise from (the worker's seed, the index), not a stream."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int) -> Any:
        rng = np.random.default_rng((torch.initial_seed(), index))
        return torch.tensor([float(index) + rng.random()])


def _rows(shards: list[int]) -> Any:
    for shard in shards:
        for item in range(8):
            yield {"x": float(shard * 100 + item)}


def shuffled_iterable() -> datasets.IterableDataset:
    """A Hugging Face IterableDataset of four shards with a buffer shuffle, as the docs show."""
    return datasets.IterableDataset.from_generator(
        _rows, gen_kwargs={"shards": [0, 1, 2, 3]}
    ).shuffle(seed=0, buffer_size=8)
