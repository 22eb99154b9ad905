from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from streams import codecs
from streams.normalise import normalise
from tests.unit import nova_samples
from tests.unit.nova_samples import RECEIVED_AT, VERSIONED, VIM_ID


def _registry_client_available() -> bool:
    try:
        codecs.ConfluentCodec("mock://probe")
    except codecs.CodecError:
        return False
    return True


needs_registry_client = pytest.mark.skipif(
    not _registry_client_available(), reason="confluent-kafka's schema registry client cannot be imported"
)


@pytest.fixture
def event() -> dict[str, Any]:
    result = normalise(
        nova_samples.by_name(VERSIONED, "instance-create-error.json"), vim_id=VIM_ID, received_at=RECEIVED_AT
    )
    assert result is not None
    return dict(result)


def _write(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "message.bin"
    path.write_bytes(data)
    return str(path)


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_schema_prints_the_schema_and_its_fingerprint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == codecs.SCHEMA
    assert codecs.FINGERPRINT_HEX in err
    assert str(int.from_bytes(codecs.FINGERPRINT, "little", signed=True)) in err


@pytest.mark.parametrize("fmt", ["avro", "json"])
@pytest.mark.parametrize("flag", [None, "auto", "same"])
def test_decode_a_file(
    fmt: str, flag: str | None, event: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, codecs.encode(event, fmt))
    argv = ["decode", path]
    if flag is not None:
        argv += ["--format", fmt if flag == "same" else flag]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == codecs.event_to_json_dict(event)
    assert codecs.decode(out.encode()) == event
    assert err == ""


def test_decode_from_stdin(
    event: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, codecs.encode_avro(event))
    assert main(["decode", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["fault"]["exception"] == "FlavorDiskTooSmall"
    _stdin(monkeypatch, codecs.encode_json(event))
    assert main(["decode"]) == 0
    assert json.loads(capsys.readouterr().out)["instance_id"] == event["instance_id"]


@needs_registry_client
def test_decode_confluent_through_the_registry(
    event: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # One in-memory registry shared by the writer and the CLI, as one real registry would be.
    registry = codecs.ConfluentCodec("mock://tools-test")
    urls: list[str] = []

    def connect(url: str) -> codecs.ConfluentCodec:
        urls.append(url)
        return registry

    monkeypatch.setattr(codecs, "ConfluentCodec", connect)
    path = _write(tmp_path, registry.encode(event))
    assert main(["decode", path, "--schema-registry-url", "http://registry:8081"]) == 0
    assert json.loads(capsys.readouterr().out) == codecs.event_to_json_dict(event)
    assert (
        main(["decode", path, "--format", "confluent", "--schema-registry-url", "http://registry:8081"]) == 0
    )
    assert json.loads(capsys.readouterr().out) == codecs.event_to_json_dict(event)
    assert urls == ["http://registry:8081", "http://registry:8081"]


def _assert_one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("eventfed decode: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


@pytest.mark.parametrize(
    ("data", "argv", "needles"),
    [
        (b"garbage", [], ("unrecognised format",)),
        (b"\xc3\x01" + bytes(8) + b"\x00", [], ("unknown schema fingerprint 0000000000000000",)),
        (b'{"state": 1}', [], ("JSON event",)),
        (b"{", ["--format", "json"], ("not valid JSON",)),
        (b"{}", ["--format", "avro"], ("C3 01",)),
        (b"\x00\x00\x00\x00\x01\x02", [], ("schema registry URL", "schema id 1")),
        pytest.param(
            b"\x00\x00\x00\x00\x01\x02",
            ["--schema-registry-url", "mock://empty"],
            ("schema id 1",),
            marks=needs_registry_client,
        ),
    ],
)
def test_bad_messages_are_one_line_and_exit_1(
    data: bytes, argv: list[str], needles: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["decode", _write(tmp_path, data), *argv]) == 1
    _assert_one_line_error(capsys, *needles)


def test_truncated_avro_is_one_line(
    event: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["decode", _write(tmp_path, codecs.encode_avro(event)[:-7])]) == 1
    _assert_one_line_error(capsys, "truncated or corrupt")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(tmp_path / "nothing.bin")]) == 1
    _assert_one_line_error(capsys, "cannot read", "nothing.bin")


def test_unreachable_registry_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Unreachable:
        def decode(self, data: bytes) -> None:
            raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(codecs, "ConfluentCodec", lambda url: Unreachable())
    argv = [
        "decode",
        _write(tmp_path, b"\x00\x00\x00\x00\x01\x02"),
        "--schema-registry-url",
        "http://nowhere:1",
    ]
    assert main(argv) == 1
    _assert_one_line_error(capsys, "http://nowhere:1", "connection refused")


def test_decode_raw_shows_each_packed_notification_and_its_event(tmp_path, capsys):
    from datetime import UTC, datetime

    from bridge.simulator.novasim import SimulatedCloud, raw_record
    from schemas.raw import RawRecord, pack

    cloud = SimulatedCloud(seed=4)
    vm = cloud.new_vm(0)
    notes = [cloud.action(vm, "create", "end", "versioned"), cloud.action(vm, "pause", "end", "legacy")]
    lines = [json.dumps(raw_record(n, "o_r", datetime(2026, 1, 1, tzinfo=UTC))).encode() for n in notes]
    records = [RawRecord(vm.uuid.encode(), line, []) for line in [*lines, b'{"event_type": "aggregate.x"}']]
    (packed,) = pack(records, lambda _key: 0, 10, 1_000_000)
    path = tmp_path / "raw.jsonl"
    path.write_bytes(packed.value)
    assert main(["decode", str(path), "--format", "raw"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [item["index"] for item in shown] == [0, 1, 2]
    assert shown[0]["event"]["status"] == "CREATE" and shown[1]["event"]["status"] == "PAUSE"
    assert shown[2]["event"] == "ignored"
    path.write_bytes(b"{broken\n")
    assert main(["decode", str(path), "--format", "raw"]) == 1
    assert "line 1 is not JSON" in capsys.readouterr().err


def _raw_record() -> bytes:
    from datetime import UTC, datetime

    from bridge.simulator.novasim import SimulatedCloud, raw_record

    cloud = SimulatedCloud(seed=5)
    vm = cloud.new_vm(0)
    notes = [cloud.action(vm, "create", "end", "versioned"), cloud.action(vm, "pause", "end", "legacy")]
    return b"\n".join(
        json.dumps(raw_record(n, "o_r", datetime(2026, 1, 1, tzinfo=UTC))).encode() for n in notes
    )


@pytest.mark.parametrize("lines", [1, 2], ids=["one notification", "packed"])
def test_a_raw_record_decoded_as_an_event_suggests_format_raw(lines, tmp_path, capsys):
    data = b"\n".join(_raw_record().split(b"\n")[:lines])
    assert main(["decode", _write(tmp_path, data)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("eventfed decode: ")
    assert err.endswith("it is a raw-topic record (a Nova notification): use --format raw")
    assert main(["decode", _write(tmp_path, data), "--format", "raw"]) == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xc3\x01" + bytes(12), "it starts with C3 01, Avro single-object encoding; try --format avro"),
        (b'{"vim_id": "o_r"}', "it is JSON; try --format json, or --format raw for a raw-topic record"),
        (b"\x00\x01", "it is too short (2 bytes)"),
    ],
)
def test_format_confluent_on_another_framing_says_so_without_asking_for_a_registry(
    data, expected, tmp_path, capsys
):
    assert main(["decode", _write(tmp_path, data), "--format", "confluent"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"eventfed decode: the framing is not Confluent's (00 and a 4-byte schema id): {expected}"
    assert "registry" not in err
