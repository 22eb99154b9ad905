"""``eventfed schema`` and ``eventfed decode``: show the contract, and read an encoded event.

``schema`` prints the Avro schema as shipped on stdout (so ``eventfed schema > x.avsc`` works) and
its fingerprint on stderr. ``decode`` reads one encoded event from a file or stdin and prints it as
the JSON the DMaaP and JSON sinks carry; a message that does not decode is one line on stderr and
exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streams import codecs


def _schema() -> int:
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
    try:
        confluent = codecs.ConfluentCodec(registry_url) if registry_url else None
        event = codecs.decode(data, fmt, confluent=confluent)
    except codecs.CodecError as exc:
        print(f"eventfed decode: {exc}", file=sys.stderr)
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


def run(args: argparse.Namespace) -> int:
    if args.command == "schema":
        return _schema()
    if args.command == "decode":
        return _decode(args)
    print(f"eventfed: streams.tools has no '{args.command}' command", file=sys.stderr)
    return 2
