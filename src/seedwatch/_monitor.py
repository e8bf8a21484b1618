"""
The monitoring work behind one monitored dataset in one process: take a report, deliver it.

A plain object with no proxy tricks, so the proxy (:mod:`seedwatch._proxy`)
is left with forwarding, pickling and class switching, and the loader and the
public API call these methods instead of the proxy's private ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.util import Finalize
from typing import TYPE_CHECKING

from torch.utils.data import get_worker_info

from seedwatch import _logs, _transport
from seedwatch._config import MonitorConfig
from seedwatch._errors import DuplicateStreamError, VerdictUnavailableError
from seedwatch._finding import Findings
from seedwatch._probe import (
    FirstLook,
    SecondLook,
    drawn_since,
    look,
    look_after,
    report_of,
    take_report,
)
from seedwatch._report import Report
from seedwatch._transport import EXIT_TIMEOUT_S, Channel, send
from seedwatch._wire import MalformedError, decode_verdict, encode_request

if TYPE_CHECKING:
    from seedwatch._collector import Collector


class Monitor:
    """
    One monitor's work in this process: the config, and where reports go.

    In the process that made the monitor, reports go to its :class:`Collector`;
    in a DataLoader worker, through :attr:`channel` to the main process. Not
    thread-safe on its own: the proxy makes sure each process reports once.
    """

    def __init__(
        self,
        config: MonitorConfig,
        collector: Collector | None = None,
        channel: Channel | None = None,
    ) -> None:
        self.config = config
        self._collector = collector
        self._channel = channel
        #: Made by :func:`seedwatch.watch` rather than asked for: ``monitor()`` may redo it.
        self.implicit = False
        #: The monitor the job made instead of this implicit one (``monitor()`` redid it).
        self.replaced_by: Monitor | None = None

    def collector(self) -> Collector:
        """Return this process's collector for the monitor, adopting one if needed."""
        collector = self._collector
        if collector is None or not collector.owned:
            # Imported here: a spawned worker never judges, so it never pays for the judge.
            from seedwatch._collector import collector_for  # noqa: PLC0415
            from seedwatch._ranks import RankSync  # noqa: PLC0415

            config = self.config
            collector = collector_for(
                config.monitor_id, config.expect_shared, RankSync(None, "dataset"), config.history
            )
            self._collector = collector
        return collector

    def channel(self, *, listen: bool = False) -> Channel | None:
        """
        Return where this process's workers send reports.

        With ``listen``, start listening if this process owns the collector and
        has not yet (a dataset is being pickled for a spawn or forkserver worker).
        """
        collector = self._collector
        if listen and collector is not None and collector.owned:
            return collector.listen()
        if self._channel is None and collector is not None:
            return collector.channel
        return self._channel

    def take(
        self, dataset: object, *, epoch: tuple[int, int] | None = None, resumed: bool = False
    ) -> Report:
        """Fingerprint every source this process sees from ``dataset``; deliver nothing."""
        return take_report(dataset, self.config.draws, epoch=epoch, resumed=resumed)

    def watch(self, dataset: object, *, iteration: int = 0) -> Watch:
        """
        Look at ``dataset``'s streams before this process serves its first item.

        ``iteration`` counts a persistent worker's iterations of an iterable
        dataset: each is an epoch of its own (see :func:`generation_key`).
        """
        try:
            first: FirstLook | None = look(dataset, self.config.draws)
        except Exception as exc:  # noqa: BLE001 - monitoring must never break a fetch
            _logs.warning("seedwatch_internal_error", error=repr(exc))
            first = None
        return Watch(self, dataset, first, iteration)

    def deliver(self, report: Report) -> None:
        """
        Deliver a report to the main process's collector and act on the verdict.

        Raises:
            DuplicateStreamError: In strict mode, when the report repeats a stream.
                A failure of seedwatch itself is logged, never raised: monitoring
                must not break a fetch.
            VerdictUnavailableError: In strict mode, in a worker whose main process
                does not answer in time: strict mode fails closed.

        """
        self.deliver_taken(lambda: report)

    def deliver_taken(self, take: Callable[[], Report]) -> None:
        """Deliver the report ``take()`` returns, as :meth:`deliver`; its failures are logged."""
        strict = self.config.strict_now()
        try:
            report = take()
            if get_worker_info() is None:
                answered, error = True, self.collector().submit(report, strict=strict)
            else:
                answered, error = self._send(report, strict=strict)
        except Exception as exc:  # noqa: BLE001 - monitoring must never break a fetch
            _logs.warning("seedwatch_internal_error", error=repr(exc))
            return
        if error:
            raise DuplicateStreamError(error)
        if not answered:
            raise VerdictUnavailableError(
                "seedwatch strict mode: this worker's streams were sent to the main process but "
                f"no verdict came back within {_transport.CLIENT_TIMEOUT_S:g} s (the main "
                "process is gone or stuck), so they are unjudged; strict mode treats that as a "
                "failure"
            )

    def sync(self) -> None:
        """Read what workers sent and what other ranks said (see :meth:`Collector.sync`)."""
        self.collector().sync()

    def findings(self) -> Findings:
        """Return every finding so far (see :meth:`Collector.findings`)."""
        return self.collector().findings()

    def _send(self, report: Report, *, strict: bool) -> tuple[bool, str | None]:
        """Send a worker's report; return whether a strict verdict came back, and its error."""
        channel = self.channel()
        if channel is None:
            _logs.warning("seedwatch_no_channel", reason="not monitored before the fork")
            return True, None
        frame = encode_request(report, channel.token, strict=strict, awaits_verdict=strict)
        reply = send(channel, frame, await_reply=strict)
        if not strict:
            return True, None
        if reply is None:
            return False, None
        try:
            return True, decode_verdict(reply)
        except MalformedError as exc:
            _logs.warning("seedwatch_bad_verdict", error=str(exc))
            return False, None


