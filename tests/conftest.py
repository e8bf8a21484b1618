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
