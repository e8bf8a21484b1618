"""End to end with the real libraries whose generators seedwatch must find (and not invent)."""

from __future__ import annotations

from typing import Any

import monai
import pytest
from torch.utils.data import DataLoader

from library_pipelines import (
    MonaiArrays,
    NoisePerWorker,
    closure_noise,
    hugging_face,
    hugging_face_partial,
    monai_dictionary_pipeline,
    webdataset_sample_shuffle,
    webdataset_shuffled_shards,
    write_shards,
)
from seedwatch import findings, monitor

pytestmark = pytest.mark.filterwarnings(
    "ignore::seedwatch.DuplicateStreamWarning", "ignore::UserWarning"
)


def run(
    dataset: Any,
    method: str = "fork",
    epochs: int = 1,
    loader: type[DataLoader[Any]] = DataLoader,
    **options: Any,
) -> list[tuple[str, str]]:
    """Iterate ``epochs`` through 2 real workers; return the findings as (source, kind)."""
    monitored = monitor(dataset)
    batches = loader(monitored, num_workers=2, multiprocessing_context=method, **options)
    for _ in range(epochs):
        for _batch in batches:
            pass
    return [(finding.source, finding.kind) for finding in findings(monitored)]


@pytest.fixture(name="method", params=["fork", "spawn"])
def _method(request: pytest.FixtureRequest) -> str:
    """Fork copies the parent's objects; spawn pickles them and imports the library afresh.

    Forkserver behaves as spawn for both (the workers import afresh, the dataset is pickled);
    importing these libraries in fresh workers costs seconds, so it is left out here.
    """
    return str(request.param)


@pytest.fixture(name="shards", scope="module")
def _shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return write_shards(tmp_path_factory.mktemp("shards"))


class TestMonai:
    def test_the_class_level_random_state_repeats_under_fork(self, method: str) -> None:
        """A transform without a state of its own draws from the class's Randomizable.R.

        Forked workers copy it; spawned ones import MONAI afresh, which seeds it from the OS.
        """
        expected = [("Randomizable.R", "workers")] if method == "fork" else []

        assert expected == run(MonaiArrays(), method, batch_size=4)

    def test_composed_transforms_repeat_with_torchs_loader(self) -> None:
        """Compose seeds each transform once, in the main process: every worker and epoch repeat."""
        found = run(monai_dictionary_pipeline(), epochs=2, batch_size=4)

        assert {"transform.R", "transform.transforms[0].R"} <= {source for source, _ in found}
        assert {"workers", "epochs"} == {kind for _, kind in found}

    @pytest.mark.parametrize("dataset", [MonaiArrays, monai_dictionary_pipeline])
    def test_monais_own_loader_is_clean(self, dataset: Any) -> None:
        """monai.data.DataLoader reseeds the transforms per worker: nothing to report."""
        assert [] == run(dataset(), epochs=2, loader=monai.data.DataLoader, batch_size=4)


class TestHuggingFace:
    def test_a_generator_in_the_transform_repeats(self, method: str) -> None:
        """with_transform(partial(fn, rng=...)) gives every worker the same noise."""
        assert [("_format_kwargs['transform'].keywords['rng']", "workers")] == run(
            hugging_face_partial(), method, batch_size=4
        )

    def test_a_closure_transform_repeats(self) -> None:
        """A closure capturing a generator is found by the function and the captured name."""
        assert [
            ("_format_kwargs['transform'](closure_noise.noisy).rng", "epochs"),
            ("_format_kwargs['transform'](closure_noise.noisy).rng", "workers"),
        ] == run(hugging_face(closure_noise(0)), epochs=2, batch_size=4)

    def test_a_transform_seeded_per_worker_is_clean(self) -> None:
        """The fix, a generator built on first use from torch.initial_seed(), is clean."""
        assert [] == run(hugging_face(NoisePerWorker()), epochs=2, batch_size=4)


class TestWebdataset:
    def test_the_shard_shuffle_repeats(self, method: str, shards: list[str]) -> None:
        """shardshuffle's generator lives in the running pipeline's frames, alike in each worker."""
        assert [("_shuffle().rng", "workers")] == run(
            webdataset_shuffled_shards(shards), method, batch_size=None
        )

    def test_and_repeats_every_epoch(self, shards: list[str]) -> None:
        """The epoch counter is advanced in the worker copies only: each epoch replays the order."""
        assert [("_shuffle().rng", "epochs"), ("_shuffle().rng", "workers")] == run(
            webdataset_shuffled_shards(shards), epochs=2, batch_size=None
        )

    def test_a_shuffle_seeded_per_process_is_clean(self, shards: list[str]) -> None:
        """wds.shuffle seeds from the process id and the time: no repeat."""
        assert [] == run(webdataset_sample_shuffle(shards), epochs=2, batch_size=None)
