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
    """Processes that drew one stream of one source."""

    origin: str
    members: list[Member] = field(default_factory=list)

    def kinds(self) -> list[Kind]:
        generations = [member.generation for member in self.members]
        kinds: list[Kind] = []
        if len(set(generations)) < len(generations):
            kinds.append("workers")
        if len(set(generations)) > 1:
            kinds.append("epochs")
        return kinds


class StreamLedger:
    """
    Every stream reported so far, grouped by source and fingerprint.

    A source named in ``expect_shared`` is recorded but never reported. A process
    draws one stream per source: if it reports a source twice (two copies of a
    monitored dataset in one process), the second report of it is ignored, so a
    process's global generator is never its own duplicate.
    """

    def __init__(self, expect_shared: Iterable[str] = ()) -> None:
        self._expect_shared = frozenset(expect_shared)
        self._generations: dict[str, int] = {}
        self._groups: dict[str, dict[str, _Group]] = {}
        self._drawn: set[tuple[str, Member]] = set()
        self._announced: set[tuple[str, str, Kind]] = set()

    def record(self, report: Report) -> tuple[list[Finding], list[Finding]]:
        """
        Add a report; return ``(new, involving)`` findings.

        ``new`` are findings that did not exist before this report (announce
        them once); ``involving`` are all findings this report's process is in
        (the verdict a strict worker waits for).
        """
        generation = self._generations.setdefault(report.generation, len(self._generations))
        member = Member(generation, report.worker, report.pid, report.rank, report.seed)
        new: list[Finding] = []
        involving: list[Finding] = []
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
            for kind in group.kinds():
                finding = _finding(source, kind, stream.fingerprint, group)
                involving.append(finding)
                key = (source, stream.fingerprint, kind)
                if key not in self._announced:
                    self._announced.add(key)
                    new.append(finding)
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


def _finding(source: str, kind: Kind, fp: str, group: _Group) -> Finding:
    members = tuple(sorted(group.members, key=Member.sort_key))
    return Finding(source, kind, members, fp, hint_for(source, group.origin, kind, members))
