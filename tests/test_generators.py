from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch

from pipelines import draw, make_generator
from seedwatch import _generators
from seedwatch._generators import (
    GLOBAL_SOURCES,
    fingerprint,
    global_draws,
    is_generator,
    state_signature,
    type_label,
    upcoming_draws,
)

KINDS = ["numpy_generator", "bit_generator", "random_state", "python_random", "torch_generator"]


class TestUpcomingDraws:
    @pytest.mark.parametrize("kind", KINDS)
    def test_reading_does_not_advance_the_generator(self, kind: str) -> None:
        """Reading a generator's upcoming values leaves its next draw unchanged."""
        watched, untouched = make_generator(kind), make_generator(kind)

        upcoming_draws(watched, 64)

        assert [draw(untouched) for _ in range(5)] == [draw(watched) for _ in range(5)]

    @pytest.mark.parametrize("kind", KINDS)
    def test_equal_states_give_equal_bytes(self, kind: str) -> None:
        """Two generators in the same state read the same upcoming values."""
        assert upcoming_draws(make_generator(kind), 16) == upcoming_draws(make_generator(kind), 16)

    @pytest.mark.parametrize("kind", KINDS)
    def test_one_draw_changes_the_bytes(self, kind: str) -> None:
        """A generator advanced by one draw reads differently."""
        advanced = make_generator(kind)
        draw(advanced)

        assert upcoming_draws(make_generator(kind), 16) != upcoming_draws(advanced, 16)

    def test_reads_the_values_numpy_would_draw(self) -> None:
        """The bytes are the generator's own next raw outputs."""
        rng = np.random.default_rng(7)

        values = upcoming_draws(rng, 4)

        assert rng.bit_generator.random_raw(4).tobytes() == values

    @pytest.mark.parametrize("drawn", [0, 1, 623, 624, 625, 1247, 1248, 5000])
    def test_reads_the_raw_stream_torch_would_draw(self, drawn: int) -> None:
        """A torch generator is read without torch: its next 32-bit words, bit for bit."""
        rng = torch.Generator().manual_seed(11)
        torch.empty(drawn, dtype=torch.int64).random_(0, 2**31, generator=rng)
        torch.randn(drawn % 3, generator=rng)  # the normal-sample cache is not the stream

        upcoming = np.frombuffer(upcoming_draws(rng, 40), dtype=np.uint64)
        # A draw in [0, 2**32) takes two words and keeps the second.
        drawn_by_torch = torch.empty(20, dtype=torch.int64).random_(0, 2**32, generator=rng)

        assert drawn_by_torch.tolist() == upcoming[1::2].tolist()

    @pytest.mark.parametrize("drawn", [0, 1, 623, 624, 625, 1247, 1248])
    def test_reads_the_words_python_would_draw(self, drawn: int) -> None:
        """A random.Random is read from its C state: getrandbits' words, in its byte order."""
        rng = random.Random(11)
        rng.getrandbits(32 * drawn)

        upcoming = upcoming_draws(rng, 40)

        assert rng.getrandbits(32 * 40).to_bytes(4 * 40, "little") == upcoming

    def test_a_normal_sample_from_the_cache_moves_python_state(self) -> None:
        """random's second gauss() draws no word, only empties the cache: still a move."""
        rng = random.Random(5)
        rng.gauss()
        before = state_signature(rng)

        rng.gauss()

        assert before != state_signature(rng)

    @pytest.mark.parametrize(
        "kind",
        [
            np.random.PCG64,
            np.random.PCG64DXSM,
            np.random.Philox,
            np.random.SFC64,
            np.random.MT19937,
        ],
    )
    def test_reads_every_bit_generators_raw_values(self, kind: type[Any]) -> None:
        """PCG64s are read from their C state, the others through ``state``: the same values."""
        rng = kind(3)
        rng.random_raw(5)

        upcoming = upcoming_draws(rng, 16)

        assert rng.random_raw(16).tobytes() == upcoming

    @pytest.mark.parametrize("kind", [np.random.PCG64, np.random.SFC64])
    def test_a_buffered_half_draw_moves_the_token(self, kind: type[Any]) -> None:
        """A 32-bit draw may use the half a 64-bit word left over: no word drawn, still a move."""
        rng = np.random.Generator(kind(4))
        rng.random(dtype=np.float32)
        before = state_signature(rng)

        rng.random(dtype=np.float32)  # the buffered half

        assert before != state_signature(rng)

    def test_pcg64s_are_read_from_their_c_state_on_this_numpy(self) -> None:
        """The fast path for default_rng's generator is taken, not silently lost to a layout."""
        assert (np.random.PCG64, np.random.PCG64DXSM) == _generators._READABLE_PCGS  # noqa: SLF001

    @pytest.mark.parametrize("obj", [object(), random.SystemRandom()])
    def test_rejects_other_objects(self, obj: object) -> None:
        """Anything that is not a supported generator is a TypeError, SystemRandom included."""
        with pytest.raises(TypeError, match="not a random generator"):
            upcoming_draws(obj, 4)


class TestGlobalDraws:
    def test_reading_leaves_the_globals_alone(self) -> None:
        """Reading numpy, random and torch's globals does not advance them."""
        np.random.seed(1)
        random.seed(1)
        torch.manual_seed(1)
        expected = (np.random.rand(), random.random(), torch.rand(1).item())
        np.random.seed(1)
        random.seed(1)
        torch.manual_seed(1)

        for name in GLOBAL_SOURCES:
            global_draws(name, 32)

        assert expected == (np.random.rand(), random.random(), torch.rand(1).item())

    def test_follows_reseeding(self) -> None:
        """Reseeding a global with the same seed gives the same fingerprint."""
        torch.manual_seed(3)
        first = fingerprint(global_draws("torch", 8))
        torch.manual_seed(3)

        assert first == fingerprint(global_draws("torch", 8))

    def test_unknown_name(self) -> None:
        """An unknown global source is a ValueError naming the known ones."""
        with pytest.raises(ValueError, match="numpy"):
            global_draws("jax", 4)


class TestIsGenerator:
    @pytest.mark.parametrize("kind", KINDS)
    def test_recognises_every_supported_kind(self, kind: str) -> None:
        """Each supported generator type is recognised."""
        assert is_generator(make_generator(kind))

    @pytest.mark.parametrize(
        "obj", [random.SystemRandom(), np.random.SeedSequence(1), 3, "rng", torch.zeros(2)]
    )
    def test_ignores_streamless_objects(self, obj: object) -> None:
        """OS randomness, seed sequences and plain values are not streams."""
        assert not is_generator(obj)

    def test_labels_read_like_code(self) -> None:
        """Type labels are what a user would write."""
        assert [
            "np.random.Generator(PCG64)",
            "np.random.PCG64",
            "np.random.RandomState",
            "random.Random",
            "torch.Generator",
        ] == [type_label(make_generator(kind)) for kind in KINDS]
