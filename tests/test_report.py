from __future__ import annotations

import json

import pytest

from seedwatch._report import Report, Stream


def sample() -> Report:
    return Report(
        generation="workers:1::7",
        worker=1,
        pid=4242,
        seed=99,
        streams={"numpy": Stream("00ff", "global"), "rng": Stream("abcd", "random.Random")},
    )


class TestReport:
    def test_round_trips_through_json(self) -> None:
        """A report survives its JSON form unchanged."""
        report = sample()

        assert report == Report.from_plain(json.loads(json.dumps(report.to_plain())))

    @pytest.mark.parametrize(
        "damage",
        [
            lambda d: d.pop("streams"),
            lambda d: d.update(pid="4242"),
            lambda d: d.update(worker=True),
            lambda d: d.update(streams={"rng": ["abcd"]}),
            lambda d: d.update(streams={"rng": [1, "x"]}),
            lambda d: d.update(streams=[]),
        ],
    )
    def test_rejects_malformed_reports(self, damage: object) -> None:
        """Missing keys and wrong types are a ValueError, never a half-read report."""
        plain = sample().to_plain()
        damage(plain)  # type: ignore[operator]

        with pytest.raises(ValueError, match="malformed"):
            Report.from_plain(plain)

    def test_rejects_non_objects(self) -> None:
        """A report must be a JSON object."""
        with pytest.raises(ValueError, match="JSON object"):
            Report.from_plain([1, 2])
