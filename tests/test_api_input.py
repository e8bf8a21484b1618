"""
Input validation of the public API: each bad argument is refused naming the parameter.

A wrong type is a TypeError, a value out of range a ValueError; nothing given is
ever silently read as something else or ignored.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import seedwatch
from pipelines import HoldsGenerator
from seedwatch import monitor
from seedwatch._api import is_dataset
from seedwatch._proxy import monitor_of
from seedwatch.testing import strict_mode


class TestExpectShared:
    @pytest.mark.parametrize("names", [None, 5, b"rng"], ids=["None", "int", "bytes"])
    def test_a_non_collection_names_the_parameter(self, names: object) -> None:
        """expect_shared=None, 5 or b'rng' is a TypeError that names expect_shared."""
        with pytest.raises(TypeError, match=r"expect_shared must be a collection.*\(str\), got"):
            monitor(HoldsGenerator(), expect_shared=names)  # type: ignore[arg-type]

    def test_an_empty_name_is_a_value_error(self) -> None:
        """An empty name can never match a source: a ValueError, not a silent no-op."""
        with pytest.raises(ValueError, match="expect_shared names must be non-empty"):
            monitor(HoldsGenerator(), expect_shared=[""])


class TestDraws:
    @pytest.mark.parametrize("integer", [np.int64, np.int32, np.uint16])
    def test_numpy_integers_are_accepted(self, integer: type[np.integer[Any]]) -> None:
        """A numpy integer is a count like any int."""
        monitored = monitor(HoldsGenerator(size=4), draws=integer(8))  # type: ignore[arg-type]

        monitor_ = monitor_of(monitored)
        assert monitor_ is not None
        assert 8 == monitor_.config.draws

    @pytest.mark.parametrize("flag", [True, np.True_], ids=["bool", "numpy-bool"])
    def test_a_bool_is_not_a_count(self, flag: object) -> None:
        """draws=True (numpy's bool too) is a TypeError, not one draw."""
        with pytest.raises(TypeError, match="draws must be an int from 2 to 4096"):
            monitor(HoldsGenerator(), draws=flag)  # type: ignore[arg-type]

    @pytest.mark.parametrize("draws", [-1, 0, 1, 4097])
    def test_out_of_range_says_the_range(self, draws: int) -> None:
        """draws=-1, 0, 1 or 4097 is a ValueError giving the allowed range."""
        with pytest.raises(ValueError, match=rf"draws must be between 2 and 4096, got {draws}"):
            monitor(HoldsGenerator(), draws=draws)


class TestSmallHelpers:
    def test_strict_mode_refuses_a_string(self) -> None:
        """strict_mode('yes') is a TypeError naming its parameter, not strictness."""
        with (
            pytest.raises(TypeError, match=r"strict_mode\(enabled\) takes True or False"),
            strict_mode("yes"),  # type: ignore[arg-type]
        ):
            pass

    def test_unregister_source_refuses_a_list(self) -> None:
        """unregister_source(['a']) is a TypeError naming its parameter."""
        with pytest.raises(TypeError, match=r"unregister_source\(name\) takes a source name"):
            seedwatch.unregister_source(["a"])  # type: ignore[arg-type]


class TestNotADataset:
    @pytest.mark.parametrize(
        ("value", "hint"),
        [
            ("images/", "text or bytes"),
            (b"bytes", "text or bytes"),
            (memoryview(b"bytes"), "text or bytes"),
            ({"train": 1}, "a mapping"),
            (collections.OrderedDict(train=1), "a mapping"),
            ({1, 2}, "a set"),
            ((i for i in range(3)), "an iterator"),
            (iter([1, 2]), "an iterator"),
            (itertools.count(), "an iterator"),
            (torch.zeros(3), "an array of data"),
            (np.zeros(3), "an array of data"),
        ],
        ids=lambda value: type(value).__name__,
    )
    def test_data_is_refused_saying_what_to_monitor(self, value: object, hint: str) -> None:
        """Indexable or iterable data is refused by type, with what to monitor instead."""
        with pytest.raises(
            TypeError,
            match=rf"expects a dataset \(a torch Dataset.*got {type(value).__qualname__}: {hint}",
        ):
            monitor(value)

    def test_a_class_is_refused_asking_for_an_instance(self) -> None:
        """monitor(HoldsGenerator) (the class) names the class and asks for an instance."""
        with pytest.raises(TypeError, match=r"got the class HoldsGenerator: .*an instance"):
            monitor(HoldsGenerator)

    @pytest.mark.parametrize("value", [[5, 6, 7], range(5, 8)], ids=["list", "range"])
    def test_sequences_a_dataloader_reads_are_datasets(self, value: list[int] | range) -> None:
        """A list or a range is a valid DataLoader dataset, so it is monitored."""
        assert 6 == monitor(value)[1]

    def test_a_refused_dataset_is_refused_by_check_too(self) -> None:
        """is_dataset, which `seedwatch check` uses on what a factory made, agrees."""
        assert not is_dataset({"train": HoldsGenerator()})


class TestAlreadyMonitored:
    def test_other_options_are_refused_naming_old_and_new(self) -> None:
        """monitor(monitored, strict=True, draws=-1) says what it has and what it would ignore."""
        monitored = monitor(HoldsGenerator(), draws=32)

        with pytest.raises(
            ValueError,
            match=r"already monitored, with strict=None, draws=32; "
            r"monitor\(\) would ignore strict=True, draws=-1\.",
        ):
            monitor(monitored, strict=True, draws=-1)

    @pytest.mark.parametrize(
        "options",
        [{"expect_shared": ["rng"]}, {"history": "runs.jsonl"}, {"distributed": False}],
        ids=["expect_shared", "history", "distributed"],
    )
    def test_each_new_option_is_refused(self, options: dict[str, Any]) -> None:
        """Every option the running monitor would not apply is named, never dropped."""
        monitored = monitor(HoldsGenerator())
        (name,) = options

        with pytest.raises(ValueError, match=rf"would ignore {name}="):
            monitor(monitored, **options)

    def test_the_options_it_has_are_accepted(self) -> None:
        """Options equal to the monitor's own ask for nothing new: the same object comes back."""
        monitored = monitor(HoldsGenerator(), strict=True, draws=32, expect_shared=["rng"])

        assert monitor(monitored, strict=True, draws=32, expect_shared=["rng"]) is monitored

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"expect_shared": None}, "expect_shared must be a collection"),
            ({"expect_shared": 5}, "expect_shared must be a collection"),
            ({"draws": "16"}, "draws must be an int"),
            ({"strict": "yes"}, "strict must be True, False or None"),
            ({"distributed": "yes"}, "distributed must be True, False, None"),
        ],
        ids=["expect_shared-None", "expect_shared-5", "draws", "strict", "distributed"],
    )
    def test_wrong_types_are_type_errors_here_too(
        self, options: dict[str, Any], message: str
    ) -> None:
        """A wrong type is the same TypeError as for a raw dataset, never accepted silently."""
        with pytest.raises(TypeError, match=message):
            monitor(monitor(HoldsGenerator()), **options)

    def test_a_monitored_loader_refuses_new_options(self) -> None:
        """monitor(monitor(loader), strict=True) names the loader and the option."""
        loader = monitor(DataLoader(HoldsGenerator(size=4), batch_size=2))

        with pytest.raises(
            ValueError, match=r"DataLoader is already monitored.*ignore strict=True"
        ):
            monitor(loader, strict=True)
        assert monitor(loader) is loader

    def test_a_loader_over_a_monitored_dataset_refuses_new_options(self) -> None:
        """A fresh loader over a monitored dataset cannot change that dataset's options."""
        dataset = monitor(HoldsGenerator(size=4))

        with pytest.raises(ValueError, match=r"HoldsGenerator is already monitored.*draws=8"):
            monitor(DataLoader(dataset, batch_size=2), draws=8)
