"""
Judgement: which reported streams are equal, what kind of repetition that is, and which problem.

Pure bookkeeping with no processes or threads, so it is tested by feeding it
reports. Not thread-safe; the collector serialises calls.

Two steps. Streams are grouped by source and fingerprint: a group is every
process that drew one stream of one source. Groups are then gathered into
findings, one per problem: the groups of one owner (every generator inside an
albumentations ``Compose``; the process globals) that repeat in the same ways
are one problem with one fix, and one finding lists every kind of repetition
that applies. A problem is announced once, when first found. Only streams a
process drew from while serving items are judged; the rest are latent, listed
only on request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from seedwatch._finding import KINDS, Finding, Kind, Member, Observed
from seedwatch._hints import (
    SHARED_ACROSS_WORKERS,
    Evidence,
    has_library_fix,
    hint_for,
    owner_label,
)
from seedwatch._report import OVERLAP_SPAN, RESEEDED_GLOBAL, Report, Stream

#: How many overlap windows the ledger indexes at most: beyond it, overlaps go unseen.
MAX_WINDOWS = 200_000


@dataclass(slots=True)
class _Group:
    """Processes that drew one stream of one source: this rank's, and others' it heard of."""

    members: list[Member]
    #: How many processes on other ranks drew the stream, and the ones known by name.
    elsewhere: int = 0
    remote: dict[tuple[int | None, int, int | None, int], Member] = field(default_factory=dict)
    #: Processes of earlier runs that drew it (from the history file).
    past: Sequence[Member] = ()
    #: This rank's members that drew from it while serving items.
    users: set[Member] = field(default_factory=set)

    def kinds(self) -> list[Kind]:
        """
        Say how the stream repeats among the processes that drew from it.

        A latent stream (nobody drew) is described by everyone who holds it.
        """
        members = [m for m in self.members if m in self.users] if self.users else self.members
        generations = [member.generation for member in members]
        kinds: list[Kind] = []
        if len(set(generations)) < len(generations):
            kinds.append("workers")
        if len({m.generation for m in members if not m.resumed}) > 1:
            kinds.append("epochs")
        if (self.past and members) or (
            len(set(generations)) > 1 and any(m.resumed for m in members)
        ):
            kinds.append("resume")
        if self.elsewhere and members:
            kinds.append("ranks")
        return kinds

    def everyone(self, kinds: Iterable[Kind]) -> list[Member]:
        """Return the members, with other ranks' and earlier runs' where those repeat it."""
        remote = list(self.remote.values()) if "ranks" in kinds else []
        return [*self.members, *remote, *self.past]


@dataclass(frozen=True)
class Recorded:
    """What one report changed: findings to announce, the reporter's verdict, streams to share."""

    new: list[Finding]
    involving: list[Finding]
    streams: list[tuple[str, str, Member]]
    #: Latent duplicates seen for the first time (for a debug event).
    latent: list[Finding] = field(default_factory=list)


