"""What crosses a process boundary: each message survives the wire, and bad ones are refused."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from seedwatch._finding import Member
from seedwatch._report import Report, Stream
from seedwatch._wire import (
    MAX_FRAME,
    MAX_NAME,
    MalformedError,
    decode_member,
    decode_notice,
    decode_request,
    decode_verdict,
    encode_frame,
    encode_member,
    encode_notice,
    encode_request,
    encode_verdict,
    frame_length,
)

TOKEN = "0123abcd"  # noqa: S105 - a test token, not a secret


def sample() -> Report:
    return Report(
        generation="workers:1::7",
        worker=1,
        pid=4242,
        seed=99,
        streams={
            "numpy": Stream("00000000000000ff", "global", prefix="00ff" * 18),
            "rng": Stream(
                "000000000000abcd",
                "random.Random",
                "attribute",
                used=False,
                owner="t",
                holder="albumentations.core.composition.Compose",
                aliases=("t.transforms[0].py_random",),
            ),
        },
        later={"lazy": Stream("0123456789abcdef", "np.random.Generator(PCG64)", "attribute")},
        rank=3,
        resumed=True,
    )


def stream(**change: object) -> dict[str, object]:
    """A valid stream's wire form, changed."""
    return {"fp": "000000000000001f", "origin": "x", "place": "", **change}


def body(frame: bytes) -> bytes:
    assert len(frame) - 4 == frame_length(frame[:4])
    return frame[4:]


def request_body(change: Callable[[dict[str, Any]], object]) -> bytes:
    """A valid request's body, with ``change`` applied to its decoded JSON."""
    data = json.loads(body(encode_request(sample(), TOKEN, strict=True, awaits_verdict=True)))
    change(data)
    return json.dumps(data).encode()


class TestFrames:
    def test_a_frame_is_a_length_and_json(self) -> None:
        """A 4-byte big-endian length, then that many bytes of JSON."""
        frame = encode_frame({"a": 1})

        assert (len(frame) - 4, {"a": 1}) == (
            struct.unpack("!I", frame[:4])[0],
            json.loads(frame[4:]),
        )

    def test_an_oversized_header_is_refused_before_its_body(self) -> None:
        """A length over MAX_FRAME is malformed as soon as the header is there."""
        with pytest.raises(MalformedError, match="exceeds"):
            frame_length(struct.pack("!I", MAX_FRAME + 1))


class TestRequest:
    @pytest.mark.parametrize("awaits", [True, False])
    def test_round_trips(self, awaits: bool) -> None:
        """A report and its wish for a verdict survive the wire unchanged."""
        request = decode_request(
            body(encode_request(sample(), TOKEN, strict=awaits, awaits_verdict=awaits)), TOKEN
        )

        assert (sample(), awaits) == (request.report, request.awaits_verdict)

    def test_another_monitors_token_is_refused(self) -> None:
        """Only holders of the monitor's token are heard."""
        frame = encode_request(sample(), "forged", strict=False, awaits_verdict=False)

        with pytest.raises(MalformedError, match="not a message for this monitor"):
            decode_request(body(frame), TOKEN)

    @pytest.mark.parametrize(
        "damage",
        [
            lambda d: d["report"].pop("streams"),
            lambda d: d["report"].update(pid="4242"),
            lambda d: d["report"].update(worker=True),
            lambda d: d["report"].update(streams={"rng": ["000000000000001f", "x", ""]}),
            lambda d: d["report"].update(streams={"rng": "abc"}),
            lambda d: d["report"].update(streams={"rng": stream(fp="0x000000000000001f")}),
            lambda d: d["report"].update(streams={"rng": stream(fp="00000000000000AB")}),
            lambda d: d["report"].update(streams={"rng": stream(fp=1)}),
            lambda d: d["report"].update(streams={"rng": stream(fp="not hex")}),
            lambda d: d["report"].update(streams={"rng": {"origin": "x"}}),
            lambda d: d["report"].update(later={"rng": stream(origin=5)}),
            lambda d: d["report"].update(streams={"rng": stream(used="yes")}),
            lambda d: d["report"].update(streams={"rng": stream(aliases="t.rng")}),
            lambda d: d["report"].update(streams={"rng": stream(aliases=["a"] * 65)}),
            lambda d: d["report"].update(streams={"rng": stream(aliases=[1])}),
            lambda d: d["report"].update(streams={"rng": stream(prefix="xyz")}),
            lambda d: d["report"].update(streams={"rng": stream(prefix="abc")}),
            lambda d: d["report"].update(streams={"rng": stream(prefix="ab" * 1025)}),
            lambda d: d["report"].update(streams=[]),
            lambda d: d["report"].update(streams={f"s{i}": stream() for i in range(4097)}),
            lambda d: d["report"].update(pid=-1),
            lambda d: d["report"].update(pid=10**30),
            lambda d: d["report"].update(worker=-1),
            lambda d: d["report"].update(seed=1 << 64),
            lambda d: d["report"].update(rank=-3),
            lambda d: d["report"].update(generation="gen\n1"),
            lambda d: d["report"].update(streams={"rng\ud800": stream()}),
            lambda d: d["report"].update(streams={"\x1b[2Jrng": stream()}),
            lambda d: d["report"].update(streams={"r" * (MAX_NAME + 1): stream()}),
            lambda d: d["report"].update(streams={"rng": stream(owner="t\u202e")}),
            lambda d: d.update(report=[1, 2]),
            lambda d: d.pop("report"),
        ],
    )
    def test_malformed_reports_are_refused_whole(self, damage: Callable[[Any], object]) -> None:
        """Missing keys and wrong types are refused, never half-read."""
        with pytest.raises(MalformedError, match="malformed report"):
            decode_request(request_body(damage), TOKEN)

    def test_the_encoder_makes_every_name_acceptable(self) -> None:
        """Odd names of a worker (a key with a newline, a very long path) still get through."""
        odd = {
            "ds.table['a\\nb']\n": Stream("000000000000001f", "x"),
            "x" * 5000: Stream("000000000000001f", "x"),
        }
        frame = encode_request(
            replace(sample(), streams=odd), TOKEN, strict=False, awaits_verdict=False
        )

        names = list(decode_request(body(frame), TOKEN).report.streams)

        assert 2 == len(names)
        assert all(name.isprintable() and len(name) <= MAX_NAME for name in names)

    def test_strict_is_carried_without_waiting(self) -> None:
        """An exiting strict worker's note is strict but waits for nothing."""
        frame = encode_request(sample(), TOKEN, strict=True, awaits_verdict=False)

        request = decode_request(body(frame), TOKEN)

        assert (True, False) == (request.strict, request.awaits_verdict)

    @pytest.mark.parametrize("raw", [b"nope", b"[1]", b"\xff", b"[" * 100_000 + b"]" * 100_000])
    def test_non_objects_are_refused(self, raw: bytes) -> None:
        """A body that is not a JSON object is malformed."""
        with pytest.raises(MalformedError):
            decode_request(raw, TOKEN)


