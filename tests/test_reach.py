"""Where real pipelines keep their randomness: every place found, under every start method."""

from __future__ import annotations

import copy
import pickle
import weakref
from typing import Any

import pytest
import torch
from torch.utils.data import IterableDataset

from pipelines import START_METHODS, StreamDataset, load
from reach_pipelines import Reach, ReachStream, reach_worker_init, reset_generators
from seedwatch import DuplicateStreamError, Finding, findings, monitor

pytestmark = pytest.mark.filterwarnings("ignore::seedwatch.DuplicateStreamWarning")

#: The bad generators of ``Reach``, one finding per place (each place has its own fix);
#: the closure only under fork.
REACH_BAD: list[tuple[str, ...]] = [
    ("BadAugment.R",),  # a class attribute
    ("flip_bad.__self__.state",),  # a bound method's object
    ("lazy_bad", "per_item_bad"),  # created lazily in __getitem__, re-created at every item
    ("random",),  # the global, reseeded inside __getitem__
    ("reach_pipelines.BAD_NOISE",),  # a module global named by a helper's code
]
#: Functions' captured generators: a functools.partial's, and a closure's (fork only).
PARTIAL_BAD: tuple[str, ...] = ("jitter_bad.keywords['rng']",)
CLOSURE_BAD: tuple[str, ...] = (*PARTIAL_BAD, "noise_bad(make_noise.add).rng")
STREAM_BAD: list[tuple[str, ...]] = [
    ("ReachStream._noisy().rng_bad", "ReachStream._rows().order_bad")
]


