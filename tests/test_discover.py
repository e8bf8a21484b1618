from __future__ import annotations

import dis
import functools
import importlib
import json
import random
import sys
import tempfile
import types
import weakref
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import wrapt
from torch.utils.data import ConcatDataset, Subset

from pipelines import HoldsGenerator, TransformedDataset
from seedwatch import _discover, monitor
from seedwatch._discover import MAX_DEPTH, MAX_ITEMS_PER_CONTAINER, MAX_OBJECTS, find_generators


def paths(root: object) -> list[str]:
    return [found.path for found in find_generators(root)]


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

    def test_the_walk_stops_after_max_objects(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Among ten thousand generators the walk visits MAX_OBJECTS objects, no more."""
        monkeypatch.setattr(_discover, "MAX_SECONDS", 60.0)  # the object bound alone
        shards = [[random.Random(i) for i in range(100)] for _ in range(100)]

        found = paths(Box(shards=shards))

        visited_containers = 1 + 1 + len(shards)  # the root, the outer list, every shard
        assert MAX_OBJECTS == visited_containers + len(found)

    def test_ignores_arrays_and_tensors(self) -> None:
        """Numeric arrays are data, not containers to walk."""
        assert [] == paths(Box(images=np.zeros((4, 4)), labels=torch.zeros(4)))


RNG_FOR_CODE = np.random.default_rng(3)


def uses_module_rng(value: int) -> int:
    return value + int(RNG_FOR_CODE.integers(10))


class UsesHelper:
    def __getitem__(self, index: int) -> int:
        return self._augment(index)

    def _augment(self, value: int) -> int:
        return uses_module_rng(value)


class OnlyInInit:
    def __init__(self) -> None:
        self.order = list(RNG_FOR_CODE.permutation(4))


class ClassLevel:
    R = np.random.RandomState(0)


def closure_over(rng: object) -> Any:
    def add(value: int) -> int:
        return value + id(rng)

    return add


class TestReach:
    def test_closures_and_default_arguments(self) -> None:
        """A captured name and a default argument are named by the function and the name."""

        def with_default(value: int, noise: object = random.Random(1)) -> int:
            return value

        assert [
            "fn(closure_over.add).rng",
            "fn2(TestReach.test_closures_and_default_arguments.with_default).noise",
        ] == paths(Box(fn=closure_over(random.Random(0)), fn2=with_default))

    def test_partials_bound_methods_and_builtin_methods(self) -> None:
        """partial's keywords and args, a method's object, and rng.integers's generator."""
        rng = np.random.default_rng(0)
        holder = Box(state=np.random.RandomState(1))

        assert {
            "p.args[0]",
            "p.keywords['g']",
            "m.__self__.state",
            "draw.__self__",
        } == set(
            paths(
                Box(
                    p=functools.partial(print, torch.Generator(), g=random.Random(0)),
                    m=types.MethodType(lambda self: None, holder),
                    draw=rng.integers,
                )
            )
        )

    def test_class_attributes_unless_shadowed(self) -> None:
        """A generator on the class is found as Class.attr, unless the instance has its own."""
        shadowing = ClassLevel()
        shadowing.R = np.random.RandomState(1)

        assert ["ClassLevel.R"] == paths(Box(a=ClassLevel()))
        assert ["a.R"] == paths(Box(a=shadowing))

    def test_module_globals_named_by_fetching_code(self) -> None:
        """Globals used by __getitem__ and the methods and helpers it calls are found."""
        assert ["test_discover.RNG_FOR_CODE"] == paths(UsesHelper())

    def test_code_that_only_runs_in_init_is_not_read(self) -> None:
        """A global used only by __init__ (a file shuffle) is not a worker's stream."""
        assert [] == paths(OnlyInInit())

    def test_a_running_generators_locals_and_its_delegate(self) -> None:
        """Locals of a suspended generator, and of what it yields from, are found by name."""

        def inner() -> Any:
            order = random.Random(1)
            yield order.random()

        def outer() -> Any:
            rng = np.random.default_rng(0)
            yield rng.random()
            yield from inner()

        running = outer()
        next(running)
        next(running)

        assert [
            "TestReach.test_a_running_generators_locals_and_its_delegate.outer().rng",
            "TestReach.test_a_running_generators_locals_and_its_delegate.inner().order",
        ] == [found.path for found in find_generators(Box(), ("", running))]

    def test_places_are_told_apart(self) -> None:
        """Each found generator says what kind of place holds it, for its fix."""
        root = Box(fn=closure_over(random.Random(0)), a=ClassLevel(), own=random.Random(2))

        assert {
            "own": "attribute",
            "fn(closure_over.add).rng": "closure",
            "ClassLevel.R": "class",
        } == {found.path: found.place for found in find_generators(root)}

    def test_a_user_module_named_like_the_standard_librarys_is_read(
        self, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A user's tabnanny.py is the pipeline's code, not the standard library's."""
        (tmp_path / "tabnanny.py").write_text(
            "import numpy as np\n"
            "RNG = np.random.default_rng(0)\n"
            "class Noisy:\n"
            "    def __getitem__(self, index):\n"
            "        return RNG.random()\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, "tabnanny", raising=False)
        module = importlib.import_module("tabnanny")

        assert ["tabnanny.RNG"] == paths(module.Noisy())

    def test_the_standard_librarys_code_is_not_read(self) -> None:
        """tempfile's names come from a global generator of its own: not the pipeline's stream."""
        candidate_names = vars(tempfile)["_get_candidate_names"]
        next(candidate_names())  # makes tempfile._name_sequence._rng

        assert [] == paths(Box(fn=candidate_names))

    def test_the_globals_code_reads_are_the_ones_dis_reads(self) -> None:
        """The bytecode reader names exactly the globals dis names, past 256 names too."""
        many = "\n".join(f"    g{n}" for n in range(300))
        namespace: dict[str, Any] = {}
        exec(f"def wide():\n{many}\n    return self_rng.random()", namespace)  # noqa: S102
        codes = [namespace["wide"].__code__] + [
            function.__code__
            for module in (_discover, json, functools)
            for function in vars(module).values()
            if isinstance(function, types.FunctionType)
        ]

        for code in codes:
            assert [
                str(instruction.argval)
                for instruction in dis.get_instructions(code)
                if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME")
            ] == list(_discover._global_loads(code)), code.co_name  # noqa: SLF001

    def test_the_walk_stops_at_its_time_limit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With no time left, the walk stops after its first 64 objects, whatever is left."""
        monkeypatch.setattr(_discover, "MAX_SECONDS", -1.0)
        boxes = [Box(rng=random.Random(i)) for i in range(200)]

        assert len(paths(Box(items=boxes))) < 64


shuffle_rng = np.random.default_rng(0)  # a module global named like an attribute below


class OwnGeneratorNamedLikeAGlobal:
    def __init__(self) -> None:
        self.shuffle_rng = np.random.default_rng(1)

    def __getitem__(self, index: int) -> float:
        return float(self.shuffle_rng.random())


class TestNoUserCode:
    def test_class_dict_properties_metaclasses_and_lazy_proxies_are_not_run(self) -> None:
        """__class__ and __dict__ properties, metaclass hooks and lazy factories never fire."""
        calls: list[str] = []

        class Meta(type):
            def __getattribute__(cls, name: str) -> Any:
                calls.append(f"meta {name}")
                return super().__getattribute__(name)

        class Sneaky(metaclass=Meta):
            rng = random.Random(0)

            @property  # type: ignore[misc]
            def __class__(self) -> type:
                calls.append("__class__")
                return int

            @property
            def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
                calls.append("__dict__")
                return {}

        def make() -> random.Random:
            calls.append("factory")
            return random.Random(1)

        [found] = paths(Box(sneaky=Sneaky(), lazy=wrapt.LazyObjectProxy(make)))

        assert found.endswith(".Sneaky.rng")
        assert [] == calls

    def test_attribute_names_are_not_read_as_globals(self) -> None:
        """self.shuffle_rng in code does not pull in a module global named shuffle_rng."""
        assert ["shuffle_rng"] == paths(OwnGeneratorNamedLikeAGlobal())

    def test_a_walked_frame_keeps_no_local_alive(self) -> None:
        """A local the running generator drops is freed, though the walk saw it."""

        class Shard:
            pass

        def shards() -> Any:
            shard = Shard()
            rng = random.Random(0)
            yield rng.random()
            del shard
            yield rng.random()

        running = shards()
        next(running)
        seen = weakref.ref(running.gi_frame.f_locals["shard"])
        find_generators(Box(), ("", running))
        next(running)

        assert seen() is None
