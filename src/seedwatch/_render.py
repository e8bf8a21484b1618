"""Findings as text a person reads at a glance."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from seedwatch._finding import Finding

_WIDTH = 88


def render_findings(found: Sequence[Finding]) -> str:
    """Return one block per finding: what repeats, who drew it, and the fix."""
    if not found:
        return "  clean: no duplicate random streams"
    blocks = [
        "\n".join(
            [
                (
                    f"  DUPLICATE {finding.source!r} across {finding.kind} "
                    f"(stream {finding.fingerprint})"
                ),
                _wrap_items([m.describe() for m in finding.members], "    drawn by: "),
                textwrap.fill(
                    finding.hint, _WIDTH, initial_indent="    fix: ", subsequent_indent=" " * 9
                ),
            ]
        )
        for finding in found
    ]
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
