"""What seedwatch reports: who shared which stream, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["workers", "epochs", "ranks"]


@dataclass(frozen=True, slots=True)
class Member:
    """
    One process that drew a stream.

    ``generation`` counts worker generations in the order the main process first
    heard of them: without persistent workers, every ``iter(loader)`` starts a new
    generation, so it is the epoch for a single loader. ``worker`` is the DataLoader
    worker id, ``None`` for a fetch in the main process (``num_workers=0``).
    ``seed`` is the seed PyTorch gave that worker (``get_worker_info().seed``).
    """

    generation: int
    worker: int | None
    pid: int
    rank: int | None = None
    seed: int | None = None

    def sort_key(self) -> tuple[int, int, int, int]:
        """Order by rank, generation, then worker, the main process first."""
        rank = -1 if self.rank is None else self.rank
        worker = -1 if self.worker is None else self.worker
        return (rank, self.generation, worker, self.pid)

    def describe(self) -> str:
        """Return a short human-readable label, like ``gen 1 worker 0 (pid 4242)``."""
        who = "main process" if self.worker is None else f"worker {self.worker}"
        rank = "" if self.rank is None else f"rank {self.rank} "
        return f"{rank}gen {self.generation} {who} (pid {self.pid})"

    def as_dict(self) -> dict[str, int | None]:
        """Return plain data for logs and JSON."""
        return {
            "generation": self.generation,
            "worker": self.worker,
            "pid": self.pid,
            "rank": self.rank,
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """
    A set of equal streams of one source.

    ``kind`` is ``"workers"`` when processes of one generation share the stream,
    ``"epochs"`` when different generations do (the stream repeats every epoch),
    and ``"ranks"`` across distributed ranks. One group of k equal streams gives
    one finding per kind, never k² pairs; ``members`` lists every process in it.
    """

    source: str
    kind: Kind
    members: tuple[Member, ...]
    fingerprint: str
    hint: str

    def describe(self) -> str:
        """Return one readable line: the source, the kind and who shares the stream."""
        who = ", ".join(member.describe() for member in self.members)
        return f"{self.source!r} repeats across {self.kind}: {who} drew stream {self.fingerprint}"

    def as_dict(self) -> dict[str, object]:
        """Return plain data: the keys of the ``duplicate_rng_stream`` log event."""
        return {
            "source": self.source,
            "kind": self.kind,
            "members": [member.as_dict() for member in self.members],
            "fingerprint": self.fingerprint,
            "hint": self.hint,
        }
