"""``eventfed schema`` and ``eventfed decode``: show the contract, and read an encoded event.

``schema`` prints the Avro schema as shipped on stdout (so ``eventfed schema > x.avsc`` works) and
its fingerprint on stderr; ``--json-schema`` prints the JSON Schema of the JSON form instead.
``decode`` reads one encoded event from a file or stdin and prints it as the JSON the DMaaP and
JSON sinks carry; with ``--format raw`` it reads a raw-topic record (one notification, or several
packed as JSON Lines) and prints, per notification, the document and the event eventfed makes of
it. A `ves` sink's record (a VES event) is recognised by its top-level
`event.commonEventHeader` and printed as it is; ``--format ves`` insists on one. A message that does
not decode is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import schemas
from streams import codecs
from streams.normalise import MalformedNotification, normalise


def _schema(args: argparse.Namespace) -> int:
    if getattr(args, "json_schema", False):
        sys.stdout.write(schemas.event_json_schema_text())
        return 0
    sys.stdout.write(codecs.SCHEMA_TEXT if codecs.SCHEMA_TEXT.endswith("\n") else codecs.SCHEMA_TEXT + "\n")
    as_java_long = int.from_bytes(codecs.FINGERPRINT, "little", signed=True)
    print(
        f"CRC-64-AVRO fingerprint: {codecs.FINGERPRINT_HEX} "
        f"(the 8 bytes after C3 01 in single-object encoding; as a Java long: {as_java_long})",
        file=sys.stderr,
    )
    return 0


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _decode(args: argparse.Namespace) -> int:
    path = getattr(args, "file", "-") or "-"
    fmt = getattr(args, "format", codecs.AUTO) or codecs.AUTO
    registry_url = getattr(args, "schema_registry_url", None)
    try:
        data = _read(path)
    except OSError as exc:
        print(f"eventfed decode: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if fmt == "raw":
        return _decode_raw(data)
    ves_event = _as_ves(data) if fmt in ("ves", codecs.AUTO) else None
    if ves_event is not None:
        print(json.dumps(ves_event, indent=2, ensure_ascii=False))
        return 0
    if fmt == "ves":
        print("eventfed decode: not a VES event: no event.commonEventHeader", file=sys.stderr)
        return 1
    try:
        confluent = codecs.ConfluentCodec(registry_url) if registry_url else None
        event = codecs.decode(data, fmt, confluent=confluent)
    except codecs.CodecError as exc:
        hint = "; it is a raw-topic record (a Nova notification): use --format raw" if looks_raw(data) else ""
        print(f"eventfed decode: {exc}{hint}", file=sys.stderr)
        return 1
    except Exception as exc:
        if not registry_url:
            raise
        # The registry client raises its HTTP library's own errors when the registry is unreachable.
        print(
            f"eventfed decode: schema registry {registry_url}: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 1
    print(json.dumps(codecs.event_to_json_dict(event), indent=2, ensure_ascii=False))
    return 0


def looks_raw(data: bytes) -> bool:
    """Whether a message is a raw-topic record: a Nova notification document (event_type and
    payload), alone or the first of several JSON Lines."""
    first = data.lstrip().split(b"\n", 1)[0]
    try:
        document = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and "event_type" in document and "payload" in document


def _as_ves(data: bytes) -> dict[str, Any] | None:
    """The VES event in a message, or None when the message is not one."""
    try:
        if codecs.detect(data) != codecs.JSON:
            return None
        document = json.loads(data)
    except (codecs.CodecError, ValueError, RecursionError):
        return None
    event = document.get("event") if isinstance(document, dict) else None
    if isinstance(event, dict) and isinstance(event.get("commonEventHeader"), dict):
        return document
    return None


class NotDecoded(ValueError):
    """A message that does not decode in the format asked for; the message says why, in one line."""


def decode_raw(data: bytes) -> list[dict[str, Any]]:
    """A raw-topic record: per notification, the document and the event eventfed makes of it."""
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        raise NotDecoded("the raw record is empty")
    shown = []
    for index, line in enumerate(lines):
        try:
            document = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise NotDecoded(f"line {index + 1} is not JSON: {exc}") from None
        try:
            event = normalise(document)
            outcome: Any = codecs.event_to_json_dict(event) if event is not None else "ignored"
        except MalformedNotification as exc:
            outcome = f"dead-lettered: {exc.reason}: {exc}"
        shown.append({"index": index, "notification": document, "event": outcome})
    return shown


def decode_any(data: bytes, fmt: str, confluent: codecs.ConfluentCodec | None = None) -> Any:
    """A message as JSON-ready data, in `fmt` (auto: a VES event, a raw-topic record or an event,
    told apart by their content). Raises NotDecoded."""
    if fmt == "raw" or (fmt == codecs.AUTO and looks_raw(data)):
        return decode_raw(data)
    ves_event = _as_ves(data) if fmt in ("ves", codecs.AUTO) else None
    if ves_event is not None:
        return ves_event
    if fmt == "ves":
        raise NotDecoded("not a VES event: no event.commonEventHeader")
    try:
        return codecs.event_to_json_dict(codecs.decode(data, fmt, confluent=confluent))
    except codecs.CodecError as exc:
        raise NotDecoded(str(exc)) from None


def _decode_raw(data: bytes) -> int:
    try:
        shown = decode_raw(data)
    except NotDecoded as exc:
        print(f"eventfed decode: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(shown, indent=2, ensure_ascii=False))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "schema":
        return _schema(args)
    if args.command == "decode":
        return _decode(args)
    print(f"eventfed: streams.schema_and_decode has no '{args.command}' command", file=sys.stderr)
    return 2
