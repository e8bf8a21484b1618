"""Findings as text a person reads at a glance."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from seedwatch._finding import Finding, Findings, counted

_WIDTH = 88


def duplicate_message(findings: Sequence[Finding]) -> str:
    """Return the strict-mode error text: each finding, its members and its fix."""
    lines = ["seedwatch: duplicate random streams"]
    for finding in findings:
        lines.append(f"- {finding.describe()}")
        lines.append(f"  fix: {finding.hint}")
    return "\n".join(lines)


def render_findings(found: Sequence[Finding]) -> str:
    """Return one block per finding: what repeats, who drew it, and the fix."""
    if not found:
        return "  clean: no duplicate random streams"
    blocks = []
    for finding in found:
        streams = len(finding.fingerprints)
        label = f"{streams} streams" if streams > 1 else f"stream {finding.fingerprint}"
        lines = [f"  DUPLICATE {finding.what()} across {finding.where()} ({label})"]
        if len(finding.sources) > 1:
            lines.append(_wrap_items(list(finding.sources), "    sources: "))
        lines.append(_wrap_items([m.describe() for m in finding.members], "    drawn by: "))
        lines.append(
            textwrap.fill(
                finding.hint, _WIDTH, initial_indent="    fix: ", subsequent_indent=" " * 9
            )
        )
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _wrap_items(items: Sequence[str], prefix: str) -> str:
    """Join items with commas, breaking lines only between items."""
    lines, line = [], prefix
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if line.strip() and len(line) + len(piece) + 1 > _WIDTH and line != prefix:
            lines.append(line.rstrip())
            line = " " * len(prefix)
        line += piece + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def render_table(found: Sequence[Finding]) -> str:
    """Return findings as a table (source, kind, who, fingerprint), each fix under its row."""
    rows = [(_source_cell(f), _kind_cell(f), summarise_members(f), f.fingerprint) for f in found]
    header = ("SOURCE", "KIND", "WHO", "FINGERPRINT")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    lines = [line(header).rstrip()]
    for finding, row in zip(found, rows, strict=True):
        lines.append(line(row).rstrip())
        lines.append(
            textwrap.fill(
                finding.hint, _WIDTH, initial_indent="  fix: ", subsequent_indent="       "
            )
        )
    return "\n".join(lines)


def _source_cell(finding: Finding) -> str:
    """``rng``, or ``t.py_random (+10)`` for a finding of eleven generators."""
    more = len(finding.sources) - 1
    return f"{finding.source} (+{more})" if more else finding.source


def _kind_cell(finding: Finding) -> str:
    """``workers+epochs``, or ``overlap@3`` for a stream three draws ahead."""
    return "+".join(f"overlap@{finding.offset}" if k == "overlap" else k for k in finding.kinds)


def summarise_members(finding: Finding) -> str:
    """Say who shares a stream in a few words: ``gen 0-2 x worker 0-1 (6 processes)``."""
    generations = sorted({m.generation for m in finding.members})
    workers = sorted({-1 if m.worker is None else m.worker for m in finding.members})
    who = "main" if workers == [-1] else f"worker {_ranges([w for w in workers if w >= 0])}"
    if -1 in workers and who != "main":
        who = f"main + {who}"
    ranks = sorted({m.rank for m in finding.members if m.rank is not None})
    rank = f"rank {_ranges(ranks)} x " if ranks else ""
    count = len({(m.rank, m.pid) for m in finding.members})  # a process in two epochs is one
    return f"{rank}gen {_ranges(generations)} x {who} ({counted(count, 'process', 'processes')})"


def _ranges(numbers: Sequence[int]) -> str:
    """Return ``0-2,5`` for ``[0, 1, 2, 5]``."""
    parts: list[str] = []
    start = previous = None
    for number in [*numbers, None]:
        if number is not None and previous is not None and number == previous + 1:
            previous = number
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = number
    return ",".join(parts)


def render_watched(watched: Sequence[tuple[str, Findings]]) -> str:
    """
    Return a watched job's summary: one line per dataset, a table under each with findings.

    ``watched`` pairs each dataset's label (``TrainSet (train.py:42)``) with its findings.
    """
    if not watched:
        return "seedwatch: no DataLoader was watched in this process, so nothing was checked"
    troubled = [found for _label, found in watched if found]
    total = sum(len(found) for found in troubled)
    lines = [
        f"seedwatch: {counted(len(watched), 'dataset')} watched; "
        + (
            f"{counted(total, 'finding')} in {len(troubled)} of them"
            if troubled
            else "clean: no duplicate random streams"
        )
    ]
    for label, found in watched:
        if found:
            verdict = counted(len(found), "finding")
        elif not found.observed.processes:
            verdict = "never iterated"
        elif found.observed.can_see():
            verdict = "clean"
        else:
            verdict = "nothing to compare (no two workers, epochs or ranks)"
        lines.append(f"{label}: {verdict}; {found.observed.describe()}")
        if found:
            lines.append(textwrap.indent(render_table(found), "  "))
    return "\n".join(lines)
