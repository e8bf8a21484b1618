"""End to end with the real libraries whose generators seedwatch must find (and not invent)."""

from __future__ import annotations

from typing import Any

import monai
import pytest
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from library_pipelines import (
    Augmented,
    MonaiArrays,
    NoisePerWorker,
    NoisyRows,
    NoisyRowsPerSample,
    closure_noise,
    hugging_face,
    hugging_face_partial,
    monai_dictionary_pipeline,
    reseed_compose,
    reseed_monai,
    shuffled_iterable,
    webdataset_sample_shuffle,
    webdataset_shuffled_shards,
    write_shards,
)
from seedwatch import Finding, Findings, findings, monitor

pytestmark = pytest.mark.filterwarnings(
    "ignore::seedwatch.DuplicateStreamWarning", "ignore::UserWarning"
)


def run(
    dataset: Any,
    method: str = "fork",
    epochs: int = 1,
    loader: type[DataLoader[Any]] = DataLoader,
    **options: Any,
) -> Findings:
    """Iterate ``epochs`` through 2 real workers; return the findings."""
    monitored = monitor(dataset)
    batches = loader(monitored, num_workers=2, multiprocessing_context=method, **options)
    for _ in range(epochs):
        for _batch in batches:
            pass
    return findings(monitored)


def summary(found: list[Finding]) -> list[tuple[str, tuple[str, ...]]]:
    """Each finding as its first source and its kinds."""
    return [(finding.source, finding.kinds) for finding in found]


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


class TestAlbumentations:
    def test_a_compose_is_one_finding(self, method: str) -> None:
        """Nine transforms, twenty generators, copied into every worker: one problem, one fix."""
        found = run(Augmented(), method, epochs=2, batch_size=4)

        [finding] = found
        assert ("workers", "epochs") == finding.kinds
        assert "albumentations at 'augment'" == finding.owner
        assert "info.dataset.augment.set_random_seed(info.seed % 2**32)" in finding.hint
        assert all(source.startswith("augment.") for source in finding.sources)
        assert len(found.latent) <= 1  # generators no transform drew from, if any

    def test_a_seeded_compose_is_one_finding(self) -> None:
        """Compose(seed=137) gives every transform the same seed: still one problem."""
        [finding] = run(Augmented(seed=137), epochs=2, batch_size=4)

        assert ("workers", "epochs") == finding.kinds

    def test_the_hint_applied_is_clean(self, method: str) -> None:
        """set_random_seed(info.seed) per worker, as the hint says: nothing to report."""
        found = run(Augmented(), method, epochs=2, batch_size=4, worker_init_fn=reseed_compose)

        assert [] == found


class TestMonai:
    def test_the_class_level_random_state_repeats_under_fork(self, method: str) -> None:
        """A transform without a state of its own draws from the class's Randomizable.R.

        Forked workers copy it; spawned ones import MONAI afresh, which seeds it from the OS.
        """
        found = run(MonaiArrays(), method, batch_size=4)

        expected = [("Randomizable.R", ("workers",))] if method == "fork" else []
        assert expected == summary(found)
        if found:
            assert "info.dataset.noise.set_random_state(seed=info.seed % 2**32)" in found[0].hint

    def test_composed_transforms_are_one_finding_with_torchs_loader(self) -> None:
        """Compose seeds each transform once, in the main process: every worker and epoch repeat.

        The Compose's own state, which a plain Compose never draws from, is latent.
        """
        found = run(monai_dictionary_pipeline(), epochs=2, batch_size=4)

        [finding] = found
        assert "transform.transforms[0].R" == finding.source
        assert ["transform.R"] == [latent.source for latent in found.latent]
        assert ("workers", "epochs") == finding.kinds
        assert "monai.data.DataLoader" in finding.hint

    @pytest.mark.parametrize("dataset", [MonaiArrays, monai_dictionary_pipeline])
    def test_monais_own_loader_is_clean(self, dataset: Any) -> None:
        """monai.data.DataLoader reseeds the transforms per worker: nothing to report."""
        assert [] == run(dataset(), epochs=2, loader=monai.data.DataLoader, batch_size=4)

    def test_set_random_state_per_worker_is_clean(self) -> None:
        """The other hint applied: set_random_state(seed=info.seed) in worker_init_fn."""
        assert [] == run(MonaiArrays(), epochs=2, batch_size=4, worker_init_fn=reseed_monai)


