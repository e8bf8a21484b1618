"""
The monitored DataLoader: exact epoch boundaries, and epoch checks without workers.

The proxy wraps the user's loader, so attributes, ``len`` and ``isinstance`` are
the loader's, and iterates through a *shadow* loader: a copy of the loader's
state (same sampler, batch sampler, generator and collate function objects)
whose ``dataset`` is the monitored dataset. PyTorch forbids reassigning
``loader.dataset``, and changing the user's loader in place would surprise them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import wrapt
from torch.utils.data import DataLoader

from seedwatch._proxy import MonitoredDataset, _MonitoredMarker

#: Attributes the shadow keeps its own: every other attribute set on the proxy is mirrored.
_SHADOW_EXCLUDED = frozenset({"dataset", "_iterator"})


class MonitoredLoader(wrapt.BaseObjectProxy, _MonitoredMarker):  # type: ignore[type-arg]
    """
    A DataLoader that iterates exactly like the one it wraps, over a monitored dataset.

    Every ``iter()`` is an epoch. With ``num_workers=0`` the main process's
    streams are fingerprinted at each epoch start, so a ``torch.manual_seed(0)``
    before every epoch is reported even without workers; with workers, each
    worker reports at its first fetch as usual.
    """

    _self_shadow: DataLoader[Any]
    _self_epochs: int

    def __init__(self, loader: DataLoader[Any], dataset: MonitoredDataset) -> None:
        super().__init__(loader)
        shadow = object.__new__(type(loader))
        shadow.__dict__.update(loader.__dict__)
        shadow.__dict__["dataset"] = dataset
        shadow.__dict__["_iterator"] = None
        self._self_shadow = shadow
        self._self_epochs = 0

    @property
    def dataset(self) -> MonitoredDataset:
        """The monitored dataset the loader iterates over."""
        return self._self_shadow.dataset  # type: ignore[return-value]

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_self_") or name == "__wrapped__":
            super().__setattr__(name, value)
            return
        setattr(self.__wrapped__, name, value)
        if name not in _SHADOW_EXCLUDED:
            setattr(self._self_shadow, name, value)

    def __iter__(self) -> Iterator[Any]:
        epoch, self._self_epochs = self._self_epochs, self._self_epochs + 1
        if self._self_shadow.num_workers == 0:
            dataset = self.dataset
            dataset._self_settle()
            dataset._self_report(generation=f"main:{os.getpid()}:loader{id(self)}:epoch{epoch}")
        return iter(self._self_shadow)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(
            "a monitored DataLoader cannot be pickled; pickle the loader, then monitor the copy"
        )

    def __copy__(self) -> MonitoredLoader:
        raise TypeError("a monitored DataLoader cannot be copied; copy the loader, then monitor it")

    def __deepcopy__(self, memo: dict[int, Any]) -> MonitoredLoader:
        return self.__copy__()
