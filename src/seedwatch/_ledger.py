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


@dataclass
class _Group:
    """Processes that drew one stream of one source: this rank's, and others' it heard of."""

    origin: str
    members: list[Member] = field(default_factory=list)
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
    draws one stream per source: if it reports a source twice (two copies of a
    monitored dataset in one process), the second report of it is ignored, so a
    process's global generator is never its own duplicate. Streams of other
    ranks arrive through :meth:`merge_remote`.
    """

    def __init__(self, expect_shared: Iterable[str] = ()) -> None:
        self._expect_shared = frozenset(expect_shared)
        self._generations: dict[str, int] = {}
        self._groups: dict[str, dict[str, _Group]] = {}
        self._drawn: set[tuple[str, Member]] = set()
        self._announced: set[tuple[str, str, Kind]] = set()

    def record(self, report: Report) -> Recorded:
        """Add a report; say which findings are new, which involve it, which streams to share."""
        generation = self._generations.setdefault(report.generation, len(self._generations))
        member = Member(generation, report.worker, report.pid, report.rank, report.seed)
        recorded = Recorded([], [], [])
        for source, stream in report.streams.items():
            if (source, member) in self._drawn:
                continue
            self._drawn.add((source, member))
            group = self._groups.setdefault(source, {}).setdefault(
                stream.fingerprint, _Group(stream.origin)
            )
            group.members.append(member)
            if source in self._expect_shared:
                continue
            recorded.streams.append((source, stream.fingerprint, member))
            findings = self._judge(source, stream.fingerprint, group, recorded.new)
            recorded.involving.extend(findings)
        return recorded

    def merge_remote(
        self, source: str, fp: str, elsewhere: int, remote: Iterable[Member]
    ) -> tuple[list[Finding], list[Finding]]:
        """
        Add what other ranks drew of a stream; return ``(new, involving)`` findings.

        ``elsewhere`` is how many processes on other ranks drew it, ``remote`` the
        ones known by name (a bounded sample).
        """
        group = self._groups.get(source, {}).get(fp)
        if group is None or source in self._expect_shared:
            return [], []
        group.elsewhere = max(group.elsewhere, elsewhere)
        for member in remote:
            group.remote.setdefault(
                (member.rank, member.generation, member.worker, member.pid), member
            )
        new: list[Finding] = []
        involving = [f for f in self._judge(source, fp, group, new) if f.kind == "ranks"]
        return new, involving

    def findings(self) -> list[Finding]:
        """Return every finding, each with all its members so far, in a stable order."""
        found = [
            _finding(source, kind, fp, group)
            for source, groups in self._groups.items()
            if source not in self._expect_shared
            for fp, group in groups.items()
            for kind in group.kinds()
        ]
        return sorted(found, key=lambda f: (f.source, f.kind, f.fingerprint))

    def _judge(self, source: str, fp: str, group: _Group, new: list[Finding]) -> list[Finding]:
        findings = []
        for kind in group.kinds():
            finding = _finding(source, kind, fp, group)
            findings.append(finding)
            if (source, fp, kind) not in self._announced:
                self._announced.add((source, fp, kind))
                new.append(finding)
        return findings


def _finding(source: str, kind: Kind, fp: str, group: _Group) -> Finding:
    everyone = group.members + list(group.remote.values()) if kind == "ranks" else group.members
    members = tuple(sorted(everyone, key=Member.sort_key))
    return Finding(source, kind, members, fp, hint_for(source, group.origin, kind, members))
