"""
Reading what a random generator would draw next, without advancing it.

Every reader works on a private twin of the generator's state, so the user's
streams stay exactly where they were: a monitored dataset yields bit-identical
data to the raw one.
"""

from __future__ import annotations

import ctypes
import hashlib
import random
import struct
import threading

import numpy as np
import torch

#: Names of the process-global generators that PyTorch reseeds in every worker.
GLOBAL_SOURCES = ("numpy", "random", "torch")

#: The RNG classes seedwatch recognises on a dataset, for isinstance checks.
RNG_TYPES: tuple[type, ...] = (
    np.random.Generator,
    np.random.BitGenerator,
    np.random.RandomState,
    random.Random,
    torch.Generator,
)

_scratch = threading.local()


#: Whether each type seen so far is a readable generator type (torch's isinstance is slow).
_readable_types: dict[type, bool] = {}


def is_generator(obj: object) -> bool:
    """
    Return whether ``obj`` is a generator whose stream seedwatch can read.

    Decided by ``type(obj)``, never by ``obj.__class__``, so no user code runs.
    ``random.SystemRandom`` draws from the OS and has no stream to repeat; CUDA
    generators live on a device and are left to custom sources.
    """
    kind = type(obj)
    readable = _readable_types.get(kind)
    if readable is None:
        readable = issubclass(kind, RNG_TYPES) and not issubclass(kind, random.SystemRandom)
        if len(_readable_types) < 10_000:
            _readable_types[kind] = readable
    if readable and issubclass(kind, torch.Generator):
        return bool(obj.device.type == "cpu")  # type: ignore[attr-defined]
    return readable


def type_label(obj: object) -> str:
    """Return how a user would write the generator's type, e.g. ``np.random.Generator(PCG64)``."""
    if isinstance(obj, np.random.Generator):
        return f"np.random.Generator({type(obj.bit_generator).__name__})"
    if isinstance(obj, np.random.BitGenerator):
        return f"np.random.{type(obj).__name__}"
    if isinstance(obj, np.random.RandomState):
        return "np.random.RandomState"
    if isinstance(obj, torch.Generator):
        return "torch.Generator"
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def upcoming_draws(rng: object, draws: int) -> bytes:
    """Return the raw bytes of the next ``draws`` values of ``rng``, leaving ``rng`` untouched."""
    if isinstance(rng, np.random.Generator):
        rng = rng.bit_generator
    if isinstance(rng, np.random.RandomState):
        rng = rng._bit_generator  # noqa: SLF001 - the MT19937 inside; public on Generator only
    if isinstance(rng, np.random.MT19937):
        return _mt19937_draws(rng, draws)
    if isinstance(rng, np.random.BitGenerator):
        twin = type(rng)(0)
        twin.state = rng.state
        return bytes(twin.random_raw(draws).tobytes())
    if isinstance(rng, random.Random):
        return _python_draws(rng.getstate(), draws)
    if isinstance(rng, torch.Generator):
        return _torch_draws(rng.get_state(), draws)
    raise TypeError(f"not a random generator seedwatch can read: {type(rng).__name__}")


#: Where a Mersenne Twister's position stands right after seeding: nothing drawn yet.
_MT_SEEDED_POSITION = 624


def is_fresh(rng: object) -> bool:
    """
    Return whether ``rng`` is exactly as seeded: nothing was drawn from it yet.

    A numpy generator remembers its seed sequence and a ``torch.Generator`` its
    initial seed, so each is compared with a twin seeded alike. A Mersenne
    Twister (``random.Random``, ``RandomState``) has not drawn while its
    position is where seeding leaves it (a draw of exactly 624 words also
    leaves it there: read as fresh, a latent stream, never a false finding).
    """
    if isinstance(rng, np.random.Generator):
        rng = rng.bit_generator
    if isinstance(rng, np.random.RandomState):
        state = rng.get_state(legacy=False)
        return bool(state["state"]["pos"] == _MT_SEEDED_POSITION and not state["has_gauss"])
    if isinstance(rng, np.random.BitGenerator):
        seed = getattr(rng, "seed_seq", None)
        if not isinstance(seed, np.random.SeedSequence):
            return False
        return bool(_same_state(type(rng)(seed).state, rng.state))
    if isinstance(rng, random.Random):
        version, words, gauss = rng.getstate()
        return bool(words[-1] == _MT_SEEDED_POSITION and gauss is None and version)
    if isinstance(rng, torch.Generator):
        twin = torch.Generator().manual_seed(rng.initial_seed())
        return bool(torch.equal(twin.get_state(), rng.get_state()))
    return False


