"""
What crosses a process boundary, in one place: each message, its encoder, its validating decoder.

Between a worker and its main process (over :mod:`seedwatch._transport`):

- a *frame*: a 4-byte big-endian length, then that many bytes of JSON;
- a *request* (worker to main): ``{"token", "await", "strict", "report"}``, where
  ``await`` asks for a verdict the worker will raise, ``strict`` says the worker
  is in strict mode (an exiting worker's last note is strict but waits for
  nothing), and ``report`` is a :class:`Report` whose
  ``streams`` and ``later`` map source names to a :class:`Stream`'s fields
  (``fp``, ``origin``, ``place``, ``used``, ``owner``, ``holder``, ``aliases``, ``prefix``);
- a *verdict* (main to worker): ``{"error"}``, the strict-mode error text or ``null``.

Between ranks (values in the c10d store, see :mod:`seedwatch._ranks`):

- a *member*: one process that drew a stream, a :class:`Member`'s fields;
- a *notice*: ``[source, fingerprint]``, a stream another rank shares with the reader.

Everything is JSON, never pickle. Every decoder validates the whole value and
raises :class:`MalformedError` (a ``ValueError``) rather than return half of it:
integers in range (:data:`INT_RANGES`), names printable and at most
:data:`MAX_NAME` characters (the encoder escapes and shortens its own so they
always pass), fingerprints 16 lowercase hex digits.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seedwatch._finding import Member
from seedwatch._report import Report, Stream

_HEADER = struct.Struct("!I")
HEADER_SIZE = _HEADER.size
MAX_FRAME = 1 << 20


class MalformedError(ValueError):
    """A value that another process sent or stored does not have the expected form."""


def encode_frame(message: dict[str, Any]) -> bytes:
    """Return ``message`` as a length-prefixed JSON frame."""
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    """
    Return the body length a frame's :data:`HEADER_SIZE`-byte header announces.

    Raises:
        MalformedError: It announces more than :data:`MAX_FRAME` bytes: the
            reader refuses before reading (or buffering) any of the body.

    """
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise MalformedError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return int(length)


@dataclass(frozen=True)
class Request:
    """A worker's report, and whether the worker waits for a verdict (strict mode)."""

    report: Report
    awaits_verdict: bool
    strict: bool


def encode_request(report: Report, token: str, *, strict: bool, awaits_verdict: bool) -> bytes:
    """Return the frame a worker sends: its report, for the monitor that ``token`` names."""
    return encode_frame(
        {
            "token": token,
            "await": awaits_verdict,
            "strict": strict,
            "report": _plain_report(report),
        }
    )


