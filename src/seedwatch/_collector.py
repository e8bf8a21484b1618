"""
The main process's side of one monitor: it hears reports, judges and announces.

Reports come from the main process itself (``num_workers=0``) through
:meth:`Collector.submit`, and from workers through a :class:`ReportServer`
started on first need: when a monitored dataset is pickled for a spawn or
forkserver worker, or right before the process forks.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import structlog

from seedwatch._errors import DuplicateStreamWarning
from seedwatch._finding import Finding
from seedwatch._ledger import StreamLedger
from seedwatch._ranks import Distributed, RankLink, connect
from seedwatch._report import Report
from seedwatch._transport import Channel, Handler, ReportServer

_log = structlog.get_logger("seedwatch")
_T = TypeVar("_T")

#: Collectors of this process by monitor id, so copies of a proxy share one.
_collectors: weakref.WeakValueDictionary[str, Collector] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


class Collector:
    """
    Findings of one monitor in one process. Thread-safe.

    Only the process that created it uses it: a forked child sees a copy whose
    ``owner_pid`` is not its own and talks to the parent through :attr:`channel`.
    """

    def __init__(
        self,
        monitor_id: str,
        expect_shared: frozenset[str],
        *,
        distributed: bool | Distributed | None = None,
        label: str = "dataset",
    ) -> None:
        self.monitor_id = monitor_id
        self.owner_pid = os.getpid()
        self._distributed = distributed
        self._label = label
        self._link: RankLink | None = None
        self._linked = False
        self._store_failed = False
        #: Streams other ranks drew too, re-read by findings() to name everyone.
        self._shared: set[tuple[str, str]] = set()
        self._lock = threading.RLock()
        self._ledger = StreamLedger(expect_shared)
        self._server: ReportServer | None = None
        #: Set once the server listens; read without locks by forked children.
        self.channel: Channel | None = None
        self._finalizer: weakref.finalize[Any, Collector] | None = None

    @property
    def owned(self) -> bool:
        """Whether this process is the one that created the collector."""
        return os.getpid() == self.owner_pid

    def listen(self) -> Channel:
        """Start the report server if it is not running, and return its channel."""
        with self._lock:
            if self._server is None:
                handler: weakref.WeakMethod[Handler] = weakref.WeakMethod(self._handle)
                self._server = ReportServer(handler)
                self._finalizer = weakref.finalize(self, self._server.close)
                self.channel = self._server.channel
            return self._server.channel

    def submit(self, report: Report, *, strict: bool) -> str | None:
        """Judge a report; return the error message for a strict reporter that duplicates."""
        link = self._rank_link()
        if link is not None:
            report = replace(report, rank=link.rank)
        with self._lock:
            recorded = self._ledger.record(report)
        new, involving = recorded.new, recorded.involving
        if link is not None:
            for source, fp, member in recorded.streams:
                heard = self._ask_ranks(partial(link.publish, source, fp, member))
                if self._link is None:  # the store failed: carry on as on one machine
                    break
                if heard is not None and heard.count:
                    with self._lock:
                        self._shared.add((source, fp))
                        more_new, more_involving = self._ledger.merge_remote(
                            source, fp, heard.count, heard.members
                        )
                    new += more_new
                    involving += more_involving
        for finding in new:
            _announce(finding, strict=strict)
        if strict and involving:
            return duplicate_message(involving)
        return None

    def sync(self, *, refresh: bool = False) -> None:
        """
        Handle reports already sent by workers, and news from other ranks.

        With ``refresh``, also re-read every stream known to be shared with other
        ranks, so their members are current (one look per shared stream).
        """
        server = self._server
        if server is not None:
            server.drain()
        link = self._link
        if link is None:
            return
        news = self._ask_ranks(link.news) or []
        with self._lock:
            self._shared.update(news)
            streams = sorted(self._shared) if refresh else news
        for source, fp in streams:
            heard = self._ask_ranks(partial(link.look, source, fp))
            if heard is None:
                return
            with self._lock:
                new, _ = self._ledger.merge_remote(source, fp, heard.count, heard.members)
            for finding in new:
                _announce(finding, strict=False)

    def findings(self) -> list[Finding]:
        """Return everything found so far, including reports already sent but not yet read."""
        self.sync(refresh=True)
        with self._lock:
            return self._ledger.findings()

    def _rank_link(self) -> RankLink | None:
        with self._lock:
            if not self._linked:
                self._link = self._ask_ranks(partial(connect, self._distributed, self._label))
                # Automatic mode keeps asking: the process group may come up after the
                # first report (a dataset touched before init_process_group).
                self._linked = (
                    self._link is not None or self._distributed is not None or self._store_failed
                )
            return self._link

    def _ask_ranks(self, operation: Callable[[], _T]) -> _T | None:
        """Run a store operation; on failure, log once and carry on as on one machine."""
        try:
            return operation()
        except Exception as exc:  # noqa: BLE001 - a broken store must not stop training
            _log.warning("seedwatch_store_error", error=repr(exc), action="ranks no longer checked")
            self._link = None
            self._store_failed = True
            return None

    def close(self) -> None:
        """Stop listening (idempotent); findings stay readable."""
        if self._finalizer is not None:
            self._finalizer()

    def _handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        report = Report.from_plain(message.get("report"))
        error = self.submit(report, strict=bool(message.get("await")))
        return {"error": error}


def collector_for(
    monitor_id: str,
    expect_shared: frozenset[str],
    *,
    distributed: bool | Distributed | None = None,
    label: str = "dataset",
) -> Collector:
    """Return this process's collector for a monitor, creating it on first use."""
    with _registry_lock:
        collector = _collectors.get(monitor_id)
        if collector is None or not collector.owned:
            collector = Collector(monitor_id, expect_shared, distributed=distributed, label=label)
            _collectors[monitor_id] = collector
        return collector


def listen_before_fork() -> None:
    """Make every collector of this process reachable by the children about to fork."""
    for collector in list(_collectors.values()):
        if collector.owned:
            try:
                collector.listen()
            except OSError as exc:
                _log.warning("seedwatch_listen_failed", error=repr(exc))


def reset_after_fork() -> None:
    """Replace the registry lock in a forked child: a parent thread may have held it."""
    global _registry_lock  # noqa: PLW0603 - the inherited lock may be held by a thread that is gone
    _registry_lock = threading.Lock()


def duplicate_message(findings: list[Finding]) -> str:
    """Return the strict-mode error text: each finding, its members and its fix."""
    lines = ["seedwatch: duplicate random streams"]
    for finding in findings:
        lines.append(f"- {finding.describe()}")
        lines.append(f"  fix: {finding.hint}")
    return "\n".join(lines)


def _announce(finding: Finding, *, strict: bool) -> None:
    _log.warning("duplicate_rng_stream", **finding.as_dict())
    if not strict:
        # Reports arrive on a background thread, with no user frame to point at.
        warnings.warn_explicit(
            f"{finding.describe()}. Fix: {finding.hint}",
            DuplicateStreamWarning,
            filename="seedwatch",
            lineno=0,
            module="seedwatch",
        )
