"""
What each rank runs in the distributed tests: a real process group over gloo on loopback.

Ranks write what they saw to ``<out>/rank<N>.json`` for the test to read.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

import seedwatch
from pipelines import GlobalsDataset, HoldsGenerator, ShardOrderDataset


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_rank(rank: int, world: int, port: int, out: str, scenario: str) -> None:
    """Join the group, run two epochs through a monitored loader, report findings."""
    warnings.simplefilter("ignore")
    os.environ.pop("SEEDWATCH_STRICT", None)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.manual_seed(42 if scenario in {"same_seed", "instance", "strict"} else 42 + rank)
    options: dict[str, Any] = {}
    dataset: Any = GlobalsDataset()
    if scenario == "instance":
        dataset = HoldsGenerator()
    if scenario == "expect_shared":
        dataset, options = ShardOrderDataset(), {"expect_shared": ["shard_order"]}
    if scenario == "strict":
        options = {"strict": True}
    loader = seedwatch.monitor(
        DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context="fork"),
        **options,
    )
    raised = None
    try:
        for _ in range(1 if scenario == "strict" else 2):
            for _batch in loader:
                pass
    except seedwatch.DuplicateStreamError as error:
        raised = str(error)
    dist.barrier()
    found = seedwatch.findings(loader)
    result = {
        "raised": raised,
        "findings": [
            {
                "sources": list(f.sources),
                "kinds": list(f.kinds),
                "ranks": sorted({m.rank for m in f.members if m.rank is not None}),
            }
            for f in found
        ],
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def lonely_rank(rank: int, port: int, out: str) -> None:
    """Rank 0 of two whose partner dies: its own seedwatch calls must still return."""
    warnings.simplefilter("ignore")
    store = dist.TCPStore(  # type: ignore[attr-defined]
        "127.0.0.1", port, 2, is_master=rank == 0, timeout=timedelta(seconds=60)
    )
    if rank == 1:
        # Counted but never written: an inbox entry left as a hole by a crash.
        store.add("seedwatch/run/GlobalsDataset:0/inbox/0/n", 1)
        store.set("crashed", "1")
        os._exit(3)
    store.wait(["crashed"])
    monitored = seedwatch.monitor(
        GlobalsDataset(), distributed=seedwatch.Distributed(store=store, rank=0)
    )
    torch.manual_seed(0)
    loader = DataLoader(monitored, batch_size=4, num_workers=2, multiprocessing_context="fork")
    for _batch in loader:
        pass
    found = seedwatch.findings(monitored)
    Path(out, "rank0.json").write_text(json.dumps({"findings": len(found)}))