def decode_request(body: bytes, token: str) -> Request:
    """
    Read a request frame's body, sent to the monitor that ``token`` names.

    Raises:
        MalformedError: Not JSON, not for this monitor, or the report is malformed.

    """
    data = _json(body)
    if not isinstance(data, dict) or data.get("token") != token:
        raise MalformedError("not a message for this monitor")
    try:
        report = _report(data["report"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise MalformedError(f"malformed report: {exc!r}") from None
    awaits = data.get("await") is True
    return Request(report, awaits_verdict=awaits, strict=awaits or data.get("strict") is True)


def encode_verdict(error: str | None) -> bytes:
    """Return the frame the main process answers a waiting worker with."""
    return encode_frame({"error": error})


def decode_verdict(body: bytes) -> str | None:
    """
    Return the strict-mode error text of a verdict frame's body, or ``None`` for clean.

    Raises:
        MalformedError: Not a verdict.

    """
    data = _json(body)
    error = data.get("error") if isinstance(data, dict) else 0
    if error is not None and not isinstance(error, str):
        raise MalformedError("not a verdict")
    return error


def encode_member(member: Member) -> str:
    """Return the store value naming one process that drew a stream."""
    return json.dumps(member.as_dict(), separators=(",", ":"))


def decode_member(value: object, *, ranked: bool = True) -> Member:
    """
    Read a member from the store (or, not ``ranked``, from a history file line).

    Raises:
        MalformedError: Not a member's JSON (``generation`` and ``pid`` required,
            and ``rank`` when ``ranked``).

    """
    data = _json(value)
    try:
        if not isinstance(data, dict):
            raise TypeError("not an object")  # noqa: TRY301 - one exit for every defect
        return Member(
            generation=_int(data["generation"], "generation"),
            worker=_optional_int(data["worker"], "worker"),
            pid=_int(data["pid"], "pid"),
            rank=_int(data["rank"], "rank") if ranked else _optional_int(data.get("rank"), "rank"),
            seed=_optional_int(data["seed"], "seed"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedError(f"malformed member: {exc!r}") from None


def encode_notice(source: str, fingerprint: str) -> str:
    """Return the inbox value telling a rank that the sender drew one of its streams too."""
    return json.dumps([source, fingerprint])


def decode_notice(value: object) -> tuple[str, str]:
    """
    Read an inbox notice: ``(source, fingerprint)``.

    Raises:
        MalformedError: Not a pair of strings.

    """
    data = _json(value)
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(v, str) for v in data)):
        raise MalformedError("malformed notice")
    if not _FINGERPRINT.fullmatch(data[1]):
        raise MalformedError("malformed notice: not a fingerprint")
    return data[0], data[1]


def _plain_report(report: Report) -> dict[str, Any]:
    return {
        "generation": _sendable(report.generation),
        "worker": report.worker,
        "pid": report.pid,
        "seed": report.seed,
        "rank": report.rank,
        "streams": _plain_streams(report.streams),
        "later": _plain_streams(report.later),
        "resumed": report.resumed,
    }


def _plain_streams(streams: Mapping[str, Stream]) -> dict[str, dict[str, Any]]:
    return {
        _sendable(name): _plain_stream(stream)
        for name, stream in list(streams.items())[:MAX_STREAMS]  # what a receiver accepts
    }


def _plain_stream(stream: Stream) -> dict[str, Any]:
    """Return a stream's fields but those at their default, which the receiver fills in."""
    plain: dict[str, Any] = {
        "fp": stream.fingerprint,
        "origin": _sendable(stream.origin),
        "prefix": stream.prefix,
    }
    if not stream.used:
        plain["used"] = False
    for key, text in (("place", stream.place), ("owner", stream.owner), ("holder", stream.holder)):
        if text:
            plain[key] = _sendable(text)
    if stream.aliases:
        plain["aliases"] = [_sendable(alias) for alias in stream.aliases[:MAX_ALIASES]]
    return plain


def _sendable(name: str) -> str:
    """Return ``name`` as a receiver accepts it: printable, at most :data:`MAX_NAME` characters."""
    if not name.isprintable():
        name = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name)
    if len(name) > MAX_NAME:
        digest = hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
        name = f"{name[: MAX_NAME - 17]}~{digest}"
    return name


#: The most other paths to one generator a report may name.
MAX_ALIASES = 64
#: The most streams a report may name (in ``streams``, and again in ``later``).
MAX_STREAMS = 4096
#: The longest name (of a source, a place, a holder, a generation) a report may carry.
MAX_NAME = 1024
#: The values an integer field may take: process ids and seeds are unsigned, at most 64 bits.
INT_RANGES = {
    "pid": range(1 << 32),
    "worker": range(1 << 20),
    "rank": range(1 << 24),
    "seed": range(1 << 64),
    "generation": range(1 << 32),
}
_PREFIX = re.compile("(?:[0-9a-f]{2}){0,1024}")


def _streams(data: object) -> dict[str, Stream]:
    if not isinstance(data, dict):
        raise TypeError("streams must be a JSON object")
    if len(data) > MAX_STREAMS:
        raise ValueError(f"a report names at most {MAX_STREAMS} streams")
    streams = {}
    for name, value in data.items():
        if not isinstance(value, dict):
            raise TypeError("a stream must be a JSON object")
        aliases = value.get("aliases", [])
        if not isinstance(aliases, list) or len(aliases) > MAX_ALIASES:
            raise TypeError(f"aliases must be a list of at most {MAX_ALIASES} names")
        prefix = value.get("prefix", "")
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise ValueError("a prefix is hex digits, at most 2048")
        used = value.get("used", True)
        if not isinstance(used, bool):
            raise TypeError("used must be true or false")
        streams[_text(name)] = Stream(
            _fingerprint(value["fp"]),
            _text(value["origin"]),
            _text(value.get("place", "")),
            used=used,
            owner=_text(value.get("owner", "")),
            holder=_text(value.get("holder", "")),
            aliases=tuple(_text(alias) for alias in aliases),
            prefix=prefix,
        )
    return streams


def _report(data: object) -> Report:
    if not isinstance(data, dict):
        raise TypeError("a report must be a JSON object")
    return Report(
        generation=_text(data["generation"]),
        worker=_optional_int(data["worker"], "worker"),
        pid=_int(data["pid"], "pid"),
        seed=_optional_int(data["seed"], "seed"),
        streams=_streams(data["streams"]),
        rank=_optional_int(data.get("rank"), "rank"),
        later=_streams(data.get("later", {})),
        resumed=data.get("resumed") is True,
    )


def _json(value: object) -> object:
    try:
        return json.loads(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:
        # RecursionError: a hostile value nested 100,000 deep is malformed, not fatal.
        raise MalformedError(f"not JSON: {type(exc).__name__}") from None


_FINGERPRINT = re.compile("[0-9a-f]{16}")


def _fingerprint(value: object) -> str:
    text = _text(value)
    if not _FINGERPRINT.fullmatch(text):
        raise ValueError("a fingerprint is 16 lowercase hex digits")
    return text


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_NAME or not value.isprintable():
        raise ValueError(f"a name is at most {MAX_NAME} printable characters")
    return value


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value not in INT_RANGES[name]:
        raise ValueError(f"{name}: {value} is out of range")
    return value


def _optional_int(value: object, name: str) -> int | None:
    return None if value is None else _int(value, name)
