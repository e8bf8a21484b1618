"""The exception and the warning that seedwatch raises about duplicate streams."""

from __future__ import annotations


class DuplicateStreamError(RuntimeError):
    """
    Two workers, epochs or ranks drew the same random stream, in strict mode.

    Constructible from a single message string: PyTorch re-raises a worker's
    exception in the main process as ``type(exc)(message)``, so a strict worker's
    error reaches the user's ``for batch in loader`` loop with this type.
    """


class DuplicateStreamWarning(UserWarning):
    """Two workers, epochs or ranks drew the same random stream (warn mode)."""


class VerdictUnavailableError(RuntimeError):
    """
    A strict-mode worker got no verdict from the main process in time, so it fails closed.

    Raised in the worker, and re-raised by PyTorch in the user's loop like
    :class:`DuplicateStreamError`. It means the worker's streams were not judged
    (the main process was gone or stuck), not that they repeat; strict mode
    treats "unjudged" as "not clean".
    """


# Shown, and pickled, under the public name: tracebacks read `seedwatch.DuplicateStreamError`.
for _public in (DuplicateStreamError, DuplicateStreamWarning, VerdictUnavailableError):
    _public.__module__ = "seedwatch"
