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
import sys
import threading
from collections.abc import Mapping
from typing import Any

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
    return read(rng, draws)[1]


def read(rng: object, draws: int) -> tuple[object, bytes]:
    """
    Return ``rng``'s state token (see :func:`state_signature`) and its next ``draws`` values.

    Both come from one read of the state: at a worker's first fetch every read
    is a cold one, and reading the state is most of what a fingerprint costs.
    """
    rng = _bit_source(rng)
    if isinstance(rng, np.random.MT19937):
        state = _mt19937_state(rng)
        return state, _mt19937_draws(state, draws)
    pcg = _pcg_kind(rng)
    if pcg is not None:
        pcg_state = _pcg_state(rng)  # type: ignore[arg-type]  # a PCG64 or PCG64DXSM
        return pcg_state, _pcg_draws(pcg, pcg_state, draws)
    if isinstance(rng, np.random.BitGenerator):
        bit_state = rng.state
        return repr(bit_state), _bit_generator_draws(type(rng), bit_state, draws)
    if isinstance(rng, random.Random) and not isinstance(rng, random.SystemRandom):
        return _python_read(rng, draws)  # SystemRandom draws from the OS: no state to read
    if isinstance(rng, torch.Generator):
        return _torch_read(rng.get_state(), draws)
    raise TypeError(f"not a random generator seedwatch can read: {type(rng).__name__}")


def _bit_source(rng: object) -> object:
    """Return the bit generator inside a numpy ``Generator`` or ``RandomState``, else ``rng``."""
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator
    if isinstance(rng, np.random.RandomState):
        return rng._bit_generator  # noqa: SLF001 - the MT19937 inside; public on Generator only
    return rng


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
    rng = _bit_source(rng)
    if isinstance(rng, np.random.MT19937):
        return _mt19937_state(rng)
    if _pcg_kind(rng) is not None:
        return _pcg_state(rng)  # type: ignore[arg-type]  # a PCG64 or PCG64DXSM
    if isinstance(rng, np.random.BitGenerator):
        return repr(rng.state)  # small: a few integers, or arrays of four
    if isinstance(rng, random.Random) and not isinstance(rng, random.SystemRandom):
        return _python_token(rng)
    if isinstance(rng, torch.Generator):
        return _torch_state(rng.get_state())
    raise TypeError(f"not a random generator seedwatch can read: {type(rng).__name__}")


def global_signature(source: str) -> object:
    """Return :func:`state_signature` of a process-global generator."""
    if source == "numpy":
        return state_signature(np.random.mtrand._rand)  # noqa: SLF001 - the legacy global itself
    if source == "random":
        return _python_token(_PYTHON_GLOBAL)
    if source == "torch":
        return _torch_state(torch.get_rng_state())
    raise ValueError(f"unknown global source {source!r}, expected one of {GLOBAL_SOURCES}")


def global_draws(source: str, draws: int) -> bytes:
    """Return the next ``draws`` values of a process-global generator, leaving it untouched."""
    return read_global(source, draws)[1]


def read_global(source: str, draws: int) -> tuple[object, bytes]:
    """Return a process-global generator's state token and next ``draws`` values (see ``read``)."""
    if source == "numpy":
        return read(np.random.mtrand._rand, draws)  # noqa: SLF001 - the legacy global itself
    if source == "random":
        return _python_read(_PYTHON_GLOBAL, draws)
    if source == "torch":
        return _torch_read(torch.get_rng_state(), draws)
    raise ValueError(f"unknown global source {source!r}, expected one of {GLOBAL_SOURCES}")


def fingerprint(values: bytes) -> str:
    """Return a 64-bit hex digest of drawn values: equal streams, equal fingerprints."""
    return hashlib.blake2b(values, digest_size=8).hexdigest()


#: ``PyCapsule_GetPointer``, to reach a bit generator's C struct without its ``ctypes``
#: property, which builds function pointers and classes the first time (some 100 µs).
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = (ctypes.py_object, ctypes.c_char_p)


def _state_address(bit_generator: np.random.BitGenerator) -> int:
    """Return the address of a bit generator's C state: ``bitgen_t`` begins with it."""
    bitgen = _capsule_pointer(bit_generator.capsule, b"BitGenerator")
    address = ctypes.c_void_p.from_address(bitgen).value
    if not address:  # pragma: no cover - numpy always sets it
        raise ValueError("a bit generator without a state")
    return address


def _mt19937_state(source: np.random.MT19937) -> bytes:
    """
    Return a copy of an MT19937's C state: a ``memmove`` of the struct, about 1 µs.

    Through ``state`` (a dict with a 624-word array) the copy costs some 160 µs.
    """
    return ctypes.string_at(_state_address(source), _MT_STATE_BYTES)


