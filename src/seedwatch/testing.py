"""
Helpers for users' tests.

Reached as ``seedwatch.testing`` after ``import seedwatch`` (loaded on first use),
or imported directly. Importing it does not import torch or numpy.

Not thread-safe: :func:`strict_mode` and :func:`isolated_sources` change
process-wide state, so use them in set-up code or one test at a time
(pytest's default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from seedwatch._config import set_strict_default


def assert_no_findings(monitored: Any) -> None:
    """
    Fail with a readable report if a monitored dataset or loader has any finding.

    Args:
        monitored: What :func:`seedwatch.monitor` returned, after iterating it.

    Raises:
        AssertionError: With every finding, who drew it, and its fix.

    """
    from seedwatch._api import findings  # noqa: PLC0415 - keeps importing this module torch-free
    from seedwatch._finding import counted  # noqa: PLC0415
    from seedwatch._render import render_findings  # noqa: PLC0415

    found = findings(monitored)
    if found:
        raise AssertionError(
            f"seedwatch found {counted(len(found), 'problem')} of duplicate random streams "
            f"({found.observed.describe()}):\n{render_findings(found)}"
        )


@contextmanager
def strict_mode(enabled: bool = True) -> Iterator[None]:
    """Make monitors created with ``strict=None`` strict (or not) inside the block."""
    if not isinstance(enabled, bool):
        raise TypeError(f"strict_mode(enabled) takes True or False, got {enabled!r}")
    previous = set_strict_default(enabled)
    try:
        yield
    finally:
        set_strict_default(previous)


@contextmanager
def isolated_sources() -> Iterator[None]:
    """
    Undo, at the end of the block, every :func:`seedwatch.register_source` made inside it.

    Registrations from before the block are restored as they were, including
    ones unregistered inside it. Imports torch (the sources module reads generators).
    """
    from seedwatch._sources import (  # noqa: PLC0415 - keeps importing this module torch-free
        registered_sources,
        set_registered_sources,
    )

    saved = registered_sources()
    try:
        yield
    finally:
        set_registered_sources(saved)
