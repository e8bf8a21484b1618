"""
Telling the user about a new finding, once: a Python warning or a structlog event.

Separate from :mod:`seedwatch._render`, which only makes text: announcing
touches process-wide logging and warnings, and commands that print their own
report mute it with :func:`quiet_announcements`.

One channel per finding: by default a :class:`DuplicateStreamWarning`, which
pytest collects, ``-W error`` raises and ``logging.captureWarnings`` logs,
pointing at the user's code that consumed the batch (the training loop), not
at seedwatch. ``SEEDWATCH_ANNOUNCE=log`` makes it a structlog
``duplicate_rng_stream`` event instead (for applications that read structured
logs), ``both`` does both. Whether structlog is configured is no guide: test
helpers and libraries configure it too.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import types
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from seedwatch._errors import DuplicateStreamWarning
from seedwatch._finding import Finding

_log = structlog.get_logger("seedwatch")

ANNOUNCE_ENV_VAR = "SEEDWATCH_ANNOUNCE"
_CHANNELS = {"warn": ("warn",), "log": ("log",), "both": ("warn", "log")}

#: Code that is not the user's: the standard library, installed packages, seedwatch.
_NOT_USERS = tuple(
    str(Path(path).resolve())
    for path in {sysconfig.get_path("stdlib"), sysconfig.get_path("purelib")}
    | {sysconfig.get_path("platlib"), str(Path(__file__).parent)}
)


def channels() -> tuple[str, ...]:
    """Return where findings go: ``SEEDWATCH_ANNOUNCE`` (warn, log, both); a warning by default."""
    return _CHANNELS.get(os.environ.get(ANNOUNCE_ENV_VAR, "").strip().lower(), ("warn",))


def announce(findings: Iterable[Finding], *, strict: bool) -> None:
    """
    Announce each new finding on one channel (see the module docstring).

    In strict mode the reporter raises :class:`DuplicateStreamError` instead of a
    warning. Announcing never fails: a closed stdout or a broken log handler
    must not cost the verdict.
    """
    for finding in findings:
        _tell(finding, strict=strict)


def _tell(finding: Finding, *, strict: bool) -> None:
    try:
        chosen = channels()
        if "log" in chosen:
            _log.warning("duplicate_rng_stream", **finding.as_dict())
        if "warn" in chosen and not strict:
            _warn(f"{finding.describe()}. Fix: {finding.hint}")
    except Exception:  # noqa: BLE001, S110 - telling must never break judging
        pass


def note_latent(findings: Iterable[Finding]) -> None:
    """Log latent duplicates at debug level, for those who read logs (never a warning)."""
    if "log" not in channels():
        return
    try:
        for finding in findings:
            _log.debug("latent_duplicate_stream", **finding.as_dict())
    except Exception:  # noqa: BLE001, S110 - telling must never break judging
        pass


def _warn(message: str) -> None:
    frame = _users_frame()
    if frame is None:
        warnings.warn_explicit(message, DuplicateStreamWarning, "seedwatch", 0, module="seedwatch")
        return
    namespace = frame.f_globals
    warnings.warn_explicit(
        message,
        DuplicateStreamWarning,
        frame.f_code.co_filename,
        frame.f_lineno,
        module=str(namespace.get("__name__", "__main__")),
        registry=namespace.setdefault("__warningregistry__", {}),
        module_globals=namespace,
    )


def _users_frame() -> types.FrameType | None:
    """
    Return the innermost frame of the user's own code in the thread that iterates.

    A worker's report is judged on seedwatch's collector thread while the loop
    waits for the batch inside the DataLoader: the thread whose stack passes
    through the DataLoader leads back to that loop. Failing that (the report is
    judged in the loop's own thread, or the loop is over), the current thread
    or the main thread; never a frame of the standard library or a package.
    """
    here = threading.get_ident()
    stacks = sys._current_frames()  # noqa: SLF001 - the one way to see other threads' stacks
    candidates = [frame for ident, frame in stacks.items() if ident != here]
    iterating = [frame for frame in candidates if _passes_through(frame, _DATALOADER)]
    ordered = [*iterating, sys._getframe(1), stacks.get(threading.main_thread().ident or 0)]  # noqa: SLF001
    for frame in ordered:
        users = _innermost_users(frame)
        if users is not None:
            return users
    return None


def _passes_through(frame: types.FrameType | None, filename: str) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.endswith(filename):
            return True
        frame = frame.f_back
    return False


def _innermost_users(frame: types.FrameType | None) -> types.FrameType | None:
    while frame is not None:
        if not frame.f_code.co_filename.startswith((*_NOT_USERS, "<")):
            return frame
        frame = frame.f_back
    return None


#: The DataLoader's module: a thread inside it is the one iterating.
_DATALOADER = str(Path("torch", "utils", "data", "dataloader.py"))


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
