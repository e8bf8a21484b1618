"""
The private directories that hold the main process's socket: made 0700, swept when stale.

A directory is named ``seedwatch-<pid>-<random>`` after the process that made
it, which removes it when it closes or exits. A process killed by SIGKILL, or
by a SIGTERM with the default disposition, cannot: its directory outlives it,
holding one empty socket file. The next monitor started by the same user
removes such directories whose process is gone and whose socket no longer
answers.

There is deliberately no SIGTERM handler: a Python-level handler runs only
when the main thread next executes Python code, so a job stuck in native code
(a collective that hangs, a blocking C call) would no longer die on SIGTERM.
Leaving an empty directory behind is the lesser harm.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path

PREFIX = "seedwatch-"
#: The socket's name inside its directory.
SOCKET_NAME = "s"

_swept = threading.Event()


def make_private_directory() -> str:
    """Return a new 0700 directory for this process's socket, after sweeping stale ones once."""
    if not _swept.is_set() and os.name == "posix":  # os.kill(pid, 0) kills on Windows
        _swept.set()
        sweep_stale(Path(tempfile.gettempdir()))
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")


def remove(directory: str) -> None:
    """Remove a directory made by :func:`make_private_directory`; errors are ignored."""
    shutil.rmtree(directory, ignore_errors=True)


def sweep_stale(parent: Path) -> list[Path]:
    """
    Remove this user's seedwatch directories in ``parent`` whose process no longer exists.

    Returns what was removed. Another user's directories, and those of a
    live process (or of a process whose pid has been reused), are left alone.
    """
    removed = []
    with contextlib.suppress(OSError), os.scandir(parent) as entries:
        for entry in entries:
            pid = _owner_pid(entry.name)
            if pid is None or _alive(pid) or not _mine(entry) or _listening(entry.path):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _owner_pid(name: str) -> int | None:
    if not name.startswith(PREFIX):
        return None
    pid, _, rest = name[len(PREFIX) :].partition("-")
    return int(pid) if pid.isdigit() and rest and int(pid) > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's (EPERM), or the check is unsupported
        return True
    return True


def _listening(directory: str) -> bool:
    """
    Whether a server still answers on the directory's socket.

    A process id alone is no proof of death: a process in another PID namespace
    (a container sharing this temp dir) has an id this one cannot see.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(os.path.join(directory, SOCKET_NAME))  # noqa: PTH118
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except OSError:
            return True  # cannot tell: leave it
    return True


def _mine(entry: os.DirEntry[str]) -> bool:
    try:
        stat = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    getuid = getattr(os, "getuid", None)
    return entry.is_dir(follow_symlinks=False) and (getuid is None or stat.st_uid == getuid())
