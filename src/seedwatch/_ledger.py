"""
Judgement: which reported streams are equal, and what kind of repetition that is.

Pure bookkeeping with no processes or threads, so it is tested by feeding it
reports. Not thread-safe; the collector serialises calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from seedwatch._finding import Finding, Kind, Member
from seedwatch._hints import hint_for
from seedwatch._report import Report, Stream


@dataclass(slots=True)
class _Group:
    """Processes that drew one stream of one source: this rank's, and others' it heard of."""

    members: list[Member]
    #: How many processes on other ranks drew the stream, and the ones known by name.
    elsewhere: int = 0
    remote: dict[tuple[int | None, int, int | None, int], Member] = field(default_factory=dict)

    def kinds(self) -> list[Kind]:
        generations = [member.generation for member in self.members]
        kinds: list[Kind] = []
        if len(set(generations)) < len(generations):
            kinds.append("workers")
        if len(set(generations)) > 1:
            kinds.append("epochs")
        if self.elsewhere and self.members:
            kinds.append("ranks")
        return kinds


@dataclass(frozen=True)
class Recorded:
    """What one report changed: findings to announce, the reporter's verdict, streams to share."""

    new: list[Finding]
    involving: list[Finding]
    streams: list[tuple[str, str, Member]]


class _Book:
    """The streams of one look (before or after a process's first item), by source and fp."""

    __slots__ = ("kinds", "streams")

    def __init__(self) -> None:
        self.streams: dict[str, dict[int, Member | _Group]] = {}
        #: What each source is (its origin and place), for hints.
        self.kinds: dict[str, Stream] = {}

    def add(self, source: str, stream: Stream, key: int, member: Member) -> _Group | Member | None:
        """Add a member's stream; return its entry, or ``None`` if the member had it already."""
        self.kinds.setdefault(source, stream)
        streams = self.streams.setdefault(source, {})
        entry = streams.get(key)
        if entry is None:
            streams[key] = member
            return member
        if entry == member or (isinstance(entry, _Group) and member in entry.members):
            return None
        if isinstance(entry, Member):
            entry = streams[key] = _Group([entry])
        entry.members.append(member)
        return entry

    def groups(self, source: str) -> Iterable[tuple[int, _Group]]:
        """Return the source's streams that more than one process drew."""
        return (
            (key, entry)
            for key, entry in self.streams.get(source, {}).items()
            if isinstance(entry, _Group)
        )


class StreamLedger:
    """
    Every stream reported so far, grouped by source and fingerprint.

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
    pointing at the reporter's :class:`Member`, which all its sources share.
    """

    def __init__(self, expect_shared: Iterable[str] = ()) -> None:
        self._expect_shared = frozenset(expect_shared)
        self._generations: dict[str, int] = {}
        self._first = _Book()
        self._later = _Book()
        self._announced: set[tuple[bool, str, str, Kind]] = set()

    def record(self, report: Report) -> Recorded:
        """Add a report; say which findings are new, which involve it, which streams to share."""
        generation = self._generations.setdefault(report.generation, len(self._generations))
        member = Member(generation, report.worker, report.pid, report.rank, report.seed)
        recorded = Recorded([], [], [])
        for source, stream in report.streams.items():
            key = int(stream.fingerprint, 16)
            entry = self._first.add(source, stream, key, member)
            if entry is None or source in self._expect_shared:
                continue
            recorded.streams.append((source, stream.fingerprint, member))
            if isinstance(entry, _Group):
                found = self._judge(source, stream.fingerprint, entry, recorded.new)
                recorded.involving.extend(found)
        for source, stream in report.later.items():
            key = int(stream.fingerprint, 16)
            entry = self._later.add(source, stream, key, member)
            if isinstance(entry, _Group) and source not in self._expect_shared:
                found = self._judge(source, stream.fingerprint, entry, recorded.new, later=True)
                recorded.involving.extend(found)
        return recorded

    def merge_remote(
        self, source: str, fp: str, elsewhere: int, remote: Iterable[Member]
    ) -> tuple[list[Finding], list[Finding]]:
        """
        Add what other ranks drew of a stream; return ``(new, involving)`` findings.

        ``elsewhere`` is how many processes on other ranks drew it, ``remote`` the
        ones known by name (a bounded sample).
        """
        streams = self._first.streams.get(source, {})
        key = int(fp, 16)
        entry = streams.get(key)
        if entry is None or source in self._expect_shared:
            return [], []
        if isinstance(entry, Member):
            entry = streams[key] = _Group([entry])
        entry.elsewhere = max(entry.elsewhere, elsewhere)
        for member in remote:
            entry.remote.setdefault(
                (member.rank, member.generation, member.worker, member.pid), member
            )
        new: list[Finding] = []
        involving = [f for f in self._judge(source, fp, entry, new) if f.kind == "ranks"]
        return new, involving

    def findings(self) -> list[Finding]:
        """Return every finding, each with all its members so far, in a stable order."""
        found = [
            self._finding(source, kind, f"{key:016x}", group, later=later)
            for later, book in ((False, self._first), (True, self._later))
            for source in book.streams
            if source not in self._expect_shared
            for key, group in book.groups(source)
            if not (later and self._explained(source, group))
            for kind in group.kinds()
        ]
        return sorted(found, key=lambda f: (f.source, f.kind, f.fingerprint))

    def _judge(
        self, source: str, fp: str, group: _Group, new: list[Finding], *, later: bool = False
    ) -> list[Finding]:
        if later and self._explained(source, group):
            return []
        findings = []
        for kind in group.kinds():
            finding = self._finding(source, kind, fp, group, later=later)
            findings.append(finding)
            if (later, source, fp, kind) not in self._announced:
                self._announced.add((later, source, fp, kind))
                new.append(finding)
        return findings

    def _explained(self, source: str, group: _Group) -> bool:
        """Whether a repeat seen after the first item is one the first look found already."""
        members = set(group.members)
        return any(members <= set(first.members) for _, first in self._first.groups(source))

    def _finding(
        self, source: str, kind: Kind, fp: str, group: _Group, *, later: bool = False
    ) -> Finding:
        everyone = [*group.members, *group.remote.values()] if kind == "ranks" else group.members
        members = tuple(sorted(everyone, key=Member.sort_key))
        what = (self._later if later else self._first).kinds[source]
        hint = hint_for(source, what.origin, kind, members, place=what.place, born_late=later)
        return Finding(source, kind, members, fp, hint)
