"""Hints: the fix a finding names follows its evidence (source, kinds, seeds, owner)."""

from __future__ import annotations

from seedwatch._finding import Kind, Member
from seedwatch._hints import Evidence, hint_for


def members(*generation_seed: tuple[int, int]) -> list[Member]:
    return [Member(gen, 0, 100 + i, seed=seed) for i, (gen, seed) in enumerate(generation_seed)]


def hint(source: str, origin: str, *kinds: Kind, of: list[Member], **more: object) -> str:
    return hint_for(Evidence(source, origin, kinds, of, **more))  # type: ignore[arg-type]


class TestHintFor:
    def test_instance_generator_is_built_per_worker(self) -> None:
        """A generator from __init__ is rebuilt per worker from the worker's seed."""
        text = hint("transform.state", "np.random.RandomState", "workers", of=members((0, 1)))

        assert "info.dataset.transform.state = np.random.RandomState(info.seed % 2**32)" in text

    def test_constant_reseed_of_a_global(self) -> None:
        """Workers sharing a global stream (and so every epoch) point at a constant reseed."""
        text = hint("numpy", "global", "workers", "epochs", of=members((0, 1), (1, 2)))

        assert "constant" in text
        assert "worker_id" not in text
        assert "np.random.seed(torch.initial_seed() % 2**32)" in text

    def test_worker_id_seeding_repeats_epochs(self) -> None:
        """Epoch repeats alone, with changing base seeds, point at worker_id-only seeding."""
        text = hint("numpy", "global", "epochs", of=members((0, 11), (1, 57)))

        assert "worker_id" in text
        assert "2147483648" in text

    def test_reseeding_every_epoch(self) -> None:
        """Epoch repeats with the same worker seeds point at manual_seed per epoch."""
        text = hint("torch", "global", "epochs", of=members((0, 11), (1, 11)))

        assert "before each epoch" in text
        assert "worker_id" not in text

    def test_reseeding_every_epoch_with_numpy_names_the_worker_id_case_too(self) -> None:
        """numpy among the replayed globals: a worker_id seed may repeat it as well."""
        text = hint(
            "numpy", "global", "epochs", of=members((0, 11), (1, 11)), sources=("numpy", "torch")
        )

        assert "before each epoch" in text
        assert "seeds it from worker_id" in text

    def test_ranks(self) -> None:
        """Rank repeats point at adding the rank to the seed."""
        text = hint("torch", "global", "ranks", of=members((0, 1)))

        assert "base_seed + rank" in text


class TestLibraries:
    def test_albumentations_reseeds_the_compose(self) -> None:
        """A generator inside a Compose: set_random_seed on the owner, per worker."""
        text = hint(
            "t.transforms[0].py_random",
            "random.Random",
            "workers",
            of=members((0, 1)),
            holder="albumentations.augmentations.geometric.flip.HorizontalFlip",
            owner="t",
        )

        assert "info.dataset.t.set_random_seed(info.seed % 2**32)" in text

    def test_monai_names_its_loader_and_set_random_state(self) -> None:
        """A MONAI transform's RandomState: monai.data.DataLoader, or set_random_state."""
        text = hint(
            "Randomizable.R",
            "np.random.RandomState",
            "workers",
            of=members((0, 1)),
            place="class",
            holder="monai.transforms.intensity.array.RandGaussianNoise",
            owner="noise",
        )

        assert "monai.data.DataLoader" in text
        assert "info.dataset.noise.set_random_state(seed=info.seed % 2**32)" in text

    def test_hugging_face_iterables_need_set_epoch(self) -> None:
        """A datasets shuffle generator repeating across epochs: set_epoch."""
        text = hint(
            "BufferShuffledExamplesIterable.__iter__().rng",
            "np.random.Generator(PCG64)",
            "epochs",
            of=members((0, 1), (1, 2)),
            place="frame",
            holder="datasets.iterable_dataset.BufferShuffledExamplesIterable.__iter__",
        )

        assert "set_epoch(epoch)" in text

    def test_webdataset_shard_shuffle_needs_an_epoch_in_its_seed(self) -> None:
        """webdataset seeds its shard shuffle once; detshuffle in persistent workers adds epochs."""
        text = hint(
            "_shuffle().rng",
            "random.Random",
            "epochs",
            of=members((0, 1), (1, 2)),
            place="frame",
            holder="webdataset.filters._shuffle",
        )

        assert "detshuffle=True" in text
        assert "persistent_workers=True" in text

    def test_a_resume_blames_the_restored_seed_not_a_reseed(self) -> None:
        """A replay after load_state_dict names torchdata's Stateful, not manual_seed."""
        text = hint("numpy", "global", "resume", of=members((0, 1), (1, 1)))

        assert "Stateful" in text
        assert "before each epoch" not in text