def _mt19937_draws(state: bytes, draws: int) -> bytes:
    """Draw from a scratch twin given an MT19937 C state (see :func:`_mt19937_state`)."""
    twin = _twin(np.random.MT19937)
    ctypes.memmove(_state_address(twin), state, _MT_STATE_BYTES)
    return bytes(twin.random_raw(draws).tobytes())


#: numpy's PCG64 state (``pcg64_state``): a pointer to the 128-bit state and increment
#: (32 bytes), then ``int has_uint32; uint32_t uinteger`` (the buffered half of a draw).
_PCG_STATE_BYTES = 32
_PCG_BUFFER = slice(8, 16)


def _pcg_kind(rng: object) -> type[np.random.BitGenerator] | None:
    """Return PCG64 or PCG64DXSM if ``rng`` is one whose C state is readable, else ``None``."""
    for kind in _READABLE_PCGS:
        if isinstance(rng, kind):
            return kind
    return None


def _pcg_addresses(rng: np.random.BitGenerator) -> tuple[int, int]:
    """Return the addresses of a PCG64's ``pcg64_state`` and of the 128-bit state it points to."""
    outer = _state_address(rng)
    inner = ctypes.c_void_p.from_address(outer).value
    if not inner:  # pragma: no cover - numpy always sets it
        raise ValueError("a PCG64 without a state")
    return outer, inner


def _pcg_state(rng: np.random.BitGenerator) -> bytes:
    """
    Return a copy of a PCG64's C state: 40 bytes, where ``state`` builds a dict of big ints.

    The default generator of ``np.random.default_rng``, so the most common one found.
    """
    outer, inner = _pcg_addresses(rng)
    buffered = ctypes.string_at(outer + _PCG_BUFFER.start, _PCG_BUFFER.stop - _PCG_BUFFER.start)
    return ctypes.string_at(inner, _PCG_STATE_BYTES) + buffered


def _pcg_draws(kind: type[np.random.BitGenerator], state: bytes, draws: int) -> bytes:
    """Draw from a scratch twin of ``kind`` given a copy of a PCG64's C state (see above)."""
    twin = _twin(kind)
    outer, inner = _pcg_addresses(twin)
    ctypes.memmove(inner, state, _PCG_STATE_BYTES)
    ctypes.memmove(outer + _PCG_BUFFER.start, state[_PCG_STATE_BYTES:], 8)
    return bytes(twin.random_raw(draws).tobytes())


def _pcg_struct_is_readable(kind: type[np.random.BitGenerator]) -> bool:
    """Whether this numpy lays ``kind`` out as :func:`_pcg_state` reads it, draws included."""
    try:
        probe = kind(20261201)
        np.random.Generator(probe).integers(1 << 32, dtype=np.uint64, size=3)
        np.random.Generator(probe).random(dtype=np.float32)  # a 32-bit draw buffers a half
        state = probe.state
        raw = _pcg_state(probe)
        has_uint32, uinteger = struct.unpack_from("<iI", raw, _PCG_STATE_BYTES)
        expected = probe.random_raw(4).tobytes()
        return (
            int.from_bytes(raw[:16], sys.byteorder) == state["state"]["state"]
            and int.from_bytes(raw[16:32], sys.byteorder) == state["state"]["inc"]
            and (has_uint32, uinteger) == (state["has_uint32"], state["uinteger"])
            and _pcg_draws(kind, raw, 4) == expected
        )
    except Exception:  # noqa: BLE001 - another numpy's layout: read through ``state``
        return False


def _bit_generator_draws(
    kind: type[np.random.BitGenerator], state: Mapping[str, Any], draws: int
) -> bytes:
    """Draw from a scratch twin of ``kind`` (PCG64, Philox, ...) given its ``state`` dict."""
    twin = _twin(kind)
    twin.state = state
    return bytes(twin.random_raw(draws).tobytes())


def _twin(kind: type[np.random.BitGenerator]) -> np.random.BitGenerator:
    """Return this thread's scratch bit generator of ``kind``, made once (seeding one costs)."""
    twins: dict[type, np.random.BitGenerator] | None = getattr(_scratch, "twins", None)
    if twins is None:
        twins = _scratch.twins = {}
    twin = twins.get(kind)
    if twin is None:
        twin = twins[kind] = kind(_UnseededState())  # type: ignore[arg-type]  # numpy takes any ISeedSequence
    return twin


