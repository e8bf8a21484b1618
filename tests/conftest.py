from __future__ import annotations

from collections.abc import Iterator

import pytest

from seedwatch import _settings


@pytest.fixture(autouse=True)
def _isolate_strictness(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts in warn mode, whatever the environment says."""
    monkeypatch.delenv(_settings.STRICT_ENV_VAR, raising=False)
    previous = _settings.set_strict_default(None)
    yield
    _settings.set_strict_default(previous)


def pytest_configure(config: pytest.Config) -> None:
    """Spawn workers unpickle the datasets' torch.Generators through shared memory files.

    This sandbox cannot resize the fd-strategy's anonymous files; plain files work everywhere.
    """
    import torch.multiprocessing

    torch.multiprocessing.set_sharing_strategy("file_system")  # type: ignore[no-untyped-call]
