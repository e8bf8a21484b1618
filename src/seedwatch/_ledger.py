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
from seedwatch._report import Report


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


class StreamLedger:
    """
    Every stream reported so far, grouped by source and fingerprint.

    A source named in ``expect_shared`` is recorded but never reported. A process
    that reports the same stream twice (two copies of a monitored dataset in one
    process) counts once, so a process's global generator is never its own
    duplicate. Streams of other ranks arrive through :meth:`merge_remote`.

    Memory is what a long run pays for: a stream drawn by one process (the
    common, healthy case) costs one dict entry keyed by its 64-bit fingerprint,
    pointing at the reporter's :class:`Member`, which all its sources share.
    """

    def __init__(self, expect_shared: Iterable[str] = ()) -> None:
        self._expect_shared = frozenset(expect_shared)
        self._generations: dict[str, int] = {}
        self._streams: dict[str, dict[int, Member | _Group]] = {}
        self._origins: dict[str, str] = {}
        self._announced: set[tuple[str, str, Kind]] = set()

    def record(self, report: Report) -> Recorded:
        """Add a report; say which findings are new, which involve it, which streams to share."""
        generation = self._generations.setdefault(report.generation, len(self._generations))
        member = Member(generation, report.worker, report.pid, report.rank, report.seed)
        recorded = Recorded([], [], [])
        for source, stream in report.streams.items():
            self._origins.setdefault(source, stream.origin)
            streams = self._streams.setdefault(source, {})
            key = int(stream.fingerprint, 16)
            entry = streams.get(key)
            if entry is None:
                streams[key] = member
            elif entry == member or (isinstance(entry, _Group) and member in entry.members):
                continue
            else:
                if isinstance(entry, Member):
                    entry = streams[key] = _Group([entry])
                entry.members.append(member)
            if source in self._expect_shared:
                continue
            recorded.streams.append((source, stream.fingerprint, member))
            if isinstance(entry, _Group):
                found = self._judge(source, stream.fingerprint, entry, recorded.new)
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
        streams = self._streams.get(source, {})
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
            self._finding(source, kind, f"{key:016x}", entry)
            for source, streams in self._streams.items()
            if source not in self._expect_shared
            for key, entry in streams.items()
            if isinstance(entry, _Group)
            for kind in entry.kinds()
        ]
        return sorted(found, key=lambda f: (f.source, f.kind, f.fingerprint))

    def _judge(self, source: str, fp: str, group: _Group, new: list[Finding]) -> list[Finding]:
        findings = []
        for kind in group.kinds():
            finding = self._finding(source, kind, fp, group)
            findings.append(finding)
            if (source, fp, kind) not in self._announced:
                self._announced.add((source, fp, kind))
                new.append(finding)
        return findings

    def _finding(self, source: str, kind: Kind, fp: str, group: _Group) -> Finding:
        everyone = [*group.members, *group.remote.values()] if kind == "ranks" else group.members
        members = tuple(sorted(everyone, key=Member.sort_key))
        origin = self._origins[source]
        return Finding(source, kind, members, fp, hint_for(source, origin, kind, members))
