"""Every legacy notification real Nova 34 sent and its versioned twin are classified alike.

The messages are in tests/fixtures/nova/real-nova-34/, recorded from the real-Nova fixture
(notification_format both) by tests/real_nova/capture.py: per user action, in arrival order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streams.catalogue import lookup
from streams.normalise import normalise

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nova" / "real-nova-34"
# Nova sends these in the versioned format only.
VERSIONED_ONLY = {"instance.lock", "instance.unlock"}
# Not about one instance; the stream ignores them in both formats.
NOT_INSTANCE = ("scheduler.", "service.")


def recorded() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, action, step) for every step of every recorded run."""
    return [
        (path.name, step["action"], step)
        for path in sorted(FIXTURES.glob("lifecycle*.json"))
        for step in json.loads(path.read_text())
    ]


def event(message: dict[str, Any]) -> dict[str, Any]:
    found = normalise({**message, "vim_id": "real_nova", "received_at": "2026-01-01T00:00:00+00:00"})
    assert found is not None, message["event_type"]
    return found


def twins(step: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    legacy, versioned = [], []
    for item in step["messages"]:
        message = item["message"]
        if message["event_type"].startswith(NOT_INSTANCE) or message["event_type"] in VERSIONED_ONLY:
            continue
        (versioned if item["routing_key"].startswith("versioned_notifications.") else legacy).append(message)
    assert len(legacy) == len(versioned), [m["event_type"] for m in legacy + versioned]
    return list(zip(legacy, versioned, strict=True))


def test_the_recordings_cover_every_lifecycle_action() -> None:
    actions = {action for _, action, _ in recorded()}
    assert {
        "create", "pause", "unpause", "stop", "start", "reboot_soft", "reboot_hard", "rebuild", "suspend",
        "resume", "shelve", "unshelve", "resize", "resize_confirm", "resize_revert", "rescue", "unrescue",
        "lock", "unlock", "migrate", "soft_delete", "restore", "force_delete", "delete",
    } <= actions  # fmt: skip
    assert sum(len(twins(step)) for _, _, step in recorded()) >= 78


@pytest.mark.parametrize(
    ("name", "action", "step"), recorded(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_legacy_and_versioned_twins_are_classified_alike(
    name: str, action: str, step: dict[str, Any]
) -> None:
    for legacy, versioned in twins(step):
        legacy_event, versioned_event = event(legacy), event(versioned)
        assert lookup(legacy["event_type"]) == lookup(versioned["event_type"]), (action, legacy["event_type"])
        for field in ("status", "phase", "instance_id", "state", "task_state", "display_name"):
            assert legacy_event[field] == versioned_event[field], (action, legacy["event_type"], field)
        assert (legacy_event["format"], versioned_event["format"]) == ("legacy", "versioned")


def test_every_instance_message_is_classified() -> None:
    for _, action, step in recorded():
        for item in step["messages"]:
            event_type = item["message"]["event_type"]
            if not event_type.startswith(NOT_INSTANCE):
                assert lookup(event_type) is not None, (action, event_type)
