"""
Concrete fixes, chosen from the evidence a finding carries.

The evidence is the source (a global, a custom source, or a generator and
what holds it), the kinds of repetition, and the seeds PyTorch gave the
members: equal seeds in different generations mean the DataLoader's base seed
itself repeated. A generator held by a library that has its own way to reseed
(albumentations, MONAI, Hugging Face datasets, webdataset) gets that library's
fix; a replay after a resume gets torchdata's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from seedwatch._finding import Kind, Member
from seedwatch._report import RESEEDED_GLOBAL

_REBUILD = {
    "np.random.RandomState": "np.random.RandomState(info.seed % 2**32)",
    "random.Random": "random.Random(info.seed)",
    "torch.Generator": "torch.Generator().manual_seed(info.seed)",
}
_GLOBAL_RESEED = {
    "numpy": "np.random.seed(torch.initial_seed() % 2**32)",
    "random": "random.seed(torch.initial_seed())",
    "torch": "torch.manual_seed(torch.initial_seed())",
}
_GLOBALS = ("global", RESEEDED_GLOBAL)


@dataclass(frozen=True)
class Evidence:
    """
    What a finding knows about its problem, for choosing the fix.

    ``origin`` and ``place`` are the first source's (see ``seedwatch._report.Stream``);
    ``holder`` the module and name of what holds its generator, ``owner`` the
    path of the object that owns it; ``born_late``: seen right after the first
    item was served, not before (a generator created while serving, or a global
    reseeded then).
    """

    source: str
    origin: str
    kinds: tuple[Kind, ...]
    members: Sequence[Member]
    place: str = "attribute"
    holder: str = ""
    owner: str = ""
    born_late: bool = False
    sources: tuple[str, ...] = ()

    @property
    def library(self) -> str:
        """The top-level package of what holds the generator (``albumentations``)."""
        return self.holder.partition(".")[0]

    @property
    def names(self) -> str:
        """The sources, as a user reads them in a sentence."""
        sources = self.sources or (self.source,)
        if len(sources) == 1:
            return repr(sources[0])
        if len(sources) <= 3:
            return ", ".join(repr(s) for s in sources[:-1]) + f" and {sources[-1]!r}"
        return f"{sources[0]!r} and {len(sources) - 1} more"


def owner_label(evidence: Evidence) -> str:
    """Say who holds the generators, for a library: ``albumentations Compose at 't'``."""
    if evidence.origin in _GLOBALS:
        return "process globals" if len(evidence.sources) > 1 else ""
    if not has_library_fix(evidence.holder):
        return ""
    where = f" at {evidence.owner!r}" if evidence.owner else ""
    return f"{evidence.library}{where}"


def hint_for(evidence: Evidence) -> str:  # noqa: PLR0911 - one fix per pattern
    """Return how to fix the pattern behind a finding, naming the code to write."""
    kinds = evidence.kinds
    if "resume" in kinds:
        return _resume_hint(evidence)
    if "overlap" in kinds:
        return _overlap_hint(evidence)
    if "ranks" in kinds and len(kinds) == 1:
        return (
            f"Every rank seeds {evidence.names} identically (e.g. manual_seed(42) on all ranks). "
            "Add the rank to the seed: torch.manual_seed(base_seed + rank), or build "
            "DataLoader(generator=torch.Generator().manual_seed(base_seed + rank))."
        )
    if has_library_fix(evidence.holder):
        return _LIBRARY_HINTS[evidence.library](evidence)
    if evidence.born_late:
        return _late_hint(evidence)
    if "workers" not in kinds and _base_seed_repeats(evidence.members):
        also = (
            " If 'numpy' still repeats after that, a worker_init_fn seeds it from worker_id: "
            "use np.random.seed(torch.initial_seed() % 2**32)."
            if "numpy" in (evidence.sources or (evidence.source,))
            else ""
        )
        return (
            "The DataLoader's base seed repeats between epochs, so every worker replays its "
            "stream: torch.manual_seed (or np.random.seed) runs before each epoch, or the "
            "loader restored a saved base seed. Seed once before training, or pass "
            f"DataLoader(generator=g) with g seeded once.{also}"
        )
    if evidence.origin == "global":
        return _global_hint(evidence)
    if evidence.origin == "custom":
        return (
            f"The custom source {evidence.names} starts from the same state in every "
            f"{'worker' if 'workers' in kinds else 'epoch'}. Reseed it per worker from "
            "torch.initial_seed() (or get_worker_info().seed) in worker_init_fn."
        )
    return _PLACE_HINTS.get(evidence.place, _instance_hint)(evidence)


def _base_seed_repeats(members: Sequence[Member]) -> bool:
    seeds_by_generation: dict[int, set[int]] = {}
    for member in members:
        if member.seed is not None:
            seeds_by_generation.setdefault(member.generation, set()).add(member.seed)
    seed_sets = list(seeds_by_generation.values())
    return len(seed_sets) > 1 and bool(set.intersection(*seed_sets))


def _global_hint(evidence: Evidence) -> str:
    names = evidence.names
    reseed = " / ".join(
        _GLOBAL_RESEED.get(source, "derive the seed from torch.initial_seed()")
        for source in (evidence.sources or (evidence.source,))
        if source in _GLOBAL_RESEED
    )
    reseed = reseed or "derive the seed from torch.initial_seed()"
    if "workers" in evidence.kinds:
        return (
            f"Workers share the global {names} stream: it is reseeded with a constant (a "
            "worker_init_fn such as np.random.seed(42)), so every worker and every epoch "
            "draws the same numbers. PyTorch already seeds random, torch and numpy per "
            f"worker; drop the reseed, or use {reseed}."
        )
    return (
        f"The global {names} stream repeats every epoch: it is seeded from worker_id only, "
        "or from np.random.get_state()[1][0], which is always 2147483648 in a worker. "
        f"Seed from what changes each epoch: {reseed} in worker_init_fn."
    )


def _where(kinds: Sequence[Kind]) -> str:
    return "every worker and every epoch" if "workers" in kinds else "every epoch"


def _rebuild(origin: str) -> str:
    """Return the constructor call that rebuilds a generator of this type from ``info.seed``."""
    return _REBUILD.get(origin, "np.random.default_rng(info.seed)")


def _instance_hint(evidence: Evidence) -> str:
    source, origin = evidence.source, evidence.origin
    return (
        f"{evidence.names} ({origin}) is copied, state and all, into {_where(evidence.kinds)}. "
        "Build it per worker: in worker_init_fn, info = torch.utils.data.get_worker_info(); "
        f"info.dataset.{source} = {_rebuild(origin)}; or create it lazily on first use "
        "from torch.initial_seed()."
    )


def _late_hint(evidence: Evidence) -> str:
    source, origin = evidence.source, evidence.origin
    if origin == RESEEDED_GLOBAL:
        call = {"numpy": "np.random.seed", "random": "random.seed"}.get(source, "torch.manual_seed")
        return (
            f"The global {evidence.names} stream restarts at the same point while items are "
            f"served: {call}(...) with a constant (or with the index) runs inside __getitem__ "
            "or a transform. Drop the reseed: PyTorch seeds the globals per worker; for a "
            "stream per sample, use a local np.random.default_rng((torch.initial_seed(), index))."
        )
    seed = (
        "the same seed in every worker"
        if "workers" in evidence.kinds
        else "a seed that repeats every epoch (a constant, or the item's index)"
    )
    return (
        f"{evidence.names} ({origin}) is created while items are served (lazily, per item, or "
        f"inside __iter__) from {seed}. Seed it from what differs per worker and epoch: "
        "torch.initial_seed() or get_worker_info().seed (for a stream per sample, "
        "np.random.default_rng((torch.initial_seed(), index)))."
    )


def _closure_hint(evidence: Evidence) -> str:
    return (
        f"{evidence.names} ({evidence.origin}) is captured by a function (a closure, a default "
        "argument or a functools.partial) and copied, state and all, into "
        f"{_where(evidence.kinds)}. Create it inside the function on first use, from "
        "torch.initial_seed() or get_worker_info().seed, or pass the function one built per "
        f"worker: {_rebuild(evidence.origin)}."
    )


def _class_hint(evidence: Evidence) -> str:
    return (
        f"{evidence.names} ({evidence.origin}) is a class attribute: every instance shares it, "
        f"and {_where(evidence.kinds)} gets a copy in the same state. Give each worker its own, "
        "in worker_init_fn: info = torch.utils.data.get_worker_info(); "
        f"{evidence.source} = {_rebuild(evidence.origin)} (or set an instance attribute per "
        "worker)."
    )


def _module_global_hint(evidence: Evidence) -> str:
    return (
        f"{evidence.names} ({evidence.origin}) is a module global the pipeline draws from, "
        f"copied, state and all, into {_where(evidence.kinds)}. Reseed it per worker in "
        f"worker_init_fn: info = torch.utils.data.get_worker_info(); {evidence.source} = "
        f"{_rebuild(evidence.origin)}; or draw from np.random, random or torch, which PyTorch "
        "seeds per worker."
    )


def _resume_hint(evidence: Evidence) -> str:
    if any(member.run for member in evidence.members):
        return (
            f"This run replays {evidence.names} streams a previous run of the job drew (see the "
            "history file): the restarted job seeds as the first one did, so the epochs after "
            "the checkpoint get the randomness of the ones before it. Restore the RNG states "
            "saved with the checkpoint (torch.get_rng_state(), the loader's generator), or "
            "seed the restarted job from the step it resumes at: torch.manual_seed(seed + step). "
            "If this run is no restart of that one (a rerun, a sweep), give each job its own "
            "history file."
        )
    return (
        f"A loader resumed from a saved state (torchdata StatefulDataLoader.load_state_dict) "
        f"replays {evidence.names}: it restores the epoch's base seed, so every worker restarts "
        "its streams from the epoch's start while the sampler continues mid-epoch. Make the "
        "dataset Stateful (return its generators' states from state_dict() and restore them "
        "in load_state_dict()), or draw per-sample randomness from (torch.initial_seed(), "
        "index) so a resumed epoch draws what the uninterrupted one would have."
    )


def _overlap_hint(evidence: Evidence) -> str:
    return (
        f"{evidence.names} ({evidence.origin}) in one process is another process's stream a few "
        "draws ahead: a generator copied into every worker and advanced by a different "
        "number of draws in each (e.g. by worker_id in worker_init_fn). The workers draw "
        "the same numbers, shifted. Reseed it per worker instead of advancing it: "
        f"info.dataset.{evidence.source} = {_rebuild(evidence.origin)}."
    )


def _owner_call(evidence: Evidence) -> str:
    return f"info.dataset.{evidence.owner}" if evidence.owner else "info.dataset"


def _albumentations_hint(evidence: Evidence) -> str:
    return (
        f"albumentations draws from the generators each transform holds ({evidence.names}), "
        "seeded once when the Compose was built, so they are copied, state and all, into "
        f"{_where(evidence.kinds)}. Reseed them per worker: in worker_init_fn, info = "
        f"torch.utils.data.get_worker_info(); {_owner_call(evidence)}.set_random_seed("
        "info.seed % 2**32)."
    )


def _monai_hint(evidence: Evidence) -> str:
    return (
        f"MONAI transforms draw from their own RandomState ({evidence.names}; a class-level "
        "Randomizable.R until set_random_state gives one its own), copied, state and all, "
        f"into {_where(evidence.kinds)}. Use monai.data.DataLoader, which reseeds every "
        "randomizable transform per worker, or in worker_init_fn: info = "
        f"torch.utils.data.get_worker_info(); {_owner_call(evidence)}.set_random_state("
        "seed=info.seed % 2**32)."
    )


def _datasets_hint(evidence: Evidence) -> str:
    return (
        f"Hugging Face datasets shuffles an IterableDataset with {evidence.names}, derived "
        "from the seed and the epoch the dataset was told: without set_epoch every epoch "
        "replays the same shuffle. Call dataset.set_epoch(epoch) before each epoch (on the "
        "monitored dataset or the one the DataLoader holds)."
    )


def _webdataset_hint(evidence: Evidence) -> str:
    return (
        f"webdataset shuffles shards with {evidence.names}, seeded when the dataset was built "
        "(seed=, WDS_SEED, or a number drawn once in the main process): alike in every worker, "
        "by design, and in every epoch, so every epoch replays the shard order. Use "
        "WebDataset(..., detshuffle=True) with DataLoader(persistent_workers=True), whose "
        "epoch counter then advances in each worker, or rebuild the dataset each epoch with "
        "seed=base_seed + epoch."
    )


_PLACE_HINTS: dict[str, Callable[[Evidence], str]] = {
    "closure": _closure_hint,
    "class": _class_hint,
    "global": _module_global_hint,
}
_LIBRARY_HINTS: dict[str, Callable[[Evidence], str]] = {
    "albumentations": _albumentations_hint,
    "monai": _monai_hint,
    "datasets": _datasets_hint,
    "webdataset": _webdataset_hint,
}

#: The part of each library whose generators its fix is for: all of it, but for Hugging
#: Face datasets only the iterable machinery (a user's transform is the user's to fix).
_LIBRARY_PARTS = {
    "albumentations": "albumentations.",
    "monai": "monai.",
    "datasets": "datasets.iterable_dataset.",
    "webdataset": "webdataset.",
}

#: Generators that a library keeps equal in every worker on purpose, by what holds
#: them: webdataset seeds its shard shuffles alike in every worker (before
#: ``split_by_worker`` the order must agree; after it, each worker permutes its own
#: shards). Only their repeat across epochs is reported.
SHARED_ACROSS_WORKERS = frozenset({"webdataset.filters._shuffle"})


def has_library_fix(holder: str) -> bool:
    """Whether what holds a generator is a part of a library that has its own fix for it."""
    part = _LIBRARY_PARTS.get(holder.partition(".")[0])
    return part is not None and holder.startswith(part)
