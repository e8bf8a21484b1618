from __future__ import annotations

from collections.abc import Iterator

import pytest

from seedwatch import _config

#: Loaded here rather than through its entry point (disabled in pyproject.toml), so that
#: coverage, which starts before conftest files are read, measures the plugin and the package.
pytest_plugins = ["seedwatch.pytest_plugin"]


@pytest.fixture(autouse=True)
def _isolate_strictness(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts in warn mode, whatever the environment says."""
    monkeypatch.delenv(_config.STRICT_ENV_VAR, raising=False)
    previous = _config.set_strict_default(None)
    yield
    _config.set_strict_default(previous)


def pytest_configure(config: pytest.Config) -> None:
    """
    Share tensors between processes through files, not file descriptors.

    The tests' workers return batches as tensors (seedwatch itself sends only plain
    data). The default fd strategy needs resizable anonymous shared memory, which
    containers often restrict; the file_system strategy works wherever /dev/shm does.
    """
    import torch.multiprocessing

    torch.multiprocessing.set_sharing_strategy("file_system")  # type: ignore[no-untyped-call]