class TestVerdict:
    @pytest.mark.parametrize("error", [None, "seedwatch: duplicate random streams"])
    def test_round_trips(self, error: str | None) -> None:
        """Clean (None) and the strict-mode error text both survive."""
        assert error == decode_verdict(body(encode_verdict(error)))

    @pytest.mark.parametrize("raw", [b'{"error": 3}', b"[]", b"x"])
    def test_anything_else_is_refused(self, raw: bytes) -> None:
        """A verdict is an object whose error is a string or null."""
        with pytest.raises(MalformedError):
            decode_verdict(raw)


class TestRankValues:
    def test_a_member_round_trips(self) -> None:
        """A member's fields survive the store."""
        member = Member(generation=2, worker=None, pid=7, rank=1, seed=None)

        assert member == decode_member(encode_member(member))

    @pytest.mark.parametrize(
        "value",
        [
            "x",
            "[]",
            '{"generation": 0, "worker": 0, "pid": 1, "rank": null, "seed": 0}',
            '{"generation": 0, "worker": 0, "pid": "1", "rank": 0, "seed": 0}',
            '{"generation": true, "worker": 0, "pid": 1, "rank": 0, "seed": 0}',
            '{"generation": 0, "pid": 1, "rank": 0, "seed": 0}',
            '{"generation": 0, "worker": 0, "pid": -1, "rank": 0, "seed": 0}',
            '{"generation": 0, "worker": 0, "pid": 1, "rank": -1, "seed": 0}',
            '{"generation": -5, "worker": 0, "pid": 1, "rank": 0, "seed": 0}',
            '{"generation": 0, "worker": 0, "pid": 1, "rank": 0, "seed": 1e400}',
        ],
    )
    def test_a_malformed_member_is_refused(self, value: str) -> None:
        """Members need integer generation, pid and rank, and every field."""
        with pytest.raises(MalformedError):
            decode_member(value)

    def test_a_notice_round_trips(self) -> None:
        """An inbox notice is a source and a fingerprint."""
        assert ("rng", "00000000000000aa") == decode_notice(
            encode_notice("rng", "00000000000000aa")
        )

    @pytest.mark.parametrize(
        "value", ['["rng"]', '["rng", 3]', "{}", b"\xff", '["rng", "xyz"]', "[" * 100_000]
    )
    def test_a_malformed_notice_is_refused(self, value: str | bytes) -> None:
        """Anything but a pair of strings is malformed."""
        with pytest.raises(MalformedError):
            decode_notice(value)