class TestHuggingFace:
    def test_a_generator_in_the_transform_repeats(self, method: str) -> None:
        """with_transform(partial(fn, rng=...)) gives every worker the same noise."""
        assert [("_format_kwargs['transform'].keywords['rng']", ("workers",))] == summary(
            run(hugging_face_partial(), method, batch_size=4)
        )

    def test_a_closure_transform_repeats(self) -> None:
        """A closure capturing a generator is found by the function and the captured name."""
        assert [
            ("_format_kwargs['transform'](closure_noise.noisy).rng", ("workers", "epochs"))
        ] == summary(run(hugging_face(closure_noise(0)), epochs=2, batch_size=4))

    def test_a_transform_seeded_per_worker_is_clean(self) -> None:
        """The fix, a generator built on first use from torch.initial_seed(), is clean."""
        assert [] == run(hugging_face(NoisePerWorker()), epochs=2, batch_size=4)

    def test_a_shuffled_iterable_without_set_epoch_repeats_its_shuffle(self, method: str) -> None:
        """IterableDataset.shuffle without set_epoch: each epoch replays the buffer shuffle.

        Its template generator is never drawn from (the library copies and reseeds it):
        latent, not a finding.
        """
        found = run(shuffled_iterable(), method, epochs=2, batch_size=4)

        [finding] = found
        assert ("epochs",) == finding.kinds
        assert "set_epoch(epoch)" in finding.hint
        assert found.latent

    def test_set_epoch_makes_a_shuffled_iterable_clean(self) -> None:
        """The hint applied: set_epoch before each epoch, as the datasets docs say."""
        dataset = monitor(shuffled_iterable())
        loader = DataLoader(dataset, num_workers=2, batch_size=4)
        for epoch in range(2):
            dataset.set_epoch(epoch)
            for _batch in loader:
                pass

        assert [] == findings(dataset)


class TestWebdataset:
    def test_the_shard_shuffle_is_alike_in_every_worker_by_design(
        self, method: str, shards: list[str]
    ) -> None:
        """webdataset seeds the shard shuffle alike in every worker: not reported."""
        assert [] == run(webdataset_shuffled_shards(shards), method, batch_size=None)

    @pytest.mark.parametrize("persistent", [False, True])
    def test_but_it_repeats_every_epoch(self, shards: list[str], persistent: bool) -> None:
        """The seed is fixed when the dataset is built: each epoch replays the shard order."""
        [finding] = run(
            webdataset_shuffled_shards(shards),
            epochs=2,
            batch_size=None,
            persistent_workers=persistent,
        )

        assert ("_shuffle().rng", ("epochs",)) == (finding.source, finding.kinds)
        assert "detshuffle=True" in finding.hint

    def test_detshuffle_with_persistent_workers_is_clean(self, shards: list[str]) -> None:
        """The hint applied: detshuffle's epoch counter advances in each persistent worker."""
        found = run(
            webdataset_shuffled_shards(shards, detshuffle=True),
            epochs=2,
            batch_size=None,
            persistent_workers=True,
        )

        assert [] == found

    def test_a_shuffle_seeded_per_process_is_clean(self, shards: list[str]) -> None:
        """wds.shuffle seeds from the process id and the time: no repeat."""
        assert [] == run(webdataset_sample_shuffle(shards), epochs=2, batch_size=None)


def resume_mid_epoch(dataset: Any, method: str, *, monitor_loader: bool = False) -> Findings:
    """Run a StatefulDataLoader four batches in, save its state, resume it in a new loader."""
    monitored = monitor(dataset)

    def loader() -> Any:
        made = StatefulDataLoader(
            monitored, batch_size=2, num_workers=2, multiprocessing_context=method
        )
        return monitor(made) if monitor_loader else made

    first = loader()
    iterator = iter(first)
    for _ in range(4):
        next(iterator)
    state = first.state_dict()
    del iterator
    resumed = loader()
    resumed.load_state_dict(state)
    for _batch in resumed:
        pass
    return findings(monitored)


class TestTorchdata:
    def test_a_resumed_loader_replays_the_epochs_draws(self, method: str) -> None:
        """load_state_dict restores the base seed: every worker replays its streams. A resume,
        not a manual_seed per epoch."""
        [finding] = resume_mid_epoch(NoisyRows(), method)

        assert ("resume",) == finding.kinds
        assert "torch" in finding.sources
        assert "StatefulDataLoader.load_state_dict" in finding.hint
        assert any(member.resumed for member in finding.members)

    def test_through_a_monitored_loader_too(self) -> None:
        """monitor(StatefulDataLoader) keeps state_dict and load_state_dict working."""
        assert [("torch", ("resume",))] == summary(
            resume_mid_epoch(NoisyRows(), "fork", monitor_loader=True)
        )

    def test_per_sample_randomness_resumes_cleanly(self) -> None:
        """The hint applied: randomness from (seed, index) draws no stream to replay."""
        assert [] == resume_mid_epoch(NoisyRowsPerSample(), "fork")
