from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from seedwatch._transport import MAX_FRAME, Channel, ReportServer, encode_frame, send


class Recorder:
    def __init__(self, reply: dict[str, Any] | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reply = reply

    def __call__(self, message: dict[str, Any]) -> dict[str, Any] | None:
        self.messages.append(message)
        return self.reply


@pytest.fixture(name="recorder")
def _recorder() -> Recorder:
    return Recorder({"error": None})


@pytest.fixture(name="server")
def _server(recorder: Recorder) -> Any:
    server = ReportServer(lambda: recorder)
    yield server
    server.close()


def raw_send(channel: Channel, payload: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(channel.address)
        sock.sendall(payload)


class TestReportServer:
    def test_a_sent_message_is_handled_by_the_next_drain(
        self, server: ReportServer, recorder: Recorder
    ) -> None:
        """Once send() returns, drain() has the message: no sleeps, no races."""
        for number in range(10):
            send(server.channel, {"n": number}, await_reply=False)
            server.drain()
            assert number == recorder.messages[-1]["n"]

    def test_awaiting_clients_get_the_handlers_reply(
        self, server: ReportServer, recorder: Recorder
    ) -> None:
        """A strict client reads the handler's answer."""
        recorder.reply = {"error": "duplicate"}

        assert {"error": "duplicate"} == send(server.channel, {"n": 1}, await_reply=True)

    def test_messages_with_the_wrong_token_are_dropped(
        self, server: ReportServer, recorder: Recorder
    ) -> None:
        """Only holders of the monitor's token are heard."""
        send(Channel(server.channel.address, "forged"), {"n": 1}, await_reply=False)
        server.drain()

        assert [] == recorder.messages

    @pytest.mark.parametrize(
        "payload",
        [
            b"\x00\x00\x00\x05nope!",
            struct.pack("!I", MAX_FRAME + 1) + b"x",
            encode_frame({"token": 3})[:-1] + b"}",
            b"\xff",
        ],
        ids=["not-json", "oversized", "wrong-token-type", "truncated"],
    )
    def test_garbage_never_stops_the_server(
        self, server: ReportServer, recorder: Recorder, payload: bytes
    ) -> None:
        """Malformed frames are dropped and the next good message still arrives."""
        raw_send(server.channel, payload)
        send(server.channel, {"n": "after"}, await_reply=True)

        assert [{"token": server.channel.token, "await": True, "n": "after"}] == [
            m for m in recorder.messages if m.get("n") == "after"
        ]

    def test_handler_errors_answer_clean(self, server: ReportServer, recorder: Recorder) -> None:
        """A handler that raises gives the client an empty answer, not a hang."""

        def broken(_message: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("bug")

        server._handler = lambda: broken

        assert {} == send(server.channel, {"n": 1}, await_reply=True)

    def test_close_removes_the_socket(self, server: ReportServer) -> None:
        """Closing the server removes its socket and directory."""
        server.close()

        assert not os.path.exists(os.path.dirname(server.channel.address))  # noqa: PTH110, PTH120


class TestSend:
    def test_an_unreachable_main_process_returns_none_at_once(self, tmp_path: Any) -> None:
        """A worker whose main process is gone carries on without a verdict."""
        started = time.monotonic()

        assert send(Channel(str(tmp_path / "gone"), "t"), {}, await_reply=True) is None
        assert time.monotonic() - started < 1.0

    def test_frames_are_length_prefixed_json(self) -> None:
        """The wire format is a 4-byte big-endian length and a JSON object."""
        frame = encode_frame({"a": 1})

        assert (len(frame) - 4, {"a": 1}) == (
            struct.unpack("!I", frame[:4])[0],
            json.loads(frame[4:]),
        )


def test_the_interpreter_exits_promptly_after_monitoring() -> None:
    """Background threads and sockets never hold up the end of a training script."""
    script = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, {tests!r})
        import seedwatch
        from pipelines import HoldsGenerator, load
        ds = seedwatch.monitor(HoldsGenerator())
        load(ds, epochs=2)
        print(os.path.dirname(ds._self_collector.channel.address))
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
