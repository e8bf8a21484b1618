from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from seedwatch._transport import Channel, ReportServer, send
from seedwatch._wire import MAX_FRAME, encode_frame


class Recorder:
    """A handler that keeps every message and answers with ``reply``, if any."""

    def __init__(self, reply: dict[str, Any] | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reply = reply

    def __call__(self, body: bytes) -> bytes | None:
        self.messages.append(json.loads(body))
        return None if self.reply is None else encode_frame(self.reply)


def ask(channel: Channel, message: dict[str, Any]) -> Any:
    """Send a message, wait for the answer and return it decoded (None for no answer)."""
    reply = send(channel, encode_frame(message), await_reply=True)
    return None if reply is None else json.loads(reply)


def tell(channel: Channel, message: dict[str, Any]) -> None:
    """Send a message without waiting for an answer."""
    send(channel, encode_frame(message), await_reply=False)


@pytest.fixture(name="recorder")
def _recorder() -> Recorder:
    return Recorder({"error": None})


@pytest.fixture(name="server")
def _server(recorder: Recorder) -> Any:
    server = ReportServer(lambda: recorder)
    yield server
    server.close()


def raw_send(channel: Channel, payload: bytes) -> None:
    """Send the channel's token, then ``payload`` as it is."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(channel.address)
        sock.sendall(channel.token.encode() + payload)


class TestReportServer:
    def test_a_sent_message_is_handled_by_the_next_drain(
        self, server: ReportServer, recorder: Recorder
    ) -> None:
        """Once send() returns, drain() has the message: no sleeps, no races."""
        for number in range(10):
            tell(server.channel, {"n": number})
            server.drain()
            assert number == recorder.messages[-1]["n"]

    def test_awaiting_clients_get_the_handlers_reply(
        self, server: ReportServer, recorder: Recorder
    ) -> None:
        """A strict client reads the handler's answer."""
        recorder.reply = {"error": "duplicate"}

        assert {"error": "duplicate"} == ask(server.channel, {"n": 1})

    def test_no_answer_closes_at_once(self, server: ReportServer, recorder: Recorder) -> None:
        """A handler with nothing to say lets a waiting client go at once, with no answer."""
        recorder.reply = None
        started = time.monotonic()

        assert ask(server.channel, {"n": 1}) is None
        assert time.monotonic() - started < 5.0

    @pytest.mark.parametrize(
        "payload",
        [
            b"\x00\x00\x00\x05nope!",
            struct.pack("!I", MAX_FRAME + 1) + b"x",
            b"\xff",
        ],
        ids=["not-json", "oversized", "truncated"],
    )
    def test_garbage_never_stops_the_server(
        self, server: ReportServer, recorder: Recorder, payload: bytes
    ) -> None:
        """Malformed frames are dropped and the next good message still arrives."""
        raw_send(server.channel, payload)

        assert {"error": None} == ask(server.channel, {"n": "after"})
        assert {"n": "after"} == recorder.messages[-1]

    def test_handler_errors_never_hang_the_client(self) -> None:
        """A handler that raises lets the waiting client go with no answer, and keeps serving."""
        calls: list[bytes] = []

        def broken(body: bytes) -> bytes:
            calls.append(body)
            raise RuntimeError("bug")

        server = ReportServer(lambda: broken)
        try:
            assert ask(server.channel, {"n": 1}) is None
            assert ask(server.channel, {"n": 2}) is None
        finally:
            server.close()
        assert 2 == len(calls)

    def test_close_removes_the_socket(self, server: ReportServer) -> None:
        """Closing the server removes its socket and directory."""
        server.close()

        assert not os.path.exists(os.path.dirname(server.channel.address))  # noqa: PTH110, PTH120


class TestSend:
    def test_a_full_listen_queue_is_waited_out(self, tmp_path: Any) -> None:
        """AF_UNIX refuses a connect at once while the queue is full: send() retries it."""
        address = str(tmp_path / "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen(0)
        queued = []
        while True:  # fill the listen queue
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.setblocking(False)
            try:
                client.connect(address)
            except BlockingIOError:
                client.close()
                break
            queued.append(client)
        sent = threading.Thread(
            target=send,
            args=(Channel(address, "t" * 32), encode_frame({"n": 1})),
            kwargs={"await_reply": False, "timeout": 10},
        )
        sent.start()
        sent.join(timeout=0.5)  # the queue stays full meanwhile: a sender that gives up is done
        for client in queued:  # still queued until accepted; they will read as closed
            client.close()
        received = b""
        with listener, contextlib.suppress(TimeoutError):
            listener.settimeout(5)
            while not received:  # accept the queue until the sender's connection arrives
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(10)
                    received = conn.recv(1 << 16)
        sent.join(timeout=10)

        assert received.startswith(b"t" * 32)

    def test_an_unreachable_main_process_returns_none_at_once(self, tmp_path: Any) -> None:
        """A worker whose main process is gone carries on without a verdict."""
        started = time.monotonic()

        assert send(Channel(str(tmp_path / "gone"), "t"), b"", await_reply=True) is None
        assert time.monotonic() - started < 1.0


def test_the_interpreter_exits_promptly_after_monitoring() -> None:
    """Background threads and sockets never hold up the end of a training script."""
    script = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, {tests!r})
        import seedwatch, seedwatch._proxy
        from pipelines import HoldsGenerator, load
        ds = seedwatch.monitor(HoldsGenerator())
        load(ds, epochs=2)
        print(os.path.dirname(seedwatch._proxy.monitor_of(ds).channel().address))
        """
    ).format(tests=os.path.dirname(__file__))  # noqa: PTH120
    started = time.monotonic()

    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert time.monotonic() - started < 60
    socket_dir = result.stdout.strip().splitlines()[-1]
    assert not os.path.exists(socket_dir)  # noqa: PTH110
