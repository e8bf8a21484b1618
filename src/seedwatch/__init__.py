"""
seedwatch: catch DataLoader workers, epochs and ranks that draw the same random numbers.

Wrap a dataset with :func:`monitor`, train as usual, and read duplicate streams
as structlog events and a :class:`DuplicateStreamWarning` each, as a
:class:`DuplicateStreamError` in strict mode, or with :func:`findings`.
"""

from __future__ import annotations

from seedwatch._errors import DuplicateStreamError, DuplicateStreamWarning
from seedwatch._finding import Finding, Member
from seedwatch._proxy import findings, monitor

__all__ = [
    "DuplicateStreamError",
    "DuplicateStreamWarning",
    "Finding",
    "Member",
    "findings",
    "monitor",
]