class Watch:
    """One process's two looks: made before its first item, finished right after it."""

    def __init__(
        self, monitor: Monitor, dataset: object, first: FirstLook | None, iteration: int = 0
    ) -> None:
        self._monitor = monitor
        self._dataset = dataset
        self._first = first
        self._iteration = iteration

    def finish(
        self, *more: tuple[str, object], served: bool = True, strict_verdict: bool | None = None
    ) -> None:
        """
        Look again (if an item was ``served``) and deliver both looks as one report.

        ``more`` are extra roots of the second look (an iterable's running iterator).
        ``strict_verdict`` says whether a strict duplicate may raise; by default only
        when an item was ``served`` (an item that failed raises the user's own
        exception instead). An empty iterable passes ``True``: nothing else is raising.

        Raises:
            DuplicateStreamError: In strict mode, when a stream repeats (see above).

        """
        first, self._first = self._first, None
        if first is None:
            return
        monitor = self._monitor

        iteration = self._iteration

        def take() -> Report:
            if not served:  # nothing was drawn: every stream is latent here
                unused = {k: v.with_used(False) for k, v in first.streams.items()}
                return report_of(unused, iteration=iteration)
            after = look_after(self._dataset, monitor.config.draws, first, *more)
            streams = {
                name: stream if name in after.moved else stream.with_used(False)
                for name, stream in first.streams.items()
            }
            report = report_of(streams, after.later, iteration=iteration)
            if after.latent and not iteration and get_worker_info() is not None:
                _check_at_exit(monitor, report, after)
            return report

        if served if strict_verdict is None else strict_verdict:
            monitor.deliver_taken(take)
        else:
            with contextlib.suppress(DuplicateStreamError, VerdictUnavailableError):
                monitor.deliver_taken(take)


def _check_at_exit(monitor: Monitor, report: Report, after: SecondLook) -> None:
    """
    When this worker exits, say which of its latent streams it drew from after all.

    A generator used for some items only (the second dataset of a concatenation,
    a rare augmentation) is unmoved at the second look. A worker exits at the end
    of its epoch (or of training, with persistent workers); the loader joins it
    before the epoch's loop ends, so its note is in before ``findings()`` reads.
    """

    def note() -> None:
        try:
            first, late = drawn_since(after)
            if not (first or late):
                return
            used = replace(
                report,
                streams={name: report.streams[name].with_used(True) for name in first},
                later={name: report.later[name].with_used(True) for name in late},
            )
            channel = monitor.channel()
            if channel is not None:
                # Waits for nothing: the main process may be joining this worker on the very
                # thread that would answer (the garbage collector runs a DataLoader
                # iterator's __del__ wherever it likes). The loader joins this worker before
                # the epoch ends, and the epoch's end reads what was sent.
                strict = monitor.config.strict_now()
                frame = encode_request(used, channel.token, strict=strict, awaits_verdict=False)
                send(channel, frame, await_reply=False, timeout=EXIT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a worker's exit must not fail on our account
            _logs.warning("seedwatch_internal_error", error=repr(exc))

    Finalize(None, note, exitpriority=10)
