"""
Concrete fixes, chosen from the evidence a finding carries.

The evidence is the source (global or an object on the dataset), the kind of
repetition, and the seeds PyTorch gave the members: equal seeds in different
generations mean the DataLoader's base seed itself repeated.
"""

from __future__ import annotations

from collections.abc import Sequence

from seedwatch._finding import Kind, Member

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


def hint_for(source: str, origin: str, kind: Kind, members: Sequence[Member]) -> str:
    """Return how to fix the pattern behind a finding, naming the code to write."""
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