class _Book:
    """The streams of one look (before or after a process's first item), by source and fp."""

    __slots__ = ("kinds", "streams", "used")

    def __init__(self) -> None:
        self.streams: dict[str, dict[int, Member | _Group]] = {}
        #: What each source is (its origin, place and owner), for grouping and hints.
        self.kinds: dict[str, Stream] = {}
        #: The (source, fingerprint) pairs some process drew from while serving items.
        self.used: set[tuple[str, int]] = set()

    def add(
        self, source: str, stream: Stream, key: int, member: Member
    ) -> tuple[_Group | Member | None, bool]:
        """
        Add a member's stream; return its entry, and whether the member newly drew from it.

        The entry is ``None`` if the member had the stream already and still has not
        drawn from it. A member reports a stream again when it drew from it late (an
        exiting worker's note).
        """
        self.kinds.setdefault(source, stream)
        streams = self.streams.setdefault(source, {})
        entry = streams.get(key)
        if entry is None:
            streams[key] = member
            if stream.used:
                self.used.add((source, key))
            return member, stream.used
        known = entry == member or (isinstance(entry, _Group) and member in entry.members)
        if not known:
            if isinstance(entry, Member):
                entry = streams[key] = self.group_of(source, key, entry)
            entry.members.append(member)
        newly_used = stream.used and not self.drew(source, key, member)
        if newly_used:
            self.used.add((source, key))
            if isinstance(entry, _Group):
                entry.users.add(member)
        return (entry if not known or newly_used else None), newly_used

    def group_of(self, source: str, key: int, member: Member) -> _Group:
        """Turn a one-member entry into a group, keeping whether that member drew from it."""
        return _Group([member], users={member} if (source, key) in self.used else set())

    def drew(self, source: str, key: int, member: Member) -> bool:
        """Whether ``member`` drew from the stream."""
        entry = self.streams.get(source, {}).get(key)
        if isinstance(entry, _Group):
            return member in entry.users
        return entry == member and (source, key) in self.used

    def entry(self, source: str, key: int) -> _Group | None:
        """Return the stream's group, making one of a lone member; ``None`` if unknown."""
        streams = self.streams.get(source, {})
        entry = streams.get(key)
        if isinstance(entry, Member):
            entry = streams[key] = self.group_of(source, key, entry)
        return entry

    def groups(self, source: str) -> Iterable[tuple[int, _Group]]:
        """Return the source's streams that more than one process drew."""
        return (
            (key, entry)
            for key, entry in self.streams.get(source, {}).items()
            if isinstance(entry, _Group)
        )


@dataclass(frozen=True)
class _Candidate:
    """One repeating stream, before it is gathered into a finding with others of its problem."""

    later: bool
    source: str
    key: int
    group: _Group
    kinds: tuple[Kind, ...]
    used: bool


@dataclass(slots=True)
class _Overlap:
    """Processes whose streams of one source are the same, some draws apart."""

    members: set[Member] = field(default_factory=set)
    fingerprints: set[str] = field(default_factory=set)
    offset: int = 0


