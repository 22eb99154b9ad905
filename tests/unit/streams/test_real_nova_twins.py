"""Every legacy notification real Nova 34 sent and its versioned twin are classified alike.

The messages are in tests/fixtures/nova/real-nova-34/ (gzipped JSON), recorded from the real-Nova fixture
(notification_format both) by tests/real_nova/capture.py: per user action, in arrival order.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from schemas.vocabulary import lookup
from streams.normalise import normalise

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "nova" / "real-nova-34"
# Nova sends these in the versioned format only.
VERSIONED_ONLY = {"instance.lock", "instance.unlock"}
# Not about one instance; the stream ignores them in both formats.
NOT_INSTANCE = ("scheduler.", "service.")


def recorded() -> list[tuple[str, str, dict[str, Any]]]:
    """(file, action, step) for every step of every recorded run."""
    return [
        (path.name, step["action"], step)
        for path in sorted(FIXTURES.glob("lifecycle*.json.gz"))
        for step in json.loads(gzip.decompress(path.read_bytes()))
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


def replay(messages: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Each message through the stream's processor in order: (event_type, outcome, reason)."""
    from streams import pipeline

    processor = pipeline.Processor(pipeline.Topics("events", "dlq"), list, 600)
    state: dict[bytes, dict[str, Any]] = {}
    outcomes = []
    for offset, message in enumerate(messages):
        raw = {**message, "vim_id": "real_nova", "received_at": "2026-01-01T00:00:00+00:00"}
        source = pipeline.Source("raw", 0, offset)
        outcome = processor.process(None, json.dumps(raw).encode(), source, state.get, 1000.0 + offset)
        if outcome.new_state is not None and outcome.state_key is not None:
            state[outcome.state_key] = outcome.new_state
        outcomes.append((message["event_type"], outcome.kind, outcome.reason))
    return outcomes


def run_messages(name: str, routing: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        item["message"]
        for path_name, _, step in recorded()
        if path_name == name
        for item in step["messages"]
        if item["routing_key"].startswith(routing)
    ]


@pytest.mark.parametrize("name", ["lifecycle.json.gz", "lifecycle-vm_and_task_state.json.gz"])
@pytest.mark.parametrize("routing", [("notifications.",), ("versioned_notifications.",)])
def test_one_format_alone_applies_every_event_of_the_real_lifecycles(
    name: str, routing: tuple[str, ...]
) -> None:
    # Nova keeps updated_at in whole seconds and a lifecycle fits in a few: no event of it may be
    # taken for an older one.
    outcomes = replay(run_messages(name, routing))
    kinds = {
        (event_type, kind) for event_type, kind, _ in outcomes if not event_type.startswith(NOT_INSTANCE)
    }
    assert {kind for _, kind in kinds} == {"applied"}, sorted(kinds)


@pytest.mark.parametrize("name", ["lifecycle.json.gz", "lifecycle-vm_and_task_state.json.gz"])
def test_both_formats_apply_each_event_once_and_drop_its_twin(name: str) -> None:
    messages = run_messages(name, ("notifications.", "versioned_notifications."))
    outcomes = [o for o in replay(messages) if not o[0].startswith(NOT_INSTANCE)]
    applied = [event_type for event_type, kind, _ in outcomes if kind == "applied"]
    dropped = [(event_type, reason) for event_type, kind, reason in outcomes if kind != "applied"]
    versioned_only = sum(1 for event_type, _, _ in outcomes if event_type in VERSIONED_ONLY)
    assert len(applied) == (len(outcomes) - versioned_only) // 2 + versioned_only
    assert {reason for _, reason in dropped} == {"twin"}
    # Either twin may come first; here, as Nova sends them, the legacy one does.
    assert all(event_type.startswith("instance.") for event_type, _ in dropped)


def test_the_twin_that_comes_first_wins() -> None:
    messages = run_messages("lifecycle.json.gz", ("notifications.", "versioned_notifications."))
    instance = [m for m in messages if not m["event_type"].startswith(NOT_INSTANCE)]
    # Swap each legacy message with the versioned twin that follows it.
    swapped: list[dict[str, Any]] = []
    for message in instance:
        last = swapped[-1]["event_type"] if swapped else ""
        if last.startswith("compute.") and lookup(last) == lookup(message["event_type"]):
            swapped.insert(len(swapped) - 1, message)
        else:
            swapped.append(message)
    assert swapped != instance
    outcomes = replay(swapped)
    dropped = [(event_type, reason) for event_type, kind, reason in outcomes if kind != "applied"]
    assert {reason for _, reason in dropped} == {"twin"}
    assert all(event_type.startswith("compute.instance.") for event_type, _ in dropped)
    assert (
        len(dropped) == (len(instance) - sum(1 for m in instance if m["event_type"] in VERSIONED_ONLY)) // 2
    )
