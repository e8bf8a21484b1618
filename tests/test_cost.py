"""What a worker pays: nothing the main process can do once, nothing a worker does not use."""

from __future__ import annotations

import sys
from typing import Any

from torch.utils.data import DataLoader, Dataset

import seedwatch

#: Modules of the judge and of logging: the main process's business, or a failure's.
MAIN_PROCESS_ONLY = ("seedwatch._collector", "seedwatch._ledger", "seedwatch._ranks", "structlog")


class LoadedModules(Dataset[Any]):
    """Serves which of MAIN_PROCESS_ONLY its process has imported; the 2nd item after a report."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> Any:
        return [name for name in MAIN_PROCESS_ONLY if name in sys.modules]


def test_a_spawned_worker_never_imports_the_judge() -> None:
    """A spawned worker imports what it needs to report, not the judge nor structlog (~30 ms)."""
    loader = DataLoader(
        seedwatch.monitor(LoadedModules()),
        num_workers=1,
        batch_size=None,
        multiprocessing_context="spawn",
    )

    _, after_reporting = list(loader)

    assert [] == after_reporting
