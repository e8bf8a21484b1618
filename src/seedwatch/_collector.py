"""
The main process's side of one monitor: it hears reports, judges them and gives verdicts.

Reports come from the main process itself (``num_workers=0``) through
:meth:`Collector.submit`, and from workers through a :class:`ReportServer`
started on first need: when a monitored dataset is pickled for a spawn or
forkserver worker, or right before the process forks. Each report goes one
way: record it in the ledger, share it with other ranks, announce what is
new, and answer a strict reporter.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Protocol

from seedwatch import _logs
from seedwatch._announce import announce, note_latent
from seedwatch._finding import Finding, Findings, Member
from seedwatch._history import History
from seedwatch._ledger import StreamLedger
from seedwatch._ranks import Elsewhere
from seedwatch._render import duplicate_message
from seedwatch._report import Report
from seedwatch._transport import Channel, Handler, ReportServer
from seedwatch._wire import MalformedError, decode_request, encode_verdict

#: Collectors of this process by monitor id, so copies of a proxy share one.
_collectors: weakref.WeakValueDictionary[str, Collector] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


class Ranks(Protocol):
    """What a collector needs of other ranks (:class:`seedwatch._ranks.RankSync`)."""

    def rank(self) -> int | None:
        """Return this process's rank, or ``None`` when not distributed."""

    def share(self, streams: Iterable[tuple[str, str, Member]]) -> list[tuple[str, str, Elsewhere]]:
        """Publish streams; return those other ranks drew too."""

    def news(self, *, refresh: bool = False) -> list[tuple[str, str, Elsewhere]]:
        """Return what other ranks drew of the streams they told this rank about."""

    def ranks(self) -> int:
        """Return how many ranks have published streams (0 when not distributed)."""


class OneMachine:
    """No other ranks: what a collector uses when the monitor is not distributed."""

    def rank(self) -> int | None:
        """Return ``None``: there is no rank."""
        return None

    def share(self, streams: Iterable[tuple[str, str, Member]]) -> list[tuple[str, str, Elsewhere]]:  # noqa: ARG002 - the Ranks protocol
        """Return nothing: nobody else drew anything."""
        return []

    def news(self, *, refresh: bool = False) -> list[tuple[str, str, Elsewhere]]:  # noqa: ARG002 - the Ranks protocol
        """Return nothing: nobody else drew anything."""
        return []

    def ranks(self) -> int:
        """Return 0: not distributed."""
        return 0


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
        ranks: Ranks | None = None,
        history: History | None = None,
    ) -> None:
        self.monitor_id = monitor_id
        self.owner_pid = os.getpid()
        self._ranks: Ranks = OneMachine() if ranks is None else ranks
        self._lock = threading.RLock()
        self._history = history
        past = {} if history is None else history.past()
        self._ledger = StreamLedger(expect_shared, past=past)
        self._server: ReportServer | None = None
        #: Set once the server listens; read without locks by forked children.
        self.channel: Channel | None = None
        self._finalizer: weakref.finalize[Any, Collector] | None = None
        #: Strict errors about workers' reports that no exception has carried to the
        #: user's loop yet: a monitored loader raises them (see :meth:`take_owed`).
        self.owed: list[str] = []
        self._bad_input = _logs.Throttle()

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
        involving = self._judge(report, strict=strict)
        return duplicate_message(involving) if strict and involving else None

    def _judge(self, report: Report, *, strict: bool) -> list[Finding]:
        """Record, share and announce a report; return the findings it takes part in."""
        rank = self._ranks.rank()
        if rank is not None:
            report = replace(report, rank=rank)
        with self._lock:
            recorded = self._ledger.record(report)
        if self._history is not None:
            self._history.append(recorded.streams)
        new, involving = list(recorded.new), list(recorded.involving)
        note_latent(recorded.latent)
        for source, fp, elsewhere in self._ranks.share(recorded.streams):
            with self._lock:
                more_new, more_involving = self._ledger.merge_remote(
                    source, fp, elsewhere.count, elsewhere.members
                )
            new += more_new
            involving += more_involving
        announce(new, strict=strict)
        return involving

    def sync(self, *, refresh: bool = False) -> None:
        """
        Handle reports already sent by workers, and news from other ranks.

        With ``refresh``, also re-read every stream known to be shared with other
        ranks, so their members are current.
        """
        server = self._server
        if server is not None:
            server.drain()
        for source, fp, elsewhere in self._ranks.news(refresh=refresh):
            with self._lock:
                new, _ = self._ledger.merge_remote(source, fp, elsewhere.count, elsewhere.members)
            announce(new, strict=False)

    def findings(self) -> Findings:
        """Return everything found so far, including reports already sent but not yet read."""
        self.sync(refresh=True)
        with self._lock:
            everything = self._ledger.findings(latent=True)
            observed = self._ledger.observed()
        # A clean result compared with other ranks counts them, though none shared a stream.
        observed = replace(observed, ranks=max(observed.ranks, self._ranks.ranks()))
        return Findings(
            [f for f in everything if f.used], observed, [f for f in everything if not f.used]
        )

    def take_owed(self) -> str | None:
        """Return, and forget, the strict errors owed to the user's loop (``None``: none)."""
        with self._lock:
            owed, self.owed[:] = list(self.owed), []
        return "\n\n".join(dict.fromkeys(owed)) if owed else None

    def forgive_owed(self) -> None:
        """Forget owed errors: a worker's own strict error just reached the user's loop."""
        with self._lock:
            self.owed.clear()

    def close(self) -> None:
        """Stop listening (idempotent); findings stay readable."""
        if self._finalizer is not None:
            self._finalizer()

    def _handle(self, body: bytes) -> bytes | None:
        channel = self.channel
        if channel is None:
            return None
        try:
            request = decode_request(body, channel.token)
        except MalformedError as exc:
            self._bad_input.warning("seedwatch_bad_message", error=str(exc))
            return None
        # A strict worker that waits raises the verdict itself, so it is not also
        # warned about. Either way its duplicate is owed to the user's loop, in case
        # the worker never gets its answer, or is exiting and waits for none.
        involving = self._judge(request.report, strict=request.awaits_verdict)
        error = duplicate_message(involving) if request.strict and involving else None
        if error is not None:
            with self._lock:
                self.owed.append(error)
        return encode_verdict(error) if request.awaits_verdict else None


def collector_for(
    monitor_id: str,
    expect_shared: frozenset[str],
    ranks: Ranks | None = None,
    history: str | None = None,
) -> Collector:
    """Return this process's collector for a monitor, creating it on first use."""
    with _registry_lock:
        collector = _collectors.get(monitor_id)
        if collector is None or not collector.owned:
            kept = None if history is None else History(history)
            collector = Collector(monitor_id, expect_shared, ranks, kept)
            _collectors[monitor_id] = collector
        return collector


def listen_before_fork() -> None:
    """Make every collector of this process reachable by the children about to fork."""
    for collector in list(_collectors.values()):
        if collector.owned:
            try:
                collector.listen()
            except OSError as exc:
                _logs.warning("seedwatch_listen_failed", error=repr(exc))


def reset_after_fork() -> None:
    """Replace the registry lock in a forked child: a parent thread may have held it."""
    global _registry_lock  # noqa: PLW0603 - the inherited lock may be held by a thread that is gone
    _registry_lock = threading.Lock()
