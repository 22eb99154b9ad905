"""The raw record's JSON: what the standard library accepted is written as equal JSON, what it
refused is still dead-lettered, whichever encoder wrote it."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.simulator.novasim import SimulatedCloud
from schemas.raw import DeadLetter, RawRecord, build_raw_record, encode_document, pack, scrub_context, unpack

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def message(payload: Any, ctxt: Any = None, timestamp: Any = "2026-11-29 12:00:00.000001") -> dict[str, Any]:
    return {
        "ctxt": ctxt if ctxt is not None else {"request_id": "req-1", "msg_id": None},
        "publisher_id": "nova-compute:h1",
        "event_type": "instance.update",
        "payload": payload,
        "metadata": {"message_id": "m-1", "timestamp": timestamp},
    }


def standard(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def simulated_payloads() -> list[dict[str, Any]]:
    cloud = SimulatedCloud(seed=5, start=NOW)
    payloads = []
    for index, fmt in enumerate(("versioned", "legacy")):
        notes = cloud.varied_lifecycle(cloud.new_vm(index), index, fmt, False)
        payloads += [note.payload for note in notes]
    return payloads


def test_simulated_notifications_are_written_as_the_standard_library_wrote_them() -> None:
    payloads = simulated_payloads()
    assert payloads
    for payload in payloads:
        record = build_raw_record(message(payload), "info", "own_reg", NOW, 1_000_000)
        assert isinstance(record, RawRecord)
        assert json.loads(record.value) == json.loads(standard(json.loads(record.value)))
        assert json.loads(record.value)["payload"] == payload


@pytest.mark.parametrize(
    "document",
    [
        {"text": "héllo wörld ✓ 日本 😀", "n": 1},
        {"big": 2**70, "small": -(2**64), "edge": 2**64 - 1, "neg": -(2**63)},
        {"floats": [0.1, 1e16, 1e-7, -0.0, 1.5e300, 5e-324], "ints": [0, -1]},
        {"tuple": (1, "a"), "nested": {"list": [None, True, False]}},
        {"level": Level.HIGH},
        {"deep": json.loads("[" * 300 + "]" * 300)},
        {"surrogate": "\ud800 alone"},
        {"controls": "line\nbreak\ttab\u2028sep\x00nul"},
    ],
)
def test_what_the_standard_library_writes_is_written_as_equal_json(document: Any) -> None:
    value = encode_document(document)
    assert json.loads(value) == json.loads(standard(document))
    assert b"\n" not in value  # one document per line when packed


@pytest.mark.parametrize(
    "bad",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        {"nested": [1, {"x": float("nan")}]},
        {1, 2},
        b"bytes",
        uuid.UUID(int=1),
        datetime(2026, 1, 1),
        Colour.RED,
        object(),
    ],
)
def test_what_the_standard_library_refuses_is_refused_and_dead_lettered(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        standard({"x": bad})
    with pytest.raises((TypeError, ValueError)):
        encode_document({"x": bad})
    record = build_raw_record(message({"instance_id": "vm", "x": bad}), "info", "own_reg", NOW, 100_000)
    assert isinstance(record, DeadLetter) and record.reason == "not_serializable"
    assert record.key == b"vm"


def test_non_finite_numbers_anywhere_in_the_document_are_dead_lettered() -> None:
    for document in (
        message({"instance_id": "vm"}, timestamp=float("nan")),
        message({"instance_id": "vm"}, ctxt={"quota": float("inf")}),
        message({"instance_id": "vm", "metrics": [1.0, float("-inf")]}),
    ):
        record = build_raw_record(document, "info", "own_reg", NOW, 100_000)
        assert isinstance(record, DeadLetter) and record.reason == "not_serializable"


def test_big_integers_are_written_exactly() -> None:
    record = build_raw_record(message({"instance_id": "vm", "n": 2**80 + 1}), "info", "o_r", NOW, 100_000)
    assert isinstance(record, RawRecord)
    assert json.loads(record.value)["payload"]["n"] == 2**80 + 1


def test_non_ascii_is_utf8_and_packs_and_unpacks_intact() -> None:
    records = [
        build_raw_record(message({"instance_id": "vm", "name": f"vé-{i} ✓"}), "info", "o_r", NOW, 100_000)
        for i in range(3)
    ]
    assert all(isinstance(r, RawRecord) for r in records)
    raw = [r for r in records if isinstance(r, RawRecord)]
    assert "vé-0 ✓".encode() in raw[0].value
    (packed,) = pack(raw, lambda _key: 0, 500, 1_000_000)
    unpacked = unpack(packed.key, packed.value, packed.headers)
    assert [json.loads(u.value)["payload"]["name"] for u in unpacked] == ["vé-0 ✓", "vé-1 ✓", "vé-2 ✓"]


def test_context_scrubbing_is_the_same_for_repeated_and_unusual_keys() -> None:
    ctxt = {"auth_token": "a", "USER_ID": "u", "Service_Catalog": [], 7: "seven", None: "n"}
    for _ in range(3):
        assert scrub_context(ctxt) == {"USER_ID": "u", "7": "seven", "None": "n"}
    assert scrub_context({"X-Auth-Token": "t", "request_id": "r"}) == {"request_id": "r"}
