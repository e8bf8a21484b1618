"""
Hostile input: a broken or hostile neighbour never changes the verdict or stalls training.

Each test reproduces one attack on real processes and real sockets, and is
bounded in time. The attackers live in ``hostile_peers.py``; the strict runs
use a real DataLoader over a dataset whose workers truly repeat a stream.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from torch.utils.data import DataLoader

import seedwatch
from hostile_peers import peer_args
from judgement_pipelines import RareAugment
from pipelines import START_METHODS, HoldsGenerator, load
from seedwatch import _socket_dirs, _transport
from seedwatch._errors import VerdictUnavailableError
from seedwatch._proxy import monitor_of
from seedwatch._transport import MAX_PEERS, Channel, ReportServer, send
from seedwatch._wire import encode_frame

TESTS = Path(__file__).parent
Attacker = Callable[..., subprocess.Popen[str]]


@pytest.fixture(name="attacker")
def _attacker() -> Iterator[Attacker]:
    """Start a hostile peer (see hostile_peers.py) against a channel; return once it is at work."""
    started: list[subprocess.Popen[str]] = []

    def start(kind: str, channel: Channel, count: int = 0) -> subprocess.Popen[str]:
        peer = subprocess.Popen(
            [sys.executable, str(TESTS / "hostile_peers.py"), kind, *peer_args(channel, count)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(peer)
        assert peer.stdout is not None
        assert "ready" == peer.stdout.readline().strip()
        return peer

    yield start
    for peer in started:
        peer.kill()
        peer.wait(timeout=30)


def strict_channel(dataset: Any) -> tuple[Any, Channel]:
    """A strict monitor over ``dataset`` and its channel, listening before any worker starts."""
    monitored = seedwatch.monitor(dataset, strict=True)
    monitor = monitor_of(monitored)
    assert monitor is not None
    channel = monitor.channel(listen=True)
    assert channel is not None
    return monitored, channel


def events(logs: Sequence[Mapping[str, Any]], name: str) -> int:
    return sum(log["event"] == name for log in logs)


class TestListener:
    def test_a_flood_without_the_token_neither_silences_strict_nor_stalls_the_loop(
        self, attacker: Attacker
    ) -> None:
        """Garbage as fast as a process can send it: the duplicate raises, promptly, one line."""
        monitored, channel = strict_channel(HoldsGenerator("numpy_generator"))
        attacker("garbage", channel)
        started = time.monotonic()

        with capture_logs() as logs, pytest.raises(seedwatch.DuplicateStreamError):
            load(monitored, epochs=1)

        assert time.monotonic() - started < 20
        assert events(logs, "seedwatch_bad_token") <= 2

    @pytest.mark.parametrize("family", ["unix", "tcp"])
    def test_a_connection_flood_never_hides_a_report(
        self, attacker: Attacker, monkeypatch: pytest.MonkeyPatch, family: str
    ) -> None:
        """Thousands of connections queued before the workers': every report is still read."""
        monkeypatch.setenv(_transport.TRANSPORT_ENV_VAR, family)
        monitored = seedwatch.monitor(HoldsGenerator("numpy_generator"))
        channel = monitor_of(monitored).channel(listen=True)  # type: ignore[union-attr]
        assert channel is not None
        attacker("connect", channel, 500)

        load(monitored, epochs=1)
        found = seedwatch.findings(monitored)

        assert (["workers"], 2) == ([f.kind for f in found], found.observed.processes)

    def test_a_connection_flood_never_silences_a_duplicate_drawn_at_exit(
        self, attacker: Attacker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An exiting worker's note waits until judged: strict still raises in its epoch."""
        monkeypatch.setenv(_transport.TRANSPORT_ENV_VAR, "tcp")
        loader = seedwatch.monitor(DataLoader(RareAugment(), num_workers=2), strict=True)
        channel = monitor_of(loader.dataset).channel(listen=True)  # type: ignore[union-attr]
        assert channel is not None
        attacker("connect", channel, 500)

        with pytest.raises(seedwatch.DuplicateStreamError, match="rng"):
            for _ in loader:
                pass

    def test_verdicts_nobody_reads_never_block_the_verdict_or_findings(
        self, attacker: Attacker
    ) -> None:
        """2,000 strict requests whose answers are never read: judging and findings() go on."""
        monitored, channel = strict_channel(HoldsGenerator("numpy_generator"))
        attacker("unread", channel, 200)

        with pytest.raises(seedwatch.DuplicateStreamError):
            load(monitored, epochs=1)
        started = time.monotonic()
        found = seedwatch.findings(monitored)

        assert time.monotonic() - started < 5
        assert "rng" in {finding.source for finding in found}

    def test_an_oversized_frame_is_refused_at_its_header(self) -> None:
        """A header announcing 100 MB closes the connection before any of the body is read."""
        server = ReportServer(lambda: lambda body: None)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(server.channel.address)
                sock.sendall(server.channel.token.encode() + struct.pack("!I", 100 << 20))
                with pytest.raises((BrokenPipeError, ConnectionResetError)):
                    sock.sendall(b"x" * (16 << 20))
            server.drain()
            assert 0 == server.peers
        finally:
            server.close()

    def test_half_sent_frames_never_crowd_out_a_worker_and_expire(
        self, attacker: Attacker, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """1,000 half-sent tokens: at most MAX_PEERS held, a real report still answered."""
        monkeypatch.setattr(_transport, "PEER_TIMEOUT_S", 2.0)
        server = ReportServer(lambda: lambda body: encode_frame({"error": None}))
        try:
            attacker("slowloris", server.channel, 1000)
            started = time.monotonic()

            answer = send(server.channel, encode_frame({"n": 1}), await_reply=True)

            assert answer is not None
            assert time.monotonic() - started < 5
            assert server.peers <= MAX_PEERS
        finally:
            server.close()

    def test_a_half_sent_frame_is_dropped_at_its_deadline(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A connection that never finishes its frame is closed after PEER_TIMEOUT_S."""
        monkeypatch.setattr(_transport, "PEER_TIMEOUT_S", 0.5)
        server = ReportServer(lambda: None)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(server.channel.address)
                sock.sendall(server.channel.token.encode()[:10])
                sock.settimeout(10)
                started = time.monotonic()
                assert b"" == sock.recv(1)  # the server's close, not our timeout
                assert time.monotonic() - started < 5
        finally:
            server.close()

    def test_idle_connections_past_the_fd_limit_never_break_the_loop(self) -> None:
        """1,100 idle connections against ulimit -n 1024: the epoch and findings() survive."""
        result = run_script(
            """
            import resource, subprocess, sys
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
            import seedwatch
            from seedwatch._proxy import monitor_of
            from hostile_peers import peer_args
            from pipelines import HoldsGenerator, load
            ds = seedwatch.monitor(HoldsGenerator("numpy_generator"))
            channel = monitor_of(ds).channel(listen=True)
            peer = subprocess.Popen(
                [sys.executable, "hostile_peers.py", "idle", *peer_args(channel, 1100)],
                stdout=subprocess.PIPE, text=True,
            )
            assert peer.stdout.readline().strip() == "ready"
            load(ds, epochs=2)
            found = seedwatch.findings(ds)
            print("FOUND", [f.kind for f in found], found.observed.processes)
            peer.kill()
            """
        )

        assert "FOUND ['workers'] 4" in result.stdout  # every worker of both epochs was heard
        assert result.stdout.count("seedwatch_") < 10

    def test_out_of_descriptors_the_listener_backs_off_instead_of_spinning(self) -> None:
        """accept() failing with EMFILE pauses accepting: no busy loop, no line per attempt."""
        result = run_script(
            """
            import os, resource, socket, subprocess, sys, threading, time
            from seedwatch._transport import ReportServer
            from hostile_peers import peer_args
            server = ReportServer(lambda: None)
            peer = subprocess.Popen(
                [sys.executable, "hostile_peers.py", "idle", *peer_args(server.channel, 50),
                 "--on-cue"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            room_for_two = len(os.listdir("/proc/self/fd")) + 1  # listdir's own fd is closed
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (room_for_two, hard))
            peer.stdin.write("go\\n")
            peer.stdin.flush()
            assert peer.stdout.readline().strip() == "ready"
            server.drain()
            assert server.peers < 50
            cpu, wall = time.process_time(), time.monotonic()
            threading.Event().wait(1.5)  # a measuring window, not a synchronisation
            print("CPU", (time.process_time() - cpu) / (time.monotonic() - wall))
            peer.kill()
            server.close()
            """
        )

        [cpu] = [float(line.split()[1]) for line in result.stdout.splitlines() if line[:3] == "CPU"]
        assert cpu < 0.3
        assert result.stdout.count("seedwatch_accept_paused") <= 2

    def test_strict_survives_a_broken_stdout_and_unprintable_names(self) -> None:
        """Logs to a closed pipe, a lone surrogate in a name: the strict error is still raised."""
        script = textwrap.dedent(
            """
            import os, subprocess, sys
            import numpy as np
            import seedwatch
            from seedwatch._proxy import monitor_of
            from hostile_peers import peer_args
            from pipelines import HoldsGenerator, load
            base = HoldsGenerator("numpy_generator")
            setattr(base, "rng\\ud800\\n", np.random.default_rng(5))
            ds = seedwatch.monitor(base, strict=True)
            channel = monitor_of(ds).channel(listen=True)
            peer = subprocess.Popen(
                [sys.executable, "hostile_peers.py", "garbage", *peer_args(channel, 0)],
                stdout=subprocess.PIPE,
            )
            peer.stdout.readline()
            try:
                load(ds, epochs=1)
                outcome = "clean"
            except seedwatch.DuplicateStreamError as exc:
                outcome = "raised"
            peer.kill()
            with open(sys.argv[1], "w") as out:
                out.write(outcome)
            """
        )
        outcome_file = TESTS.parent / ".pytest_cache" / f"outcome-{os.getpid()}"
        outcome_file.parent.mkdir(exist_ok=True)
        reader, writer = os.pipe()
        os.close(reader)  # every write to the child's stdout fails with EPIPE
        try:
            result = subprocess.run(
                [sys.executable, "-c", script, str(outcome_file)],
                cwd=TESTS,
                stdout=writer,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
                env={**os.environ, "SEEDWATCH_ANNOUNCE": "both"},
                check=False,
            )
        finally:
            os.close(writer)

        assert "raised" == outcome_file.read_text()
        outcome_file.unlink()
        assert "Exception in thread seedwatch-collector" not in result.stderr


class TestStrictFailsClosed:
    @pytest.mark.parametrize("method", START_METHODS)
    def test_a_duplicate_first_drawn_as_workers_exit_raises_in_the_loop(self, method: str) -> None:
        """A stream drawn only for the last items is judged at exit, and still raises."""
        loader = seedwatch.monitor(
            DataLoader(RareAugment(), num_workers=2, multiprocessing_context=method), strict=True
        )

        with pytest.raises(seedwatch.DuplicateStreamError, match="rng"):
            for _ in loader:
                pass

    def test_a_worker_without_a_verdict_fails_closed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The main process is stuck: the strict worker raises instead of passing unjudged."""
        monkeypatch.setattr(_transport, "CLIENT_TIMEOUT_S", 1.0)  # forked workers inherit it
        monitored, _ = strict_channel(HoldsGenerator("numpy_generator"))
        collector = monitor_of(monitored).collector()  # type: ignore[union-attr]

        with collector._lock, pytest.raises(VerdictUnavailableError, match="no verdict"):  # noqa: SLF001 - a stuck main process
            load(monitored, epochs=1)

        assert "rng" in {finding.source for finding in seedwatch.findings(monitored)}


class TestMessages:
    @pytest.mark.parametrize(
        "report",
        [
            {"pid": -1},
            {"worker": -7},
            {"pid": 10**40},
            {"generation": "x\u202e"},
            {"streams": {"rng\ud800": {"fp": "00000000000000aa", "origin": "x"}}},
        ],
    )
    def test_impossible_fields_are_refused_with_one_line(self, report: dict[str, Any]) -> None:
        """A report with a negative pid, an absurd integer or an unprintable name is not judged."""
        monitored, channel = strict_channel(HoldsGenerator("numpy_generator"))
        base = {"generation": "g", "worker": 0, "pid": 5, "seed": None, "streams": {}}
        frame = encode_frame({"token": channel.token, "await": False, "report": base | report})

        with capture_logs() as logs:
            for _ in range(3):
                send(channel, frame, await_reply=False)
            found = seedwatch.findings(monitored)

        assert 0 == found.observed.processes
        assert 1 == events(logs, "seedwatch_bad_message")


class TestHistoryFile:
    def test_a_fifo_in_place_of_the_history_blocks_nothing(self, tmp_path: Path) -> None:
        """A FIFO with no reader where the history should be: monitoring and judging go on."""
        fifo = tmp_path / "history.jsonl"
        os.mkfifo(fifo)

        result = run_script(
            f"""
            import seedwatch
            from pipelines import HoldsGenerator, load
            ds = seedwatch.monitor(HoldsGenerator("numpy_generator"), history={str(fifo)!r})
            load(ds, epochs=1)
            print("FOUND", [f.kind for f in seedwatch.findings(ds)])
            """,
            timeout=60,
        )

        assert "FOUND ['workers']" in result.stdout
        assert "seedwatch_history_unreadable" in result.stdout


class TestStaleDirectories:
    def test_a_killed_main_process_leaves_a_directory_the_next_monitor_sweeps(
        self, tmp_path: Path
    ) -> None:
        """SIGKILL leaves the socket's directory; the next monitor of the user removes it."""
        listen = """
            import seedwatch, sys
            from seedwatch._proxy import monitor_of
            from pipelines import HoldsGenerator
            ds = seedwatch.monitor(HoldsGenerator("numpy_generator"))
            print(monitor_of(ds).channel(listen=True).address, flush=True)
            {then}
        """
        env = {**os.environ, "TMPDIR": str(tmp_path)}
        victim = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(listen.format(then="sys.stdin.read()"))],
            cwd=TESTS,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert victim.stdout is not None
        stale = Path(victim.stdout.readline().strip()).parent
        victim.kill()
        victim.wait(timeout=30)
        assert stale.exists()

        run_script(listen.format(then=""), env=env)

        assert not stale.exists()

    def test_only_this_users_directories_of_dead_processes_are_swept(self, tmp_path: Path) -> None:
        """A live process's directory, and names that are not seedwatch's, are kept."""
        gone = tmp_path / f"seedwatch-{dead_pid()}-abc"
        alive = tmp_path / f"seedwatch-{os.getpid()}-abc"
        other = tmp_path / "seedwatch-notapid"
        for directory in (gone, alive, other):
            directory.mkdir()

        removed = _socket_dirs.sweep_stale(tmp_path)

        assert [gone] == removed
        assert (False, True, True) == (gone.exists(), alive.exists(), other.exists())

    def test_a_directory_whose_socket_answers_is_kept_whatever_its_pid(
        self, tmp_path: Path
    ) -> None:
        """A server in another PID namespace has a pid this process cannot see: still live."""
        elsewhere = tmp_path / f"seedwatch-{dead_pid()}-abc"
        elsewhere.mkdir()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(elsewhere / _socket_dirs.SOCKET_NAME))
            server.listen()

            assert [] == _socket_dirs.sweep_stale(tmp_path)
        assert elsewhere.exists()


class TestPortableTransport:
    @pytest.mark.parametrize("method", START_METHODS)
    def test_loopback_tcp_carries_reports_and_verdicts(
        self, method: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The transport Windows uses, forced here: strict still raises under every start method."""
        monkeypatch.setenv(_transport.TRANSPORT_ENV_VAR, "tcp")
        monitored, channel = strict_channel(HoldsGenerator("numpy_generator"))

        with pytest.raises(seedwatch.DuplicateStreamError, match="rng"):
            load(monitored, epochs=1, method=method)

        assert "tcp" == channel.family


@pytest.mark.skipif(
    not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to be another user"
)
class TestAnotherUser:
    """The threat model's first line, measured: a process of another user can do nothing."""

    def test_cannot_connect_to_the_unix_socket(self) -> None:
        _, channel = strict_channel(HoldsGenerator("numpy_generator"))

        outcome = as_nobody(f"s = socket.socket(socket.AF_UNIX); s.connect({channel.address!r})")

        assert "PermissionError" in outcome

    def test_over_tcp_is_dropped_without_the_token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(_transport.TRANSPORT_ENV_VAR, "tcp")
        monitored, channel = strict_channel(HoldsGenerator("numpy_generator"))
        host, _, port = channel.address.rpartition(":")
        report = {"generation": "g", "worker": 0, "pid": 5, "seed": None, "streams": {}}
        frame = encode_frame({"token": "guess", "await": True, "report": report})

        guess = b"0" * 32 + frame
        outcome = as_nobody(
            f"s = socket.create_connection(({host!r}, {port})); s.sendall({guess!r}); "
            "print('ANSWER' if s.recv(1) else 'DROPPED')"
        )

        assert "ANSWER" not in outcome
        assert "DROPPED" in outcome or "ConnectionResetError" in outcome
        assert 0 == seedwatch.findings(monitored).observed.processes


def dead_pid() -> int:
    """The process id of a process that has exited."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def as_nobody(code: str) -> str:
    """Run ``code`` as user ``nobody`` (socket imported first, as root); return its output."""
    dropped = f"import encodings.idna, os, socket; os.setgid(65534); os.setuid(65534); {code}"
    result = subprocess.run(
        [sys.executable, "-I", "-c", dropped],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout + result.stderr


def run_script(
    code: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in tests/, bounded in time; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(code)],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    return result
