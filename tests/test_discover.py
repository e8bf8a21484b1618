from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Subset

from pipelines import HoldsGenerator, TransformedDataset
from seedwatch import monitor
from seedwatch._discover import MAX_DEPTH, MAX_ITEMS_PER_CONTAINER, MAX_OBJECTS, find_generators


def paths(root: object) -> list[str]:
    return [path for path, _ in find_generators(root)]


class Box(SimpleNamespace):
    """An object with whatever attributes a test gives it."""


class TestFindGenerators:
    def test_names_attributes_nested_objects_lists_and_dicts(self) -> None:
        """Paths read like the Python that reaches each generator."""
        assert ["transform.state", "augs['noise']", "transforms[1].g"] == paths(
            TransformedDataset()
        )

    def test_sees_through_wrapped_datasets(self) -> None:
        """Subset.dataset and ConcatDataset.datasets are walked."""
        concat: ConcatDataset[Any] = ConcatDataset(
            [HoldsGenerator(), Subset(HoldsGenerator("torch_generator"), [0])]
        )

        assert ["datasets[0].rng", "datasets[1].dataset.rng"] == paths(concat)

    def test_sees_through_monitored_datasets(self) -> None:
        """A monitored dataset inside another is walked as if unwrapped."""
        concat: ConcatDataset[Any] = ConcatDataset([monitor(HoldsGenerator())])

        assert ["datasets[0].rng"] == paths(concat)

    def test_lists_a_shared_generator_once(self) -> None:
        """A generator reachable by two paths is listed under the shortest."""
        rng = np.random.default_rng(0)

        assert ["rng"] == paths(Box(rng=rng, inner=Box(again=rng)))

    def test_survives_cycles(self) -> None:
        """Reference cycles end the walk instead of looping."""
        root = Box(rng=random.Random(0))
        root.me = root
        root.children = [root, {"back": root}]

        assert ["rng"] == paths(root)

    def test_depth_is_bounded(self) -> None:
        """Generators nested deeper than the bound are not reached."""
        shallow = Box(rng=random.Random(0))
        deep: object = Box(rng=random.Random(1))
        for _ in range(MAX_DEPTH + 2):
            deep = Box(inner=deep)

        assert ["shallow.rng"] == paths(Box(shallow=shallow, deep=deep))

    def test_never_runs_properties_or_getattr(self) -> None:
        """Reading attributes does not call user code."""
        calls: list[str] = []

        class Tricky:
            def __init__(self) -> None:
                self.rng = torch.Generator()

            @property
            def expensive(self) -> np.random.Generator:
                calls.append("property")
                return np.random.default_rng()

            def __getattr__(self, name: str) -> object:
                calls.append(name)
                return np.random.default_rng()

        assert ["rng"] == paths(Tricky())
        assert [] == calls

    def test_huge_containers_cost_a_bounded_walk(self) -> None:
        """Of a million samples only the first few are walked: a generator at the end is not."""
        samples: list[object] = [*range(999_999), random.Random(0)]
        root = Box(samples=samples, rng=np.random.default_rng(0))

        assert ["rng"] == paths(root)

    def test_a_container_is_walked_up_to_its_item_bound(self) -> None:
        """A list, a dict and an object each give up their first MAX_ITEMS_PER_CONTAINER items."""

        def many() -> list[random.Random]:
            return [random.Random(i) for i in range(1_000)]

        root = Box(
            items=many(),
            table=dict(enumerate(many())),
            wide=Box(**{f"g{i}": rng for i, rng in enumerate(many())}),
        )

        found = paths(root)

        assert [MAX_ITEMS_PER_CONTAINER] * 3 == [
            sum(path.startswith(name) for path in found) for name in ("items", "table", "wide")
        ]
        assert f"items[{MAX_ITEMS_PER_CONTAINER - 1}]" in found
        assert f"items[{MAX_ITEMS_PER_CONTAINER}]" not in found

    def test_the_walk_stops_after_max_objects(self) -> None:
        """Among ten thousand generators the walk visits MAX_OBJECTS objects, no more."""
        shards = [[random.Random(i) for i in range(100)] for _ in range(100)]

        found = paths(Box(shards=shards))

        visited_containers = 1 + 1 + len(shards)  # the root, the outer list, every shard
        assert MAX_OBJECTS == visited_containers + len(found)

    def test_ignores_arrays_and_tensors(self) -> None:
        """Numeric arrays are data, not containers to walk."""
        assert [] == paths(Box(images=np.zeros((4, 4)), labels=torch.zeros(4)))