def _same_state(left: object, right: object) -> bool:
    """Compare bit generator states, which hold numpy arrays (MT19937's key)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same_state(left[k], right[k]) for k in left)
    if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
        return bool(np.array_equal(left, right))  # type: ignore[arg-type]
    return bool(left == right)


#: An MT19937's C state as numpy lays it out: ``uint32 key[624]; int pos``.
_MT_STATE_BYTES = 624 * 4 + 4


def state_signature(rng: object) -> object:
    """
    Return a cheap token of ``rng``'s state: while the token is equal, nothing was drawn.

    Telling whether a stream moved must not cost a fingerprint: a Mersenne
    Twister's state is read straight from its C struct (about 1 µs, against
    some 200 µs to fingerprint it), other generators' from their state getters.
    """
    if isinstance(rng, np.random.Generator):
        rng = rng.bit_generator
    if isinstance(rng, np.random.RandomState):
        rng = rng._bit_generator  # noqa: SLF001 - the MT19937 inside; public on Generator only
    if isinstance(rng, np.random.MT19937):
        return ctypes.string_at(rng.ctypes.state_address, _MT_STATE_BYTES)
    if isinstance(rng, np.random.BitGenerator):
        return repr(rng.state)  # small: a few integers, or arrays of four
    if isinstance(rng, random.Random):
        return rng.getstate()
    if isinstance(rng, torch.Generator):
        return bytes(rng.get_state().numpy().tobytes())
    raise TypeError(f"not a random generator seedwatch can read: {type(rng).__name__}")


def global_signature(source: str) -> object:
    """Return :func:`state_signature` of a process-global generator."""
    if source == "numpy":
        return state_signature(np.random.mtrand._rand)  # noqa: SLF001 - the legacy global itself
    if source == "random":
        return random.getstate()
    if source == "torch":
        return bytes(torch.get_rng_state().numpy().tobytes())
    raise ValueError(f"unknown global source {source!r}, expected one of {GLOBAL_SOURCES}")


def global_draws(source: str, draws: int) -> bytes:
    """Return the next ``draws`` values of a process-global generator, leaving it untouched."""
    if source == "numpy":
        return upcoming_draws(np.random.mtrand._rand, draws)  # noqa: SLF001 - the legacy global
    if source == "random":
        return _python_draws(random.getstate(), draws)
    if source == "torch":
        return _torch_draws(torch.get_rng_state(), draws)
    raise ValueError(f"unknown global source {source!r}, expected one of {GLOBAL_SOURCES}")


def fingerprint(values: bytes) -> str:
    """Return a 64-bit hex digest of drawn values: equal streams, equal fingerprints."""
    return hashlib.blake2b(values, digest_size=8).hexdigest()


def _mt19937_draws(source: np.random.MT19937, draws: int) -> bytes:
    """
    Draw from a twin given ``source``'s state by a copy of its C struct.

    Through ``state`` (a dict with a 624-word array) the copy costs some 160 µs;
    a ``memmove`` between the two structs, about 1 µs.
    """
    twin: np.random.MT19937 | None = getattr(_scratch, "mt19937", None)
    if twin is None:
        twin = _scratch.mt19937 = np.random.MT19937(0)
    ctypes.memmove(twin.ctypes.state_address, source.ctypes.state_address, _MT_STATE_BYTES)
    return bytes(twin.random_raw(draws).tobytes())


def _python_draws(state: tuple[object, ...], draws: int) -> bytes:
    twin: random.Random | None = getattr(_scratch, "python", None)
    if twin is None:
        twin = _scratch.python = random.Random(0)  # noqa: S311 - a scratch twin, not crypto
    twin.setstate(state)
    return twin.getrandbits(32 * draws).to_bytes(4 * draws, "little")


#: torch's CPU generator state (ATen's ``CPUGeneratorImplState``), as ``get_state()`` gives it:
#: the seed (u64), ``left`` (i32), ``seeded`` (i32), ``next`` (u64), then the 624 Mersenne
#: Twister words, each widened to a u64, then the normal-sample caches.
_TORCH_STATE_BYTES = 5056
_TORCH_LEFT = slice(8, 12)
_TORCH_NEXT = slice(16, 24)
_TORCH_WORDS = slice(24, 24 + 624 * 8)


def _torch_draws(state: torch.Tensor, draws: int) -> bytes:
    """
    Return the next ``draws`` raw 32-bit outputs of a torch CPU generator in ``state``.

    torch's engine is MT19937, so a numpy twin given its 624 words and position
    draws the same raw stream, bit for bit, without a torch operation: the first
    one in a freshly forked worker costs some 200 µs. A state of another layout
    (another torch) is drawn by a torch twin instead.
    """
    raw = state.numpy()
    if raw.nbytes != _TORCH_STATE_BYTES:  # pragma: no cover - no such torch yet
        twin = torch.Generator()
        twin.set_state(state)
        values = torch.empty(draws, dtype=torch.int64).random_(generator=twin)
        return bytes(values.numpy().tobytes())
    left = int(raw[_TORCH_LEFT].view(np.int32)[0])
    position = int(raw[_TORCH_NEXT].view(np.uint64)[0])
    # torch refills when `left` would drop to 0; numpy when its position reaches 624.
    numpy_state = raw[_TORCH_WORDS].view(np.uint64).astype(np.uint32).tobytes() + struct.pack(
        "<i", 624 if left == 1 else position
    )
    mt: np.random.MT19937 | None = getattr(_scratch, "mt19937", None)
    if mt is None:
        mt = _scratch.mt19937 = np.random.MT19937(0)
    ctypes.memmove(mt.ctypes.state_address, numpy_state, _MT_STATE_BYTES)
    return bytes(mt.random_raw(draws).tobytes())