class _UnseededState(np.random.bit_generator.ISeedSequence):
    """
    Zeros for a scratch twin's seeding, whose state is overwritten before every draw.

    A ``SeedSequence`` would hash entropy first: some 70 µs the first time in a
    new worker, for a state nobody reads.
    """

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray[Any, Any]:
        return np.zeros(n_words, dtype=dtype)


#: The generator behind the ``random`` module's functions.
_PYTHON_GLOBAL: random.Random = random._inst  # noqa: SLF001 - what random.random draws from

#: CPython's ``Random`` object: the object header, then ``int index; uint32_t state[624]``.
_PYTHON_STATE_OFFSET = object.__basicsize__
_PYTHON_STATE_BYTES = 4 + 624 * 4


def _python_struct(rng: random.Random) -> bytes:
    """Return a copy of a ``random.Random``'s C state: no 625 int objects, as ``getstate`` makes."""
    return ctypes.string_at(id(rng) + _PYTHON_STATE_OFFSET, _PYTHON_STATE_BYTES)


def _python_struct_is_readable() -> bool:
    """Whether this interpreter lays ``Random`` out as :func:`_python_struct` reads it."""
    if random.Random.__basicsize__ < _PYTHON_STATE_OFFSET + _PYTHON_STATE_BYTES:
        return False  # pragma: no cover - another interpreter's layout
    probe = random.Random(20261201)  # noqa: S311 - a probe, not crypto
    probe.getrandbits(96)
    words = probe.getstate()[1]
    return struct.unpack_from("<i624I", _python_struct(probe)) == (words[-1], *words[:-1])


_PYTHON_STRUCT = _python_struct_is_readable()


def _python_token(rng: random.Random) -> object:
    """Return a ``random.Random``'s state token: its C state and its cached normal sample."""
    if not _PYTHON_STRUCT:  # pragma: no cover - another interpreter's layout
        return rng.getstate()
    return _python_struct(rng), getattr(rng, "gauss_next", None)


def _python_read(rng: random.Random, draws: int) -> tuple[object, bytes]:
    """
    Return a ``random.Random``'s state token and next ``draws`` 32-bit outputs.

    The same Mersenne Twister as numpy's: a numpy twin given its words and index
    draws the words ``getrandbits`` would, laid out as ``getrandbits(32 * draws)``
    writes them in little-endian order.
    """
    if not _PYTHON_STRUCT:  # pragma: no cover - another interpreter's layout
        state = rng.getstate()
        return state, _python_draws(state, draws)
    raw = _python_struct(rng)
    words = _mt19937_draws(raw[4:] + raw[:4], draws)
    outputs = np.frombuffer(words, dtype=np.uint64).astype(np.uint32)
    return (raw, getattr(rng, "gauss_next", None)), outputs.tobytes()


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
_TORCH_LEFT = 8
_TORCH_NEXT = 16
_TORCH_WORDS = 24


def _torch_state(state: torch.Tensor) -> bytes:
    """Return a torch generator's state tensor as bytes, read through its pointer, not numpy."""
    return ctypes.string_at(state.data_ptr(), state.numel())


def _torch_read(state_tensor: torch.Tensor, draws: int) -> tuple[bytes, bytes]:
    """Return a torch generator's state as bytes (its token) and its next ``draws`` outputs."""
    state = _torch_state(state_tensor)
    return state, _torch_draws(state, draws)


def _torch_draws(state: bytes, draws: int) -> bytes:
    """
    Return the next ``draws`` raw 32-bit outputs of a torch CPU generator in ``state``.

    torch's engine is MT19937, so a numpy twin given its 624 words and position
    draws the same raw stream, bit for bit, without a torch operation: the first
    one in a freshly forked worker costs some 200 µs. A state of another layout
    (another torch) is drawn by a torch twin instead.
    """
    if len(state) != _TORCH_STATE_BYTES:  # pragma: no cover - no such torch yet
        twin = torch.Generator()
        twin.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))
        values = torch.empty(draws, dtype=torch.int64).random_(generator=twin)
        return bytes(values.numpy().tobytes())
    (left,) = struct.unpack_from("<i", state, _TORCH_LEFT)
    (position,) = struct.unpack_from("<Q", state, _TORCH_NEXT)
    # torch refills when `left` would drop to 0; numpy when its position reaches 624.
    words = np.frombuffer(state, dtype=np.uint64, count=624, offset=_TORCH_WORDS)
    numpy_state = words.astype(np.uint32).tobytes() + struct.pack(
        "<i", 624 if left == 1 else position
    )
    return _mt19937_draws(numpy_state, draws)


_READABLE_PCGS: tuple[type[np.random.BitGenerator], ...] = tuple(
    kind for kind in (np.random.PCG64, np.random.PCG64DXSM) if _pcg_struct_is_readable(kind)
)
