from __future__ import annotations

from seedwatch._finding import Member
from seedwatch._hints import hint_for


def members(*generation_seed: tuple[int, int]) -> list[Member]:
    return [Member(gen, 0, 100 + i, seed=seed) for i, (gen, seed) in enumerate(generation_seed)]


class TestHintFor:
    def test_instance_generator_is_built_per_worker(self) -> None:
        """A generator from __init__ is rebuilt per worker from the worker's seed."""
        hint = hint_for("transform.state", "np.random.RandomState", "workers", members((0, 1)))

        assert "info.dataset.transform.state = np.random.RandomState(info.seed % 2**32)" in hint

    def test_constant_reseed_of_a_global(self) -> None:
        """Workers sharing a global stream point at a constant reseed."""
        hint = hint_for("numpy", "global", "workers", members((0, 1), (0, 2)))

        assert "constant" in hint
        assert "np.random.seed(torch.initial_seed() % 2**32)" in hint

    def test_worker_id_seeding_repeats_epochs(self) -> None:
        """Epoch repeats with changing base seeds point at worker_id-only seeding."""
        hint = hint_for("numpy", "global", "epochs", members((0, 11), (1, 57)))

        assert "worker_id" in hint
        assert "2147483648" in hint

    def test_reseeding_every_epoch(self) -> None:
        """Epoch repeats with the same worker seeds point at manual_seed per epoch."""
        hint = hint_for("torch", "global", "epochs", members((0, 11), (1, 11)))

        assert "before each epoch" in hint

    def test_ranks(self) -> None:
        """Rank repeats point at adding the rank to the seed."""
        hint = hint_for("torch", "global", "ranks", members((0, 1)))

        assert "base_seed + rank" in hint
