"""
The seedwatch pytest plugin, registered through the ``pytest11`` entry point.

``--seedwatch-strict`` (or ``seedwatch_strict = true`` in the ini file) makes every
monitor created with ``strict=None`` strict for the session, so a test whose
DataLoader loop meets a duplicate stream fails with ``DuplicateStreamError``.
``@pytest.mark.seedwatch_strict`` does the same for one test, and the
``seedwatch`` fixture monitors datasets strictly and asserts they are clean.
``--seedwatch-watch`` (or ``seedwatch_watch = true``) monitors the dataset of
every DataLoader the tests build, unedited, and summarises the findings at the
end of the session.

pytest loads every installed plugin on every run, so this module imports
neither torch nor numpy; they load when a test first monitors something.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from seedwatch._config import set_strict_default, strict_by_default
from seedwatch.testing import assert_no_findings, strict_mode

if TYPE_CHECKING:
    from seedwatch._watch import Watching

_PREVIOUS = pytest.StashKey[bool | None]()
_WATCHING: pytest.StashKey[Watching] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--seedwatch-strict`` and the ``seedwatch_strict`` ini option."""
    group = parser.getgroup("seedwatch", "duplicate random streams in DataLoader workers")
    group.addoption(
        "--seedwatch-strict",
        action="store_true",
        default=False,
        help="fail tests whose DataLoaders draw duplicate random streams",
    )
    group.addoption(
        "--seedwatch-watch",
        action="store_true",
        default=False,
        help="monitor every DataLoader the tests build, and summarise what seedwatch found",
    )
    parser.addini(
        "seedwatch_strict",
        type="bool",
        default=False,
        help="like --seedwatch-strict, from the ini file",
    )
    parser.addini(
        "seedwatch_watch",
        type="bool",
        default=False,
        help="like --seedwatch-watch, from the ini file",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker and, when asked, switch the session to strict mode."""
    config.addinivalue_line(
        "markers", "seedwatch_strict: run this test with seedwatch monitors in strict mode"
    )
    if _strict_requested(config):
        config.stash[_PREVIOUS] = set_strict_default(True)
    if _watch_requested(config):
        from seedwatch._watch import watch  # noqa: PLC0415 - torch loads only when asked

        config.stash[_WATCHING] = watch()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop watching; restore the process-wide default."""
    if _WATCHING in config.stash:
        from seedwatch._watch import unwatch  # noqa: PLC0415

        unwatch()
        del config.stash[_WATCHING]
    if _PREVIOUS in config.stash:
        set_strict_default(config.stash[_PREVIOUS])


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """With ``--seedwatch-watch``, list every dataset the tests' loaders used, and its findings."""
    if _WATCHING not in config.stash:
        return
    from seedwatch._render import render_watched  # noqa: PLC0415

    datasets = config.stash[_WATCHING].datasets()
    terminalreporter.section("seedwatch")
    terminalreporter.write_line(render_watched([(d.label, d.findings) for d in datasets]))


def pytest_report_header(config: pytest.Config) -> str:
    """Show the mode: strict fails tests, warn only warns."""
    watching = ", watching every DataLoader" if _watch_requested(config) else ""
    if _strict_requested(config):
        return f"seedwatch: strict mode (duplicate random streams fail tests){watching}"
    if strict_by_default():
        return f"seedwatch: strict mode (SEEDWATCH_STRICT){watching}"
    return f"seedwatch: warn mode (use --seedwatch-strict to fail tests){watching}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Run tests marked ``seedwatch_strict`` in strict mode."""
    if item.get_closest_marker("seedwatch_strict") is None:
        yield
        return
    with strict_mode():
        yield


class SeedwatchFixture:
    """What the ``seedwatch`` fixture gives a test: strict monitoring and a clean check."""

    def monitor(self, dataset: Any, **options: Any) -> Any:
        """Monitor ``dataset`` (or a DataLoader), strict unless ``strict=False`` is given."""
        from seedwatch._api import monitor  # noqa: PLC0415 - torch loads only when used

        options.setdefault("strict", True)
        return monitor(dataset, **options)

    def assert_clean(self, monitored: Any) -> None:
        """Fail the test with a readable report if ``monitored`` has findings."""
        __tracebackhide__ = True
        message = None
        try:
            assert_no_findings(monitored)
        except AssertionError as error:
            message = str(error)
        if message is not None:  # failed outside the except block: the report prints once
            pytest.fail(message, pytrace=False)


@pytest.fixture(name="seedwatch")
def seedwatch_fixture() -> SeedwatchFixture:
    """Monitor datasets strictly in this test, and assert they are clean."""
    return SeedwatchFixture()


def _strict_requested(config: pytest.Config) -> bool:
    return bool(config.getoption("seedwatch_strict") or config.getini("seedwatch_strict"))


def _watch_requested(config: pytest.Config) -> bool:
    return bool(config.getoption("seedwatch_watch") or config.getini("seedwatch_watch"))
