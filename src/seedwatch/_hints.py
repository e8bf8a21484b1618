"""
Concrete fixes, chosen from the evidence a finding carries.

The evidence is the source (global or an object on the dataset), the kind of
repetition, and the seeds PyTorch gave the members: equal seeds in different
generations mean the DataLoader's base seed itself repeated.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def hint_for(  # noqa: PLR0913, PLR0911 - the evidence a finding carries, one fix per pattern
    source: str,
    origin: str,
    kind: Kind,
    members: Sequence[Member],
    *,
    place: str = "attribute",
    born_late: bool = False,
) -> str:
    """
    Return how to fix the pattern behind a finding, naming the code to write.

    ``place`` says what holds a found generator (see ``seedwatch._report.Stream``);
    ``born_late``: the stream was seen right after the first item was served,
    not before (a generator created while serving, or a global reseeded then).
    """
    if born_late:
        return _late_hint(source, origin, kind)
    if kind == "ranks":
        return (
            f"Every rank seeds {source!r} identically (e.g. manual_seed(42) on all ranks). "
            "Add the rank to the seed: torch.manual_seed(base_seed + rank), or build "
            "DataLoader(generator=torch.Generator().manual_seed(base_seed + rank))."
        )
    if _base_seed_repeats(kind, members):
        return (
            "The DataLoader's base seed repeats between epochs, so every worker replays its "
            "stream: torch.manual_seed (or np.random.seed) runs before each epoch. Seed once "
            "before training, or pass DataLoader(generator=g) with g seeded once."
        )
    if origin == "global":
        return _global_hint(source, kind)
    if origin == "custom":
        return (
            f"The custom source {source!r} starts from the same state in every "
            f"{'worker' if kind == 'workers' else 'epoch'}. Reseed it per worker from "
            "torch.initial_seed() (or get_worker_info().seed) in worker_init_fn."
        )
    if place in _PLACE_HINTS:
        return _PLACE_HINTS[place](source, origin, kind)
    return _instance_hint(source, origin, kind)


def _base_seed_repeats(kind: Kind, members: Sequence[Member]) -> bool:
    if kind != "epochs":
        return False
    seeds_by_generation: dict[int, set[int]] = {}
    for member in members:
        if member.seed is not None:
            seeds_by_generation.setdefault(member.generation, set()).add(member.seed)
    seed_sets = list(seeds_by_generation.values())
    return len(seed_sets) > 1 and bool(set.intersection(*seed_sets))


def _global_hint(source: str, kind: Kind) -> str:
    reseed = _GLOBAL_RESEED.get(source, "derive the seed from torch.initial_seed()")
    if kind == "workers":
        return (
            f"Workers of one epoch share the global {source!r} stream: it is reseeded with a "
            "constant (a worker_init_fn such as np.random.seed(42)). PyTorch already seeds "
            f"random, torch and numpy per worker; drop the reseed, or use {reseed}."
        )
    return (
        f"The global {source!r} stream repeats every epoch: it is seeded from worker_id only, "
        "or from np.random.get_state()[1][0], which is always 2147483648 in a worker. "
        f"Seed from what changes each epoch: {reseed} in worker_init_fn."
    )


def _instance_hint(source: str, origin: str, kind: Kind) -> str:
    rebuild = _REBUILD.get(origin, "np.random.default_rng(info.seed)")
    where = "every worker and every epoch" if kind == "workers" else "every epoch"
    return (
        f"{source!r} ({origin}) is copied, state and all, into {where}. Build it per worker: "
        "in worker_init_fn, info = torch.utils.data.get_worker_info(); "
        f"info.dataset.{source} = {rebuild}; or create it lazily on first use "
        "from torch.initial_seed()."
    )


def _late_hint(source: str, origin: str, kind: Kind) -> str:
    if origin == RESEEDED_GLOBAL:
        call = {"numpy": "np.random.seed", "random": "random.seed"}.get(source, "torch.manual_seed")
        return (
            f"The global {source!r} stream restarts at the same point while items are served: "
            f"{call}(...) with a constant (or with the index) runs inside __getitem__ or a "
            "transform. Drop the reseed: PyTorch seeds the globals per worker; for a stream per "
            "sample, use a local np.random.default_rng((torch.initial_seed(), index))."
        )
    seed = (
        "the same seed in every worker"
        if kind == "workers"
        else "a seed that repeats every epoch (a constant, or the item's index)"
    )
    return (
        f"{source!r} ({origin}) is created while items are served (lazily, per item, or inside "
        f"__iter__) from {seed}. Seed it from what differs per worker and epoch: "
        "torch.initial_seed() or get_worker_info().seed (for a stream per sample, "
        "np.random.default_rng((torch.initial_seed(), index)))."
    )


def _where(kind: Kind) -> str:
    return "every worker and every epoch" if kind == "workers" else "every epoch"


def _rebuild(origin: str) -> str:
    """Return the constructor call that rebuilds a generator of this type from ``info.seed``."""
    return _REBUILD.get(origin, "np.random.default_rng(info.seed)")


def _closure_hint(source: str, origin: str, kind: Kind) -> str:
    return (
        f"{source!r} ({origin}) is captured by a function (a closure, a default argument or a "
        f"functools.partial) and copied, state and all, into {_where(kind)}. Create it inside "
        "the function on first use, from torch.initial_seed() or get_worker_info().seed, or "
        f"pass the function one built per worker: {_rebuild(origin)}."
    )


def _class_hint(source: str, origin: str, kind: Kind) -> str:
    return (
        f"{source!r} ({origin}) is a class attribute: every instance shares it, and "
        f"{_where(kind)} gets a copy in the same state. Give each worker its own, in "
        "worker_init_fn: info = torch.utils.data.get_worker_info(); "
        f"{source} = {_rebuild(origin)} (or set an instance attribute per worker)."
    )


def _global_hint_for_module(source: str, origin: str, kind: Kind) -> str:
    return (
        f"{source!r} ({origin}) is a module global the pipeline draws from, copied, state and "
        f"all, into {_where(kind)}. Reseed it per worker in worker_init_fn: info = "
        f"torch.utils.data.get_worker_info(); {source} = {_rebuild(origin)}; or draw from "
        "np.random, random or torch, which PyTorch seeds per worker."
    )


_PLACE_HINTS = {
    "closure": _closure_hint,
    "class": _class_hint,
    "global": _global_hint_for_module,
}
