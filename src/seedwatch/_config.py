"""
What a monitor was asked to do: its options, their limits, and the process-wide strict default.

Torch-free: the pytest plugin reads the strict default on every pytest run.
"""

from __future__ import annotations

import operator
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from seedwatch._errors import DuplicateStreamWarning

STRICT_ENV_VAR = "SEEDWATCH_STRICT"
HISTORY_ENV_VAR = "SEEDWATCH_HISTORY"
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

MIN_DRAWS = 2
MAX_DRAWS = 4096
DEFAULT_DRAWS = 16

#: The command line's defaults, which --help states: kept here, where importing costs no torch.
CHECK_WORKERS = 2
CHECK_EPOCHS = 2
CHECK_BATCH_SIZE = 8
DEMO_WORKERS = 2
DEMO_EPOCHS = 3

_strict_override: bool | None = None


def strict_by_default() -> bool:
    """
    Return the strictness for monitors that did not choose one.

    Read each time a worker reports, not when the monitor is made, so a pytest
    option or an environment variable set after ``monitor()`` applies.
    """
    if _strict_override is not None:
        return _strict_override
    return os.environ.get(STRICT_ENV_VAR, "").strip().lower() in _TRUE_WORDS


def set_strict_default(value: bool | None) -> bool | None:
    """
    Override the default (``None`` restores the environment's), return the old override.

    Used by the pytest plugin; not thread-safe, meant for session set-up.
    """
    global _strict_override
    previous, _strict_override = _strict_override, value
    return previous


@dataclass(frozen=True)
class MonitorConfig:
    """What a monitor was asked to do; plain data that travels to workers."""

    monitor_id: str
    strict: bool | None
    draws: int
    expect_shared: frozenset[str]
    #: Where earlier runs' streams are kept (see :mod:`seedwatch._history`), if anywhere.
    history: str | None = None

    def strict_now(self) -> bool:
        """
        Resolve ``strict=None`` against the process-wide default, now.

        A warnings filter that turns :class:`DuplicateStreamWarning` into an error
        (``-W error::seedwatch.DuplicateStreamWarning`` in pytest, ``filterwarnings``)
        asks for strictness too: a warning raised on seedwatch's thread could never
        reach the loop, the strict verdict does.
        """
        strict = strict_by_default() if self.strict is None else self.strict
        return strict or warnings_are_errors()


def warnings_are_errors() -> bool:
    """Whether the first warnings filter that matches a DuplicateStreamWarning says "error"."""
    for action, _message, category, _module, _lineno in warnings.filters:
        if issubclass(DuplicateStreamWarning, category):
            return action == "error"
    return False


def new_config(
    strict: object, draws: object, expect_shared: Iterable[object], history: object = None
) -> MonitorConfig:
    """
    Validate ``monitor()``'s options and return a config with a fresh monitor id.

    ``history=None`` reads ``SEEDWATCH_HISTORY``; an empty value means none.

    Raises:
        TypeError: An option has the wrong type (the message names it).
        ValueError: ``draws`` is out of range, or a name in ``expect_shared`` is empty.

    """
    strict = validated_strict(strict)
    history = validated_history(history)
    if history is None:
        history = os.environ.get(HISTORY_ENV_VAR) or None
    return MonitorConfig(
        monitor_id=os.urandom(8).hex(),
        strict=strict,
        draws=validated_draws(draws),
        expect_shared=validated_names(expect_shared),
        history=history,
    )


def validated_strict(strict: object) -> bool | None:
    """Return ``strict`` if it is True, False or None: ``"yes"`` or 1 would read as a choice."""
    if strict is not None and not isinstance(strict, bool):
        raise TypeError(f"strict must be True, False or None, got {strict!r}")
    return strict


def validated_history(history: object) -> str | None:
    """Return ``history`` as a path string, or None; the environment is not read here."""
    if history is None:
        return None
    if not isinstance(history, (str, os.PathLike)):
        raise TypeError(f"history must be a file path or None, got {history!r}")
    return os.fspath(history)


def validated_draws(draws: object) -> int:
    """Return ``draws`` as an int in range: any integer type but bool (True is not a count)."""
    count = integer_draws(draws)
    if not MIN_DRAWS <= count <= MAX_DRAWS:
        raise ValueError(f"draws must be between {MIN_DRAWS} and {MAX_DRAWS}, got {count}")
    return count


def integer_draws(draws: object) -> int:
    """
    Return ``draws`` as a plain int, checking its type only.

    Numpy and torch integers pass (through ``__index__``); bools, numpy's included,
    do not: ``draws=True`` is a slip, not a count of one.
    """
    if _is_bool(draws):
        raise TypeError(f"draws must be an int from {MIN_DRAWS} to {MAX_DRAWS}, got {draws!r}")
    try:
        return operator.index(draws)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"draws must be an int from {MIN_DRAWS} to {MAX_DRAWS}, got {type(draws).__qualname__}"
        ) from None


def _is_bool(value: object) -> bool:
    """Whether ``value`` is a Python or numpy bool, without importing numpy here."""
    numpy = sys.modules.get("numpy")  # a numpy bool can only exist once numpy is loaded
    return isinstance(value, bool) or (numpy is not None and isinstance(value, numpy.bool_))


def validated_names(expect_shared: Iterable[object]) -> frozenset[str]:
    """
    Return the source names in ``expect_shared``.

    One string (or bytes) is refused rather than read as its characters, and
    ``None`` rather than read as no names: each is a slip whose silent reading
    would report, or hide, the wrong sources.
    """
    if isinstance(expect_shared, str):
        raise TypeError(
            f"expect_shared must be a collection of source names, not one string; "
            f"did you mean expect_shared=[{expect_shared!r}]?"
        )
    if isinstance(expect_shared, (bytes, bytearray)) or not isinstance(expect_shared, Iterable):
        raise TypeError(
            f"expect_shared must be a collection of source names (str), got {expect_shared!r}"
        )
    names: list[str] = []
    for name in expect_shared:
        if not isinstance(name, str):
            raise TypeError(f"expect_shared names must be strings, got {name!r}")
        if not name:
            raise ValueError("expect_shared names must be non-empty, got ''")
        names.append(name)
    return frozenset(names)
