"""
Process-wide defaults that a monitor created with ``strict=None`` follows.

The default is read each time a worker reports, not when the monitor is made,
so a pytest option or an environment variable set after ``monitor()`` applies.
"""

from __future__ import annotations

import os

STRICT_ENV_VAR = "SEEDWATCH_STRICT"
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

_strict_override: bool | None = None


def strict_by_default() -> bool:
    """Return the strictness for monitors that did not choose one."""
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
