"""
A report: the fingerprints one process took of its streams, and who took them.

Plain data, torch-free, so the judge (:mod:`seedwatch._ledger`) can be read and
tested without loading torch. :mod:`seedwatch._probe` takes reports and
:mod:`seedwatch._wire` carries them between processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: How many draws a stream may be ahead of another and still be found overlapping it.
MAX_OVERLAP = 16
#: Draws kept per stream for overlap detection: a window of two, at any offset up to the bound.
OVERLAP_SPAN = MAX_OVERLAP + 2

#: The origin of a global stream seen after a fetch: it moved while an item was served.
RESEEDED_GLOBAL = "global, reseeded in a fetch"


@dataclass(frozen=True)
class Stream:
    """
    One source's fingerprint, and where the source comes from, for hints.

    ``origin`` is ``"global"`` for numpy, random and torch's process-global
    generators, ``"custom"`` for a registered :class:`seedwatch.Source`, and the
    generator's type as a user writes it (``"np.random.RandomState"``) for one
    found on the dataset. ``place`` says what holds a found generator:
    ``"attribute"`` (an object, list or dict of the pipeline), ``"closure"`` (a
    function's captured name or default), ``"class"``, ``"global"`` (a module
    global the pipeline's code names) or ``"frame"`` (a running iterator's
    local); ``""`` for globals and custom sources.
    """

    fingerprint: str
    origin: str
    place: str = ""
    #: Whether the stream moved while this process served items: a duplicate that
    #: nobody draws from is latent, not a finding.
    used: bool = True
    #: The path of the outermost object of the library (or the user's code) that
    #: holds the generator: generators of one owner are one problem.
    owner: str = ""
    #: The module and name of what holds it (``albumentations.core.composition.Compose``).
    holder: str = ""
    #: Other paths that reach the same generator object.
    aliases: tuple[str, ...] = ()
    #: The first draws as hex, one fixed-width field per draw, for overlap detection.
    prefix: str = ""

    def with_used(self, used: bool) -> Stream:
        """Return this stream marked used or not (``dataclasses.replace`` costs ten times more)."""
        if used is self.used:
            return self
        return Stream(
            self.fingerprint,
            self.origin,
            self.place,
            used,
            self.owner,
            self.holder,
            self.aliases,
            self.prefix,
        )


@dataclass(frozen=True)
class Report:
    """
    What one process is about to draw, identified by its worker generation.

    ``generation`` is an opaque key equal for the workers that one DataLoader
    iterator started and different for the next iterator's workers (see
    :func:`seedwatch._probe.generation_key`). ``worker`` is ``None`` in the main
    process; ``seed`` is the seed PyTorch gave the worker (in the main process,
    ``torch.initial_seed()``). ``streams`` were seen before the process served
    its first item, ``later`` right after it: the globals again, and generators
    that only appeared while serving. ``resumed``: the process's loader restored
    a saved state, so a stream equal to an earlier generation's is a replay.
    """

    generation: str
    worker: int | None
    pid: int
    seed: int | None
    streams: Mapping[str, Stream] = field(default_factory=dict)
    rank: int | None = None
    later: Mapping[str, Stream] = field(default_factory=dict)
    #: The worker resumed a loader's saved state (a torchdata ``load_state_dict``).
    resumed: bool = False
