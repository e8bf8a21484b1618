"""
Carrying reports from worker processes to the main process, and verdicts back.

An address is a plain string, so a channel pickles and forks as-is and one
monitored dataset works with fork, spawn and forkserver loaders alike:

- ``unix`` (the default where the platform has it): an AF_UNIX stream socket
  in a private 0700 directory, which no other user can even connect to;
- ``tcp`` (Windows, or ``SEEDWATCH_TRANSPORT=tcp``): loopback TCP, where any
  local process can connect and only the token lets it in.

A connection carries one request: the monitor's token, then one frame (see
:mod:`seedwatch._wire`); in strict mode the server answers with one frame and
closes. Every client step has a deadline, so a worker never blocks on a dead
or busy main process for long.

The server is built so that no peer, broken or hostile, can stall it or the
training loop: the token is checked before anything else is read, a frame's
length before its body; each connection buffers at most one frame and must
finish within :data:`PEER_TIMEOUT_S`; at most :data:`MAX_PEERS` are open (the
oldest unfinished one makes way); replies are written without blocking; a
full descriptor table pauses accepting instead of spinning; and input errors
make one log line per period, not one per frame. Frames are handed to the
handler outside the server's lock, so judging never waits on a socket.

:meth:`ReportServer.drain` reads what is already pending synchronously, so a
caller that has seen a worker's batch also sees its report (the worker
finished sending before it returned the batch).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hmac
import os
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from seedwatch import _logs, _socket_dirs
from seedwatch._wire import HEADER_SIZE, MalformedError, frame_length

#: Chooses the transport: ``unix`` or ``tcp``; unset means ``unix`` where available.
TRANSPORT_ENV_VAR = "SEEDWATCH_TRANSPORT"
#: How long a worker may take to connect, send, and (in strict mode) get its verdict.
CLIENT_TIMEOUT_S = 30.0
#: How long an exiting worker waits to hand over its last note: the loader is joining it.
EXIT_TIMEOUT_S = 1.0
#: How long a connection may take to deliver its frame and take its answer.
PEER_TIMEOUT_S = 10.0
#: The most connections open at once; the descriptors seedwatch can cost the user.
MAX_PEERS = 64
#: How long one pass may spend accepting connections that are already waiting.
ACCEPT_BUDGET_S = 0.05
#: How long accepting pauses when the process is out of file descriptors.
ACCEPT_BACKOFF_S = 0.1
#: How long :meth:`ReportServer.drain` waits for frames the server thread is judging.
DRAIN_WAIT_S = 5.0
#: The token's length on the wire: 32 hex digits.
TOKEN_SIZE = 32

#: A selector that needs no file descriptor of its own (epoll and kqueue do), so it
#: still works when the process has none left.
_Selector = getattr(selectors, "PollSelector", selectors.SelectSelector)

#: Gets a frame's body; returns the frame to answer with, or ``None`` for no answer.
Handler = Callable[[bytes], bytes | None]

_throttle = _logs.Throttle()


@dataclass(frozen=True)
class Channel:
    """Where a worker sends its reports: plain data that pickles and forks as-is."""

    address: str
    token: str
    family: str = "unix"


def chosen_family() -> str:
    """Return the transport to listen on: ``$SEEDWATCH_TRANSPORT``, else unix where available."""
    wanted = os.environ.get(TRANSPORT_ENV_VAR, "").strip().lower()
    if wanted in ("unix", "tcp"):
        return wanted if wanted == "tcp" or hasattr(socket, "AF_UNIX") else "tcp"
    if wanted:
        _throttle.warning("seedwatch_unknown_transport", value=wanted, expected="unix or tcp")
    return "unix" if hasattr(socket, "AF_UNIX") and os.name == "posix" else "tcp"


def send(
    channel: Channel, frame: bytes, *, await_reply: bool, timeout: float | None = None
) -> bytes | None:
    """
    Send one frame to the main process; with ``await_reply``, return its answer's body.

    Returns ``None`` when the main process cannot be reached, or does not
    answer, within ``timeout`` seconds in all (default :data:`CLIENT_TIMEOUT_S`;
    it exited, or is stuck): the caller decides what an unanswered request means.
    """
    timeout = CLIENT_TIMEOUT_S if timeout is None else timeout
    deadline = time.monotonic() + timeout
    try:
        with _connect(channel, timeout) as sock:
            sock.sendall(channel.token.encode("ascii") + frame)
            if not await_reply:
                return None
            sock.shutdown(socket.SHUT_WR)
            header = _receive(sock, HEADER_SIZE, deadline)
            if header is None:
                return None
            return _receive(sock, frame_length(header), deadline)
    except (OSError, ValueError) as exc:
        _throttle.warning("seedwatch_unreachable", address=channel.address, error=repr(exc))
        return None


def _connect(channel: Channel, timeout: float) -> socket.socket:
    if channel.family == "tcp":
        host, _, port = channel.address.rpartition(":")
        return socket.create_connection((host, int(port)), timeout=timeout)
    deadline, pause = time.monotonic() + timeout, 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(channel.address)
        except (BlockingIOError, InterruptedError):
            # AF_UNIX answers a full listen queue with EAGAIN at once (TCP would wait):
            # the main process is busy, or flooded. Try again, until the deadline.
            sock.close()
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            continue
        except BaseException:
            sock.close()
            raise
        return sock


def _receive(sock: socket.socket, size: int, deadline: float) -> bytes | None:
    """Read exactly ``size`` bytes by ``deadline``; ``None`` if the peer closes first."""
    data = bytearray()
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer in time")
        sock.settimeout(remaining)
        chunk = sock.recv(min(size - len(data), 65536))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


class _Inside(threading.local):
    active = False


@dataclass(eq=False)
class _Peer:
    """One connection: what it has sent so far, and what it still needs to send or take."""

    sock: socket.socket
    deadline: float
    stage: str = "token"  # token, header, body, judging, answering, closed
    need: int = TOKEN_SIZE
    buffer: bytearray = field(default_factory=bytearray)
    answer: memoryview = field(default_factory=lambda: memoryview(b""))

    @property
    def unfinished(self) -> bool:
        return self.stage in ("token", "header", "body")


def _eviction_order(peer: _Peer) -> tuple[bool, bool, float]:
    """Silent first, then short of the token, then the rest; the oldest first in each."""
    return (bool(peer.buffer) or peer.stage != "token", peer.stage != "token", peer.deadline)


class ReportServer:
    """
    The main process's end: accepts connections and hands each frame to a handler.

    ``handler()`` returns the current handler (``None`` once its owner is gone),
    which gets the frame's body and returns the frame to answer with, if any. A
    ``weakref.WeakMethod`` fits, so the server never keeps its owner alive; the
    owner closes the server when it goes.
    """

    def __init__(self, handler: Callable[[], Handler | None], family: str | None = None) -> None:
        self._handler = handler
        self._throttle = _logs.Throttle()
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._in_flight = 0
        #: Whether this thread is already in drain() or is the server's: a drain()
        #: re-entered from there would wait for the frame it is judging itself.
        self._inside = _Inside()
        self._owner_pid = os.getpid()
        self._token = secrets.token_hex(TOKEN_SIZE // 2)
        self._directory: str | None = None
        self._listener = self._listen(family or chosen_family())
        self._listener.setblocking(False)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._peers: dict[socket.socket, _Peer] = {}
        self._accept_paused_until = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="seedwatch-collector", daemon=True)
        self._thread.start()

    def _listen(self, family: str) -> socket.socket:
        if family == "tcp":
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind(("127.0.0.1", 0))
            host, port = listener.getsockname()[:2]
            self.channel = Channel(f"{host}:{port}", self._token, "tcp")
        else:
            self._directory = _socket_dirs.make_private_directory()
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address = os.path.join(self._directory, _socket_dirs.SOCKET_NAME)  # noqa: PTH118
            listener.bind(address)
            self.channel = Channel(address, self._token, "unix")
        listener.listen(socket.SOMAXCONN)
        return listener

    @property
    def peers(self) -> int:
        """How many connections are open right now."""
        with self._lock:
            return len(self._peers)

    def drain(self, wait: float = DRAIN_WAIT_S) -> None:
        """
        Handle every frame that has fully arrived; never blocks on a client.

        Passes are repeated while they find connections waiting (a flood may
        queue thousands before a worker's), and frames the server thread took
        first are waited for: at most ``wait`` seconds in all.
        """
        if self._closed or os.getpid() != self._owner_pid or self._inside.active:
            return  # re-entered (a __del__ run by the garbage collector mid-judge): do nothing
        self._inside.active = True
        try:
            self._drain(wait)
        finally:
            self._inside.active = False

    def _drain(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                ready, accepted = self._pass()
            self._judge(ready)
            if not accepted or time.monotonic() >= deadline:
                break
        self._wake()  # the server thread watches any connection accepted here
        with self._settled:
            self._settled.wait_for(
                lambda: self._in_flight == 0 or self._closed,
                timeout=max(0.0, deadline - time.monotonic()),
            )

    def close(self) -> None:
        """Stop the thread and remove the socket; a no-op in forked children and when closed."""
        if os.getpid() != self._owner_pid:
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._settled.notify_all()
            self._wake()
            for peer in self._peers.values():
                peer.sock.close()
            self._peers.clear()
            self._listener.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._wake_reader.close()
        self._wake_writer.close()
        if self._directory is not None:
            _socket_dirs.remove(self._directory)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def _serve(self) -> None:
        self._inside.active = True  # this thread never drains: it is the server
        while not self._closed:
            try:
                self._serve_once()
            except Exception as exc:  # noqa: BLE001, PERF203 - this thread must outlive any bug
                self._throttle.warning("seedwatch_collector_error", error=repr(exc))

    def _serve_once(self) -> None:
        self._wait()
        if self._closed:
            return
        with contextlib.suppress(OSError):
            while self._wake_reader.recv(4096):
                pass
        with _collection_paused():
            with self._lock:
                ready = [] if self._closed else self._pass()[0]
            self._judge(ready)

    def _wait(self) -> None:
        """Block until a socket is ready, the next deadline passes, or someone wakes us."""
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            deadlines = [p.deadline for p in self._peers.values() if p.stage != "judging"]
            accepting = now >= self._accept_paused_until and self._room()
            if not accepting and now < self._accept_paused_until:
                deadlines.append(self._accept_paused_until)
            watched: list[tuple[socket.socket, int]] = [(self._wake_reader, selectors.EVENT_READ)]
            if accepting:
                watched.append((self._listener, selectors.EVENT_READ))
            for peer in self._peers.values():
                if peer.unfinished:
                    watched.append((peer.sock, selectors.EVENT_READ))
                elif peer.stage == "answering":
                    watched.append((peer.sock, selectors.EVENT_WRITE))
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        try:
            with _Selector() as selector:
                for sock, events in watched:
                    selector.register(sock, events)
                selector.select(timeout)
        except (ValueError, KeyError):
            pass  # drain() closed a connection after the snapshot: take a new one
        except OSError as exc:
            self._throttle.warning("seedwatch_select_failed", error=repr(exc))
            time.sleep(ACCEPT_BACKOFF_S)

    def _room(self) -> bool:
        """Whether one more connection may be accepted, evicting the oldest unfinished one."""
        return len(self._peers) < MAX_PEERS or any(p.unfinished for p in self._peers.values())

    def _pass(self) -> tuple[list[tuple[_Peer, bytes]], int]:
        """
        Expire, accept and read everything pending. Lock held.

        Returns the complete frames, and how many connections were accepted.
        """
        now = time.monotonic()
        for peer in [p for p in self._peers.values() if p.deadline <= now and p.stage != "judging"]:
            self._throttle.warning("seedwatch_peer_timeout", stage=peer.stage)
            self._drop(peer)
        ready: list[tuple[_Peer, bytes]] = []
        accepted = self._accept(now, ready) if now >= self._accept_paused_until else 0
        for peer in list(self._peers.values()):
            if peer.unfinished:
                body = self._read(peer)
                if body is not None:
                    ready.append((peer, body))
            elif peer.stage == "answering":
                self._write(peer)
        self._in_flight += len(ready)
        return ready, accepted

    def _accept(self, now: float, ready: list[tuple[_Peer, bytes]]) -> int:
        """
        Accept what is waiting, for at most :data:`ACCEPT_BUDGET_S`; read each at once.

        A worker sends its whole frame right after connecting, so reading at once
        completes it before anything can crowd it out. At :data:`MAX_PEERS`, the
        oldest connection that has not shown the token makes way, then the oldest
        unfinished one.
        """
        accepted, budget_end = 0, now + ACCEPT_BUDGET_S
        while accepted == 0 or time.monotonic() < budget_end:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._throttle.warning("seedwatch_accept_paused", error=repr(exc))
                    self._accept_paused_until = now + ACCEPT_BACKOFF_S
                break
            accepted += 1
            sock.setblocking(False)
            peer = self._peers[sock] = _Peer(sock, now + PEER_TIMEOUT_S)
            body = self._read(peer)
            if body is not None:
                ready.append((peer, body))
            if len(self._peers) > MAX_PEERS and not self._evict(ready):
                break  # every connection is being judged or answered: accept no more now
        return accepted

    def _evict(self, ready: list[tuple[_Peer, bytes]]) -> bool:
        """
        Drop the connection least likely to be a worker's; whether there was one.

        Every unfinished connection is read first: a worker accepted between its
        connect and its send has sent by now, and completes instead of being
        dropped. Then the oldest that has sent nothing goes, or failing that the
        oldest still short of the token, or the oldest unfinished.
        """
        for peer in [p for p in self._peers.values() if p.unfinished]:
            body = self._read(peer)
            if body is not None:
                ready.append((peer, body))
        unfinished = [p for p in self._peers.values() if p.unfinished]
        if not unfinished:
            return False
        self._throttle.warning("seedwatch_too_many_connections", limit=MAX_PEERS)
        self._drop(min(unfinished, key=_eviction_order))
        return True

    def _read(self, peer: _Peer) -> bytes | None:
        """Read what ``peer`` has sent; return its frame's body once complete."""
        while peer.unfinished and self._fill(peer):
            body = self._advance(peer)
            if body is not None:
                return body
        return None

    def _fill(self, peer: _Peer) -> bool:
        """Read toward what ``peer`` owes next; whether it is all there (no: wait, or dropped)."""
        while len(peer.buffer) < peer.need:
            try:
                chunk = peer.sock.recv(min(peer.need - len(peer.buffer), 65536))
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                chunk = b""
            if not chunk:
                self._drop(peer)
                return False
            peer.buffer += chunk
        return True

    def _advance(self, peer: _Peer) -> bytes | None:
        """Act on a complete token, header or body; return the body when it is one."""
        data, peer.buffer = bytes(peer.buffer), bytearray()
        if peer.stage == "body":
            peer.stage = "judging"
            return data
        if peer.stage == "token":
            if not hmac.compare_digest(data, self._token.encode("ascii")):
                self._throttle.warning("seedwatch_bad_token")
                self._drop(peer)
            else:
                peer.stage, peer.need = "header", HEADER_SIZE
            return None
        try:
            peer.stage, peer.need = "body", frame_length(data)
        except MalformedError as exc:
            self._throttle.warning("seedwatch_bad_frame", error=str(exc))
            self._drop(peer)
        return None

    def _judge(self, ready: list[tuple[_Peer, bytes]]) -> None:
        """Hand each frame to the handler, outside the lock; then answer without blocking."""
        for peer, body in ready:
            answer = None
            try:
                answer = self._answer(body)
            finally:  # whatever happens, the frame is settled and its connection not kept
                with self._settled:
                    self._in_flight -= 1
                    self._settled.notify_all()
                    if not self._closed and peer.sock in self._peers:
                        self._respond(peer, answer)
        if any(peer.stage == "answering" for peer, _ in ready):
            self._wake()

    def _respond(self, peer: _Peer, answer: bytes | None) -> None:
        """Start answering ``peer`` (or close it, with nothing to say). Lock held."""
        if answer is None:
            self._drop(peer)
            return
        peer.stage, peer.answer = "answering", memoryview(answer)
        peer.deadline = time.monotonic() + PEER_TIMEOUT_S
        self._write(peer)

    def _answer(self, body: bytes) -> bytes | None:
        try:
            handler = self._handler()
            return None if handler is None else handler(body)
        except Exception as exc:  # noqa: BLE001 - the collector thread must outlive bad input
            self._throttle.warning("seedwatch_bad_message", error=repr(exc))
            return None

    def _write(self, peer: _Peer) -> None:
        """Send what ``peer`` can take now; close it once it has its whole answer."""
        try:
            sent = peer.sock.send(peer.answer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(peer)
            return
        peer.answer = peer.answer[sent:]
        if not peer.answer:
            self._drop(peer)

    def _drop(self, peer: _Peer) -> None:
        peer.stage = "closed"
        self._peers.pop(peer.sock, None)
        peer.sock.close()


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """
    Pause the cyclic garbage collector while the server thread reads and judges.

    A collection runs finalizers on whichever thread allocates. A DataLoader
    iterator dropped by an exception would join its workers on this thread,
    while a strict worker waits for the very verdict this thread owes it: 5 s
    lost, until the join gives up. Collection resumes right after, on the next
    allocation of any thread.
    """
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
