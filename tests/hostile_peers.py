"""
Hostile and broken peers of a monitor's channel, each run as a process of its own.

    python hostile_peers.py KIND FAMILY ADDRESS TOKEN COUNT [--on-cue]

prints ``ready`` once its harm is in place, then keeps it up until killed
(with ``--on-cue``, it starts when a line arrives on its stdin):

- ``garbage``: connection after connection of 6-byte frames, without the token;
- ``connect``: connection after connection that sends nothing, COUNT held at a
  time (the oldest closed), so thousands wait to be accepted;
- ``unread``: COUNT connections, each sending ten strict requests with the token
  back to back, never reading a verdict;
- ``slowloris``: COUNT connections that each send half the token, then nothing;
- ``idle``: COUNT connections that send nothing at all.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import struct
import sys
import time
from typing import Any


def peer_args(channel: Any, count: int) -> list[str]:
    """A peer's command-line arguments after its kind, to attack ``channel``."""
    return [channel.family, channel.address, channel.token, str(count)]


def connect(family: str, address: str) -> socket.socket:
    if family == "tcp":
        host, _, port = address.rpartition(":")
        return socket.create_connection((host, int(port)))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    return sock


def frame(message: object) -> bytes:
    body = json.dumps(message).encode()
    return struct.pack("!I", len(body)) + body


def request(token: str, number: int) -> bytes:
    stream = {"fp": f"{number:016x}", "origin": "np.random.Generator(PCG64)", "place": "attribute"}
    report = {
        "generation": f"attacker:{number}",
        "worker": 0,
        "pid": 1_000_000 + number,
        "seed": None,
        "rank": None,
        "streams": {"attacker.rng": stream},
        "later": {},
    }
    return token.encode() + frame({"token": token, "await": True, "report": report})


def connect_forever(family: str, address: str, held: int) -> None:
    """Open connections that send nothing, as fast as possible, keeping ``held`` open."""
    ring: list[socket.socket] = []
    ready = False
    while True:
        with contextlib.suppress(OSError):
            ring.append(connect(family, address))
        if len(ring) > held:
            ring.pop(0).close()
        if not ready and len(ring) >= held:
            print("ready", flush=True)  # noqa: T201 - tells the test it is at work
            ready = True


def main() -> None:
    kind, family, address, token, count = sys.argv[1:6]
    if "--on-cue" in sys.argv:
        sys.stdin.readline()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    if kind == "garbage":
        ready = False
        while True:
            with contextlib.suppress(OSError), connect(family, address) as sock:
                sock.sendall(b"\x00\x00\x00\x02{}" * 50_000)
            if not ready:
                print("ready", flush=True)  # noqa: T201 - tells the test it is at work
                ready = True
    if kind == "connect":
        connect_forever(family, address, int(count))
    for number in range(int(count)):
        sock = connect(family, address)
        if kind == "unread":
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.sendall(b"".join(request(token, number * 10 + k) for k in range(10)))
        elif kind == "slowloris":
            sock.sendall(token.encode()[:16])
        held.append(sock)
    print("ready", flush=True)  # noqa: T201 - tells the test it is at work
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