class StreamLedger:
    """
    Every stream reported so far, grouped by source and fingerprint, judged as problems.

    A source named in ``expect_shared`` is recorded but never reported. A process
    that reports the same stream twice (two copies of a monitored dataset in one
    process) counts once, so a process's global generator is never its own
    duplicate. Streams of other ranks arrive through :meth:`merge_remote`.

    Streams seen after a process's first item (``Report.later``) are kept in a
    book of their own, and judged only where they say something new: a repeat
    whose processes already share the source's stream from before the first
    item (a constant ``worker_init_fn`` seed) is the same problem, found once.

    Memory is what a long run pays for: a stream drawn by one process (the
    common, healthy case) costs one dict entry keyed by its 64-bit fingerprint,
    pointing at the reporter's :class:`Member`, which all its sources share,
    plus a bounded number of overlap windows.
    """

    def __init__(
        self,
        expect_shared: Iterable[str] = (),
        past: Mapping[tuple[str, str], Sequence[Member]] | None = None,
    ) -> None:
        self._expect_shared = frozenset(expect_shared)
        #: Streams earlier runs drew, by (source, fingerprint): a replay is a resume.
        self._past = past or {}
        self._generations: dict[str, int] = {}
        self._first = _Book()
        self._later = _Book()
        #: What was announced: each problem's identity, as ``"used"`` or ``"latent"``.
        self._announced: set[tuple[Hashable, str]] = set()
        self._members: set[Member] = set()
        self._ranks: set[int] = set()
        #: Overlap windows: the first two draws of each stream, and its windows further on.
        self._heads: dict[str, list[tuple[str, Member, str]]] = {}
        self._windows: dict[str, list[tuple[str, Member, str, int]]] = {}
        self._indexed = 0
        #: Overlaps by (seen after the first item, source).
        self._overlaps: dict[tuple[bool, str], _Overlap] = {}

    def record(self, report: Report) -> Recorded:
        """Add a report; say which findings are new, which involve it, which streams to share."""
        generation = self._generations.setdefault(report.generation, len(self._generations))
        member = Member(
            generation, report.worker, report.pid, report.rank, report.seed, resumed=report.resumed
        )
        self._members.add(member)
        if report.rank is not None:
            self._ranks.add(report.rank)
        recorded = Recorded([], [], [])
        touched = False
        for later, streams in ((False, report.streams), (True, report.later)):
            for source, stream in streams.items():
                touched |= self._add(later, source, stream, member, recorded)
        if touched:
            self._judge(lambda found: member in found.members, recorded)
        return recorded

    def _add(
        self, later: bool, source: str, stream: Stream, member: Member, recorded: Recorded
    ) -> bool:
        """Record one stream of a report; return whether there is something to judge."""
        book = self._book(later)
        key = int(stream.fingerprint, 16)
        entry, newly_used = book.add(source, stream, key, member)
        if entry is None or source in self._expect_shared:
            return False
        touched = isinstance(entry, _Group)
        if newly_used:  # shared, indexed and compared with past runs once per process
            recorded.streams.append((source, stream.fingerprint, member))
            touched |= self._index_overlap(later, source, stream, member)
            touched |= self._replays(book, source, stream.fingerprint, key)
        return touched

    def _replays(self, book: _Book, source: str, fp: str, key: int) -> bool:
        """Join an earlier run's processes to a stream they drew too; return whether any did."""
        past = self._past.get((source, fp))
        entry = book.entry(source, key) if past else None
        if past is None or entry is None:
            return False
        entry.past = past
        return True

    def merge_remote(
        self, source: str, fp: str, elsewhere: int, remote: Iterable[Member]
    ) -> tuple[list[Finding], list[Finding]]:
        """
        Add what other ranks drew of a stream; return ``(new, involving)`` findings.

        ``elsewhere`` is how many processes on other ranks drew it, ``remote`` the
        ones known by name (a bounded sample).
        """
        key = int(fp, 16)
        entry = self._first.entry(source, key) or self._later.entry(source, key)
        if entry is None or source in self._expect_shared:
            return [], []
        entry.elsewhere = max(entry.elsewhere, elsewhere)
        for member in remote:
            self._ranks.add(-1 if member.rank is None else member.rank)
            entry.remote.setdefault(
                (member.rank, member.generation, member.worker, member.pid), member
            )
        recorded = Recorded([], [], [])
        self._judge(lambda found: "ranks" in found.kinds and source in found.sources, recorded)
        return recorded.new, recorded.involving

    def findings(self, *, latent: bool = False) -> list[Finding]:
        """
        Return every finding, each with all its members so far, in a stable order.

        With ``latent``, also the duplicates nobody drew from (``used`` false).
        """
        found = [f for f in self._gathered() if latent or f.used]
        return sorted(found, key=lambda f: (not f.used, f.source, f.kinds, f.fingerprint))

    def observed(self) -> Observed:
        """Say what the ledger has seen: processes, generations, workers per generation, ranks."""
        workers: dict[int, set[int]] = {}
        for member in self._members:
            if member.worker is not None:
                workers.setdefault(member.generation, set()).add(member.worker)
        return Observed(
            processes=len({(member.rank, member.pid) for member in self._members}),
            generations=len({member.generation for member in self._members}),
            most_workers=max((len(ids) for ids in workers.values()), default=0),
            ranks=len(self._ranks),
            resumed=any(member.resumed for member in self._members),
        )

    def _judge(self, involves: Callable[[Finding], bool], recorded: Recorded) -> None:
        """Gather findings; note the new ones and those involving the reporter."""
        for finding, identity in self._gathered_with_identity():
            if not finding.used:
                if (identity, "latent") not in self._announced:
                    self._announced.add((identity, "latent"))
                    recorded.latent.append(finding)
                continue
            if involves(finding):
                recorded.involving.append(finding)
            if (identity, "used") not in self._announced:  # one announcement per problem
                self._announced.add((identity, "used"))
                recorded.new.append(finding)

    def _gathered(self) -> list[Finding]:
        return [finding for finding, _ in self._gathered_with_identity()]

    def _gathered_with_identity(self) -> list[tuple[Finding, Hashable]]:
        """Gather the repeating streams into findings, one per problem (see the module doc)."""
        problems: dict[tuple[Hashable, ...], list[_Candidate]] = {}
        for candidate in self._candidates():
            meta = self._book(candidate.later).kinds[candidate.source]
            owner = _owner_key(candidate.source, meta)
            problem: tuple[Hashable, ...] = (
                candidate.later,
                candidate.used,
                owner,
                candidate.kinds,
            )
            problems.setdefault(problem, []).append(candidate)
        gathered: list[tuple[Finding, Hashable]] = []
        for problem, candidates in problems.items():
            finding = self._finding(candidates)
            gathered.append((finding, (*problem[:3], finding.source)))
        gathered.extend(
            (self._overlap_finding(place, overlap), ("overlap", *place))
            for place, overlap in self._overlaps.items()
        )
        return gathered

    def _candidates(self) -> Iterable[_Candidate]:
        for later, book in ((False, self._first), (True, self._later)):
            for source in book.streams:
                if source in self._expect_shared:
                    continue
                by_design = book.kinds[source].holder in SHARED_ACROSS_WORKERS
                for key, group in book.groups(source):
                    kinds = tuple(k for k in group.kinds() if not (by_design and k == "workers"))
                    if kinds and not (later and self._explained(source, group)):
                        used = bool(group.users or group.elsewhere or group.past)
                        yield _Candidate(later, source, key, group, kinds, used)

    def _book(self, later: bool) -> _Book:
        return self._later if later else self._first

    def _explained(self, source: str, group: _Group) -> bool:
        """
        Whether a repeat seen after the first item is one the first look found already.

        Only a first-look repeat that was drawn from explains it: a latent one (a
        generator used in ``__init__`` only, re-created per item under the same
        name) is not a finding, so it cannot stand for the later one.
        """
        members = set(group.members)
        return any(
            first.users and members <= first.users for _, first in self._first.groups(source)
        )

    def _finding(self, candidates: list[_Candidate]) -> Finding:
        first = candidates[0]
        book = self._book(first.later)
        meta = book.kinds[first.source]
        kinds = tuple(k for k in KINDS if any(k in c.kinds for c in candidates))
        members = {m for c in candidates for m in c.group.everyone(c.kinds)}
        ordered = tuple(sorted(members, key=Member.sort_key))
        sources: list[str] = []
        for candidate in sorted(candidates, key=lambda c: (_depth(c.source), c.source)):
            for name in (candidate.source, *book.kinds[candidate.source].aliases):
                if name not in sources:
                    sources.append(name)
        evidence = _evidence(meta, tuple(sources), kinds, ordered, born_late=first.later)
        return Finding(
            sources=tuple(sources),
            kinds=kinds,
            members=ordered,
            fingerprints=tuple(sorted({f"{c.key:016x}" for c in candidates})),
            hint=hint_for(evidence),
            owner=owner_label(evidence),
            used=first.used,
        )

    def _index_overlap(self, later: bool, source: str, stream: Stream, member: Member) -> bool:
        """
        Index a used stream's first draws; return whether it overlaps another process's.

        Stream B overlaps stream A at offset k when B's first two draws are A's
        draws k and k+1: B is A advanced by k draws (a shared generator each
        worker advances by its id), for k up to :data:`MAX_OVERLAP`. Only workers
        of one generation are compared: they draw side by side. One process's
        own streams, a worker that continues where the main process left off,
        or a later epoch's worker are not an overlap: they draw in turn.
        """
        prefix = stream.prefix
        if not prefix or len(prefix) % OVERLAP_SPAN or stream.origin == RESEEDED_GLOBAL:
            return False
        source_key = f"{int(later)}:{source}"  # each look's streams are compared among themselves
        width = len(prefix) // OVERLAP_SPAN
        head = prefix[: 2 * width]
        windows = [(prefix[k * width : (k + 2) * width], k) for k in range(1, OVERLAP_SPAN - 1)]
        place = (later, source)
        found = False
        if member.worker is None:
            return False
        for other, behind, behind_fp, k in self._windows.get(head, ()):
            if other == source_key and _side_by_side(behind, member):
                found |= self._note_overlap(place, (behind, behind_fp), (member, stream), k)
        for window, k in windows:
            for other, ahead, ahead_fp in self._heads.get(window, ()):
                if other == source_key and _side_by_side(ahead, member):
                    found |= self._note_overlap(
                        place, (member, stream.fingerprint), (ahead, ahead_fp), k
                    )
        if self._indexed + len(windows) + 1 <= MAX_WINDOWS:
            self._indexed += len(windows) + 1
            self._heads.setdefault(head, []).append((source_key, member, stream.fingerprint))
            for window, k in windows:
                self._windows.setdefault(window, []).append(
                    (source_key, member, stream.fingerprint, k)
                )
        return found

    def _note_overlap(
        self,
        place: tuple[bool, str],
        behind: tuple[Member, str],
        ahead: tuple[Member, str | Stream],
        offset: int,
    ) -> bool:
        ahead_fp = ahead[1].fingerprint if isinstance(ahead[1], Stream) else ahead[1]
        if behind[1] == ahead_fp:  # equal streams are a duplicate, judged as one
            return False
        overlap = self._overlaps.setdefault(place, _Overlap(offset=offset))
        overlap.offset = min(overlap.offset, offset)
        overlap.members.update((behind[0], ahead[0]))
        overlap.fingerprints.update((behind[1], ahead_fp))
        return True

    def _overlap_finding(self, place: tuple[bool, str], overlap: _Overlap) -> Finding:
        later, source = place
        members = tuple(sorted(overlap.members, key=Member.sort_key))
        meta = self._book(later).kinds[source]
        evidence = _evidence(meta, (source, *meta.aliases), ("overlap",), members)
        return Finding(
            sources=evidence.sources,
            kinds=("overlap",),
            members=members,
            fingerprints=tuple(sorted(overlap.fingerprints)),
            hint=hint_for(evidence),
            owner=owner_label(evidence),
            offset=overlap.offset,
        )


