"""
Telling the user about a new finding: a structlog event and, in warn mode, a warning.

Separate from :mod:`seedwatch._render`, which only makes text: announcing
touches process-wide logging and warnings, and commands that print their own
report mute it with :func:`quiet_announcements`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import structlog

from seedwatch._errors import DuplicateStreamWarning
from seedwatch._finding import Finding

_log = structlog.get_logger("seedwatch")


def announce(findings: Iterable[Finding], *, strict: bool) -> None:
    """
    Log each finding as a ``duplicate_rng_stream`` event; in warn mode, warn too.

    In strict mode the reporter raises :class:`DuplicateStreamError` instead of a warning.
    """
    for finding in findings:
        _log.warning("duplicate_rng_stream", **finding.as_dict())
        if not strict:
            # Reports arrive on a background thread, with no user frame to point at.
            warnings.warn_explicit(
                f"{finding.describe()}. Fix: {finding.hint}",
                DuplicateStreamWarning,
                filename="seedwatch",
                lineno=0,
                module="seedwatch",
            )


@contextmanager
def quiet_announcements() -> Iterator[None]:
    """
    Silence the per-finding log events and warnings while a command prints its own report.

    Changes process-wide structlog and warnings settings: for the command line, not libraries.
    """
    saved = structlog.get_config()
    structlog.configure(logger_factory=lambda *_args: structlog.ReturnLogger())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DuplicateStreamWarning)
            yield
    finally:
        structlog.configure(**saved)