def summary(found: list[Finding]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    return [(finding.sources, finding.kinds) for finding in found]


def expected(
    sources: list[tuple[str, ...]], kinds: tuple[str, ...]
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    return sorted((names, kinds) for names in sources)


@pytest.fixture(name="method", params=START_METHODS)
def _method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestEveryPlace:
    def test_map_style_places_are_found_and_their_twins_are_clean(self, method: str) -> None:
        """Each bad generator repeats across workers; no ok twin is ever reported."""
        closures = method == "fork"  # closures do not pickle for spawn or forkserver
        monitored = monitor(Reach(closures=closures))

        load(monitored, method=method, epochs=1, worker_init_fn=reach_worker_init)

        sources = [*REACH_BAD, CLOSURE_BAD if closures else PARTIAL_BAD]
        assert expected(sources, ("workers",)) == summary(findings(monitored))

    def test_an_iterables_running_frames_are_found(self, method: str) -> None:
        """Generators local to __iter__ and to what it delegates to repeat across workers."""
        monitored = monitor(ReachStream())

        load(monitored, method=method, epochs=1)

        assert expected(STREAM_BAD, ("workers",)) == summary(findings(monitored))

    def test_every_place_repeats_across_epochs(self) -> None:
        """Born before or after the first item, each bad stream is the same next epoch."""
        reach, stream = monitor(Reach()), monitor(ReachStream())

        load(reach, epochs=2, worker_init_fn=reach_worker_init)
        load(stream, epochs=2)

        assert expected([*REACH_BAD, CLOSURE_BAD], ("workers", "epochs")) == summary(
            findings(reach)
        )
        assert expected(STREAM_BAD, ("workers", "epochs")) == summary(findings(stream))

    def test_findings_name_the_place_and_its_fix(self) -> None:
        """Class attributes, module globals, closures and late generators each get their own fix."""
        monitored = monitor(Reach())

        load(monitored, epochs=1, worker_init_fn=reach_worker_init)

        hints = {finding.source: finding.hint for finding in findings(monitored)}
        assert "is a class attribute" in hints["BadAugment.R"]
        assert "is a module global" in hints["reach_pipelines.BAD_NOISE"]
        assert "captured by a function" in hints[CLOSURE_BAD[0]]  # the partial and the closure
        assert "created while items are served" in hints["lazy_bad"]
        assert "random.seed(...)" in hints["random"]


class TestTransparency:
    @pytest.mark.parametrize("dataset", [Reach, ReachStream], ids=["map", "iterable"])
    @pytest.mark.parametrize("workers", [0, 2])
    def test_batches_are_bit_identical(self, dataset: Any, workers: int) -> None:
        """The second look reads copies of state: every batch equals the raw pipeline's."""
        options: dict[str, Any] = {"workers": workers, "epochs": 2}
        if dataset is Reach and workers:
            options["worker_init_fn"] = reach_worker_init
        torch.manual_seed(0)
        reset_generators()  # the main process draws from them itself when workers=0
        raw = load(dataset(), **options)
        torch.manual_seed(0)
        reset_generators()
        monitored = load(monitor(dataset()), **options)

        assert raw == monitored

    def test_an_empty_iterable_still_reports(self) -> None:
        """A shard with no items ends cleanly and its streams are still judged."""
        monitored = monitor(ReachStream(size=0))

        assert [] == list(monitored)
        assert [] == findings(monitored)


class ResumableRows:
    """An iterator object with more than __next__ (as torchdata's stateful iterators have)."""

    def __init__(self, size: int) -> None:
        self.position, self.size = 0, size

    def __iter__(self) -> ResumableRows:
        return self

    def __next__(self) -> int:
        if self.position >= self.size:
            raise StopIteration
        self.position += 1
        return self.position

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}


class Resumable(IterableDataset[int]):
    def __iter__(self) -> ResumableRows:
        return ResumableRows(3)


def test_an_iterator_object_is_kept_whole() -> None:
    """A dataset's own iterator object keeps its methods and yields the same items."""
    iterator = iter(monitor(Resumable()))

    assert [1, 2] == [next(iterator), next(iterator)]
    assert {"position": 2} == iterator.state_dict()
    assert [3] == list(iterator)


class Conversation(IterableDataset[Any]):
    """An iterable whose generator answers what is sent and catches what is thrown."""

    def __iter__(self) -> Any:
        received = yield "first"
        while True:
            try:
                received = yield f"got {received}"
            except ValueError:  # noqa: PERF203 - the conversation under test
                received = yield "caught"


def conversation(dataset: Any) -> list[Any]:
    iterator = iter(dataset)
    said = [next(iterator), iterator.send("hello"), iterator.throw(ValueError()), next(iterator)]
    iterator.close()
    return said


class TestGeneratorProtocol:
    def test_send_throw_and_close_reach_the_users_generator(self) -> None:
        """Around the first item too, the monitored iterator converses exactly like the raw one."""
        assert conversation(Conversation()) == conversation(monitor(Conversation()))

    def test_the_first_item_is_not_kept_alive(self) -> None:
        """Once the second item is out, the wrapper holds no reference to the first."""

        class Item:
            pass

        class Items(IterableDataset[Any]):
            def __iter__(self) -> Any:
                while True:
                    yield Item()

        iterator = iter(monitor(Items()))
        first = weakref.ref(next(iterator))
        next(iterator)

        assert first() is None

    def test_an_iterator_object_pickles_and_copies_as_itself(self) -> None:
        """Pickling or copying the monitored iterator gives the dataset's own iterator."""
        iterator = iter(monitor(Resumable()))
        next(iterator)

        assert {"position": 1} == pickle.loads(pickle.dumps(iterator)).state_dict()  # noqa: S301
        assert {"position": 1} == copy.copy(iterator).state_dict()


def test_strict_mode_raises_even_when_a_worker_has_no_items() -> None:
    """Three workers, two items: the loop raises; the worker with an empty shard never hangs."""
    monitored = monitor(StreamDataset(size=2), strict=True)

    with pytest.raises(DuplicateStreamError, match="'rng' repeats across workers"):
        load(monitored, epochs=1, workers=3, batch_size=1)


def test_a_generator_only_one_worker_drew_is_no_repeat() -> None:
    """One item, two workers: the worker with an empty shard never drew, so nothing repeats."""
    monitored = monitor(StreamDataset(size=1), strict=True)

    load(monitored, epochs=1, batch_size=1)

    assert [] == findings(monitored)