def _evidence(
    meta: Stream,
    sources: tuple[str, ...],
    kinds: tuple[Kind, ...],
    members: tuple[Member, ...],
    *,
    born_late: bool = False,
) -> Evidence:
    """Say what a finding of these sources knows, for its hint: its first source's metadata."""
    return Evidence(
        source=sources[0],
        origin=meta.origin,
        place=meta.place,
        holder=meta.holder,
        owner=meta.owner,
        kinds=kinds,
        members=members,
        born_late=born_late,
        sources=sources,
    )


def _owner_key(source: str, stream: Stream) -> tuple[str, ...]:
    """
    Say what a repeating stream belongs to, as far as its fix goes.

    The globals; one custom source; the object of a library that has its own
    way to reseed (every generator in it, one fix); or, in the pipeline's own
    code, an owner object and the kind of place (an attribute, a closure, a
    class attribute need different fixes).
    """
    if stream.origin in ("global", RESEEDED_GLOBAL):
        return ("globals",)
    if stream.origin == "custom":
        return ("custom", source)
    if has_library_fix(stream.holder):
        return ("library", stream.holder.partition(".")[0], stream.owner)
    return ("owner", stream.owner, stream.place)


def _depth(source: str) -> int:
    """How deep a path reaches: the shallower generator is named first."""
    return source.count(".") + source.count("[")


def _side_by_side(one: Member, other: Member) -> bool:
    """Whether two processes are workers of one generation (which draw at the same time)."""
    return (
        one.generation == other.generation
        and one.pid != other.pid
        and one.worker is not None
        and other.worker is not None
    )
