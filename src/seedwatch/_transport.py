"""
Carrying reports from worker processes to the main process, and verdicts back.

A local stream socket (AF_UNIX, in a private 0700 directory) whose address is a
plain string: it needs no multiprocessing primitive, so one monitored dataset
works with fork, spawn and forkserver loaders, even alternately, and nothing is
tied to a start method. Each worker connects once, sends one frame and, in
strict mode, reads one frame back. Every client step has a timeout, so a worker
never blocks on a dead or busy main process for long. What the frames hold is
:mod:`seedwatch._wire`'s business: this module moves bytes.

The server side runs a daemon thread; :meth:`ReportServer.drain` reads what is
already pending synchronously, so a caller that has seen a worker's batch also
sees its report (the worker finished sending before it returned the batch).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from seedwatch._wire import MalformedError, split_frames

_log = structlog.get_logger("seedwatch")

#: How long a worker waits to connect, send, and (in strict mode) for its verdict.
CLIENT_TIMEOUT_S = 30.0
#: How long an exiting worker waits to hand over its last note: the loader is joining it.
EXIT_TIMEOUT_S = 1.0

#: Gets a frame's body; returns the frame to answer with, or ``None`` for no answer.
Handler = Callable[[bytes], bytes | None]


@dataclass(frozen=True)
class Channel:
    """Where a worker sends its reports: plain data that pickles and forks as-is."""

    address: str
    token: str


def send(
    channel: Channel, frame: bytes, *, await_reply: bool, timeout: float = CLIENT_TIMEOUT_S
) -> bytes | None:
    """
    Send one frame to the main process; with ``await_reply``, return its answer's body.

    Returns ``None`` when the main process cannot be reached within ``timeout``
    seconds a step (it exited, or is stuck): the caller carries on unchecked
    rather than hang training.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(channel.address)
            sock.sendall(frame)
            if not await_reply:
                return None
            sock.shutdown(socket.SHUT_WR)
            return _read_reply(sock)
    except (OSError, ValueError) as exc:
        _log.warning("seedwatch_unreachable", address=channel.address, error=repr(exc))
        return None


def _read_reply(sock: socket.socket) -> bytes | None:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    frames, _rest = split_frames(data)
    return frames[0] if frames else None


class ReportServer:
    """
    The main process's end: accepts connections and hands each frame to a handler.

    ``handler()`` returns the current handler (``None`` once its owner is gone),
    which gets the frame's body and returns the frame to answer with, if any. A
    ``weakref.WeakMethod`` fits, so the server never keeps its owner alive; the
    owner closes the server when it goes.
    """

    def __init__(self, handler: Callable[[], Handler | None]) -> None:
        self._handler = handler
        self._lock = threading.RLock()
        self._owner_pid = os.getpid()
        self._directory = tempfile.mkdtemp(prefix="seedwatch-")
        self.channel = Channel(os.path.join(self._directory, "s"), secrets.token_hex(16))  # noqa: PTH118
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.channel.address)
        self._listener.listen(socket.SOMAXCONN)
        self._listener.setblocking(False)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._connections: dict[socket.socket, bytes] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="seedwatch-collector", daemon=True)
        self._thread.start()

    def drain(self) -> None:
        """Handle every frame that has fully arrived; never blocks on a client."""
        with self._lock:
            if self._closed or os.getpid() != self._owner_pid:
                return
            before = set(self._connections)
            self._pump()
            if set(self._connections) != before:
                self._wake()

    def close(self) -> None:
        """Stop the thread and remove the socket; a no-op in forked children and when closed."""
        if os.getpid() != self._owner_pid:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake()
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            self._listener.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._wake_reader.close()
        self._wake_writer.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                watched = [self._listener, self._wake_reader, *self._connections]
            try:
                with selectors.DefaultSelector() as selector:
                    for sock in watched:
                        selector.register(sock, selectors.EVENT_READ)
                    selector.select()
            except (OSError, ValueError):
                # drain() closed a connection after the snapshot: take a new one.
                pass
            with self._lock:
                if self._closed:
                    return
                with contextlib.suppress(OSError):
                    while self._wake_reader.recv(4096):
                        pass
                try:
                    self._pump()
                except Exception as exc:  # noqa: BLE001 - this thread must outlive any bug
                    _log.warning("seedwatch_collector_error", error=repr(exc))

    def _pump(self) -> None:
        """Accept and read everything pending; the lock is held."""
        while True:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            conn.setblocking(False)
            self._connections[conn] = b""
        for conn in list(self._connections):
            self._read(conn)

    def _read(self, conn: socket.socket) -> None:
        buffer, closed = self._connections[conn], False
        while True:
            try:
                chunk = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                closed = True
                break
            buffer += chunk
        try:
            frames, buffer = split_frames(buffer)
        except MalformedError as exc:
            _log.warning("seedwatch_bad_frame", error=str(exc))
            frames, closed = [], True
        for frame in frames:
            self._dispatch(conn, frame)
        if closed:
            del self._connections[conn]
            conn.close()
        else:
            self._connections[conn] = buffer

    def _dispatch(self, conn: socket.socket, frame: bytes) -> None:
        try:
            handler = self._handler()
            reply = None if handler is None else handler(frame)
        except Exception as exc:  # noqa: BLE001 - the collector thread must outlive bad input
            _log.warning("seedwatch_bad_message", error=repr(exc))
            return
        if reply is not None:
            with contextlib.suppress(OSError):
                conn.setblocking(True)
                conn.settimeout(1.0)
                conn.sendall(reply)
                conn.setblocking(False)
