"""The real Nova notification samples in tests/fixtures/nova, ready to feed the normaliser.

Legacy templates carry ``[[[[MARKER]]]]`` placeholders; :func:`fill` replaces each marker with a
value derived from the marker alone, so the same marker gets the same value in every file and
every run.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nova"
VERSIONED = FIXTURES / "versioned"
LEGACY = FIXTURES / "legacy"
TEMPLATES = FIXTURES / "legacy-templates"

VIM_ID = "test-owner_region-one"
RECEIVED_AT = datetime(2026, 11, 25, 15, 0, 0, 123456, tzinfo=UTC)

_MARKER = re.compile(r"\[\[\[\[(.+?)\]\]\]\]")
_NUMBERED = re.compile(r"([A-Z][A-Z0-9]*)_(\d+)")
_NAMESPACE = uuid.UUID("2f1d3c9a-6a0e-4e55-9a53-6f1b0f6c2a10")
_BASE_TIME = datetime(2026, 11, 25, 14, 0, 0)


def _uuid(marker: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, marker)


def marker_value(name: str, number: int | None) -> str:
    marker = name if number is None else f"{name}_{number}"
    n = number or 0
    if name == "UUID":
        return str(_uuid(marker))
    if name in ("XUUID", "tenant_id", "user_id"):
        return _uuid(marker).hex
    if name == "DT":
        # Nova's str(utcnow()): UTC, space separator, no zone.
        return str(_BASE_TIME + timedelta(seconds=7 * n, microseconds=1234 * n + 1))
    if name == "V4":
        return f"10.20.{n // 250}.{n % 250 + 1}"
    if name == "V6":
        return f"fd00:20::{n + 1:x}"
    fixed = {
        "host": "compute-07",
        "hostname": "vm-web-01",
        "display_name": "web 01",
        "node": "compute-07.example.org",
        "reservation_id": "r-3kz9x1aq",
        "publisher_id": "compute.compute-07",
        "image_name": "ubuntu-24.04",
    }
    if name in fixed:
        return fixed[name]
    raise KeyError(f"unknown template marker {marker}")


def _replace(match: re.Match[str]) -> str:
    numbered = _NUMBERED.fullmatch(match.group(1))
    if numbered:
        return marker_value(numbered.group(1), int(numbered.group(2)))
    return marker_value(match.group(1), None)


def fill(text: str) -> str:
    return _MARKER.sub(_replace, text)


@cache
def _load(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return fill(text) if path.parent == TEMPLATES else text


def load(path: Path) -> dict[str, Any]:
    """A fresh copy of one sample (templates filled)."""
    data: dict[str, Any] = json.loads(_load(path))
    return data


def versioned_files() -> list[Path]:
    return sorted(VERSIONED.glob("*.json"))


def legacy_files() -> list[Path]:
    return sorted(LEGACY.glob("*.json"))


def template_files() -> list[Path]:
    return sorted(TEMPLATES.glob("*.json"))


def all_files() -> list[Path]:
    return versioned_files() + legacy_files() + template_files()


def sample_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def by_name(folder: Path, name: str) -> dict[str, Any]:
    return load(folder / name)
