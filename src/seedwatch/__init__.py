"""
seedwatch: catch DataLoader workers, epochs and ranks that draw the same random numbers.

Wrap a dataset or a DataLoader with :func:`monitor`, train as usual, and read
duplicate streams as structlog events and a :class:`DuplicateStreamWarning`
each, as a :class:`DuplicateStreamError` in strict mode, or with :func:`findings`.

Only the cheap names are imported eagerly: the pytest plugin imports this
package on every pytest run, and must not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from seedwatch._errors import DuplicateStreamError, DuplicateStreamWarning, VerdictUnavailableError
from seedwatch._finding import Finding, Findings, Member, Observed

if TYPE_CHECKING:
    from seedwatch._api import findings, monitor
    from seedwatch._ranks import Distributed
    from seedwatch._sources import Source, register_source, unregister_source
    from seedwatch._watch import unwatch, watch

_LAZY = {
    "Distributed": "seedwatch._ranks",
    "Source": "seedwatch._sources",
    "findings": "seedwatch._api",
    "monitor": "seedwatch._api",
    "register_source": "seedwatch._sources",
    "unregister_source": "seedwatch._sources",
    "unwatch": "seedwatch._watch",
    "watch": "seedwatch._watch",
}


__all__ = [
    "Distributed",
    "DuplicateStreamError",
    "DuplicateStreamWarning",
    "Finding",
    "Findings",
    "Member",
    "Observed",
    "Source",
    "VerdictUnavailableError",
    "__version__",
    "findings",
    "monitor",
    "register_source",
    "unregister_source",
    "unwatch",
    "watch",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # looked up on first use: finding the distribution takes time
        globals()[name] = _installed_version()
        return globals()[name]
    if name == "testing":  # `import seedwatch` then `seedwatch.testing.assert_no_findings(...)`
        return importlib.import_module("seedwatch.testing")
    if name not in _LAZY:
        raise AttributeError(f"module 'seedwatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _installed_version() -> str:
    """Return the installed distribution's version (``0+unknown`` when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("seedwatch")
    except PackageNotFoundError:
        return "0+unknown"
