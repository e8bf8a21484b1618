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
