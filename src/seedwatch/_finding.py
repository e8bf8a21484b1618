"""What seedwatch reports: who shared which stream, and how to fix it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Kind = Literal["workers", "epochs", "resume", "ranks", "overlap"]

#: The order kinds are listed in: the most common problem first.
KINDS: tuple[Kind, ...] = ("workers", "epochs", "resume", "ranks", "overlap")


@dataclass(frozen=True, slots=True)
class Member:
    """
    One process that drew a stream.

    ``generation`` counts worker generations in the order the main process first
    heard of them: without persistent workers, every ``iter(loader)`` starts a new
    generation, so it is the epoch for a single loader. ``worker`` is the DataLoader
    worker id, ``None`` for a fetch in the main process (``num_workers=0``).
    ``seed`` is the seed PyTorch gave that worker (``get_worker_info().seed``).
    ``resumed``: its loader restored a saved state. ``run`` names an earlier run
    of the job, read from the history file (``""``: this run).
    """

    generation: int
    worker: int | None
    pid: int
    rank: int | None = None
    seed: int | None = None
    resumed: bool = False
    run: str = ""

    def sort_key(self) -> tuple[int, int, int, int]:
        """Order by rank, generation, then worker, the main process first."""
        rank = -1 if self.rank is None else self.rank
        worker = -1 if self.worker is None else self.worker
        return (rank, self.generation, worker, self.pid)

    def describe(self) -> str:
        """Return a short human-readable label, like ``gen 1 worker 0 (pid 4242)``."""
        who = "main process" if self.worker is None else f"worker {self.worker}"
        rank = "" if self.rank is None else f"rank {self.rank} "
        run = f"run {self.run} " if self.run else ""
        resumed = " resumed" if self.resumed else ""
        return f"{run}{rank}gen {self.generation}{resumed} {who} (pid {self.pid})"

    def as_dict(self) -> dict[str, int | str | bool | None]:
        """Return plain data for logs and JSON."""
        return {
            "generation": self.generation,
            "worker": self.worker,
            "pid": self.pid,
            "rank": self.rank,
            "seed": self.seed,
            "resumed": self.resumed,
            "run": self.run,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """
    One problem: streams that repeat where they should differ, with its cause and fix.

    ``sources`` name every generator in it: the paths that reach one generator
    object, and the generators of one owner (an albumentations ``Compose`` and
    its children) or the process globals that repeat for one reason, which the
    same fix mends. ``kinds`` say where the streams repeat:

    - ``"workers"``: processes of one generation (the workers of one epoch);
    - ``"epochs"``: different generations (the stream repeats every epoch);
    - ``"resume"``: a loader that restored a saved state (or a restarted job)
      replays draws made before;
    - ``"ranks"``: distributed ranks;
    - ``"overlap"``: one process's stream is another's, ``offset`` draws ahead.

    ``members`` lists every process that drew them. ``used`` is false for a
    latent duplicate, one nobody drew from while serving items: not a finding
    until it is drawn from, listed only when asked for.
    """

    sources: tuple[str, ...]
    kinds: tuple[Kind, ...]
    members: tuple[Member, ...]
    fingerprints: tuple[str, ...]
    hint: str
    #: Who holds the generators, as the user finds it (``"albumentations Compose at 't'"``).
    owner: str = ""
    used: bool = True
    #: For an overlap: how many draws one stream is ahead of the other.
    offset: int = 0

    @property
    def source(self) -> str:
        """The first of :attr:`sources`, the one a person looks at first."""
        return self.sources[0]

    @property
    def kind(self) -> Kind:
        """The first of :attr:`kinds`, in the order of :data:`KINDS`."""
        return self.kinds[0]

    @property
    def fingerprint(self) -> str:
        """The first of :attr:`fingerprints`."""
        return self.fingerprints[0]

    def describe(self) -> str:
        """Return one readable line: what repeats, where, and who drew it."""
        who = ", ".join(member.describe() for member in self.members)
        return f"{self.what()} repeats across {self.where()}: {who}"

    def what(self) -> str:
        """Name the generators: ``'rng'``, or ``'t.random_generator' and 19 more (owner)``."""
        name = repr(self.source)
        if len(self.sources) > 1:
            name += f" and {len(self.sources) - 1} more"
        return f"{name} ({self.owner})" if self.owner else name

    def where(self) -> str:
        """Say where the streams repeat: ``workers and epochs``, ``overlap (3 draws ahead)``."""
        kinds: list[str] = list(self.kinds)
        if self.offset:
            ahead = f"overlap ({counted(self.offset, 'draw')} ahead)"
            kinds = [ahead if k == "overlap" else k for k in kinds]
        return " and ".join(kinds)

    def as_dict(self) -> dict[str, object]:
        """Return plain data: the keys of the ``duplicate_rng_stream`` log event."""
        return {
            "source": self.source,
            "sources": list(self.sources),
            "kind": self.kind,
            "kinds": list(self.kinds),
            "owner": self.owner,
            "members": [member.as_dict() for member in self.members],
            "fingerprint": self.fingerprint,
            "fingerprints": list(self.fingerprints),
            "used": self.used,
            "offset": self.offset,
            "hint": self.hint,
        }


@dataclass(frozen=True, slots=True)
class Observed:
    """
    What a monitor has seen, so a clean result says how much it checked.

    ``processes`` reported (workers, and the main process for fetches without
    workers), in ``generations`` (epochs, for a loader without persistent
    workers); ``most_workers``: the most workers that fetched in one generation;
    ``ranks``: the ranks heard of (0 when not distributed); ``resumed``: a
    loader resumed a saved state.
    """

    processes: int = 0
    generations: int = 0
    most_workers: int = 0
    ranks: int = 0
    resumed: bool = False

    def can_see(self) -> tuple[Kind, ...]:
        """Return the kinds of repetition this much observation could reveal."""
        kinds: list[Kind] = []
        if self.most_workers >= 2:
            kinds.append("workers")
        if self.generations >= 2:
            kinds.append("epochs")
        if self.ranks >= 2:
            kinds.append("ranks")
        return tuple(kinds)

    def describe(self) -> str:
        """Return one line: ``checked 4 processes: 2 epochs, up to 2 workers per epoch``."""
        ranks = f", {counted(self.ranks, 'rank')}" if self.ranks else ""
        workers = (
            f"up to {counted(self.most_workers, 'worker')} per epoch"
            if self.most_workers
            else "in the main process"
        )
        return (
            f"checked {counted(self.processes, 'process', 'processes')}: "
            f"{counted(self.generations, 'epoch')}, {workers}{ranks}"
        )

    def as_dict(self) -> dict[str, int | bool]:
        """Return plain data for JSON."""
        return {
            "processes": self.processes,
            "generations": self.generations,
            "most_workers": self.most_workers,
            "ranks": self.ranks,
            "resumed": self.resumed,
        }


def counted(number: int, one: str, many: str | None = None) -> str:
    """``1 epoch``, ``2 epochs``; ``many`` for an irregular plural (``processes``)."""
    return f"{number} {one if number == 1 else (many or one + 's')}"


class Findings(list[Finding]):
    """
    A monitor's findings: a plain list, plus what was observed and what is latent.

    ``observed`` says how much was checked, so an empty list can be told apart
    from an empty check; ``latent`` lists duplicate streams nobody drew from
    while serving items (not problems until someone does).
    """

    def __init__(
        self,
        found: Iterable[Finding] = (),
        observed: Observed | None = None,
        latent: Iterable[Finding] = (),
    ) -> None:
        super().__init__(found)
        self.observed = Observed() if observed is None else observed
        self.latent = tuple(latent)
