"""
seedwatch's own log lines: they never fail, and a flood of bad input makes one line, not a million.

Every log call on a worker's or the collector's path goes through here. A
closed stdout, a broken pipe or a handler that raises must not cost a verdict
or kill the collector thread; a peer that sends garbage as fast as it can must
not fill the user's logs or keep the main process busy formatting lines.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any


def _logger() -> Any:
    # Imported on the first line logged: a spawned worker that logs nothing never pays for it.
    import structlog  # noqa: PLC0415

    return structlog.get_logger("seedwatch")


#: At most one line per event name in this many seconds; the rest are counted.
QUIET_PERIOD_S = 10.0


def warning(event: str, **fields: Any) -> None:
    """Log a warning event; any failure to log is swallowed."""
    with contextlib.suppress(Exception):  # logging must never break monitoring
        _logger().warning(event, **fields)


def debug(event: str, **fields: Any) -> None:
    """Log a debug event; any failure to log is swallowed."""
    with contextlib.suppress(Exception):  # logging must never break monitoring
        _logger().debug(event, **fields)


class Throttle:
    """
    Warnings about input from other processes, at most one per event per :data:`QUIET_PERIOD_S`.

    The first occurrence is logged at once; later ones within the period are
    counted and reported with the next line as ``suppressed=N``. Thread-safe.
    """

    def __init__(self, period: float = QUIET_PERIOD_S) -> None:
        self._period = period
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, event: str, group: str = "", **fields: Any) -> None:
        """
        Log ``event`` unless one of its ``group`` was logged within the period; count it if not.

        ``group`` splits an event whose kinds each deserve a line (a bad counter,
        a bad member); by default every occurrence of the event is one group.
        """
        now = time.monotonic()
        key = f"{event}/{group}"
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            fields["suppressed"] = suppressed
        warning(event, **fields)

    def suppressed(self, event: str, group: str = "") -> int:
        """Return how many ``event`` lines of ``group`` are being held back right now."""
        with self._lock:
            return self._suppressed.get(f"{event}/{group}", 0)
