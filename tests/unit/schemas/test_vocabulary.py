from __future__ import annotations

import json

import pytest

from schemas import vocabulary as catalogue
from schemas.vocabulary import CATALOGUE, KINDS, PHASES, VM_STATES, lookup
from tests.unit import nova_samples

# Every action the contract promises, in both formats where Nova has both: event type -> (kind, phase).
EXPECTED = {
    # legacy, from nova/compute/manager.py and nova/compute/api.py
    "compute.instance.create.start": ("CREATE", "start"),
    "compute.instance.create.end": ("CREATE", "end"),
    "compute.instance.create.error": ("CREATE", "error"),
    "compute.instance.delete.start": ("DELETE", "start"),
    "compute.instance.delete.end": ("DELETE", "end"),
    "compute.instance.soft_delete.end": ("SOFT_DELETE", "end"),
    "compute.instance.restore.start": ("RESTORE", "start"),
    "compute.instance.pause.start": ("PAUSE", "start"),
    "compute.instance.unpause.end": ("UNPAUSE", "end"),
    "compute.instance.suspend.start": ("SUSPEND", "start"),
    "compute.instance.resume.end": ("RESUME", "end"),
    "compute.instance.power_on.start": ("POWER_ON", "start"),
    "compute.instance.power_off.start": ("POWER_OFF", "start"),
    "compute.instance.power_off.end": ("POWER_OFF", "end"),
    "compute.instance.shutdown.start": ("SHUT_DOWN", "start"),
    "compute.instance.shutdown.end": ("SHUT_DOWN", "end"),
    "compute.instance.reboot.start": ("REBOOT", "start"),
    "compute.instance.reboot.error": ("REBOOT", "error"),
    "compute.instance.rebuild.start": ("REBUILD", "start"),
    "compute.instance.rebuild.error": ("REBUILD", "error"),
    "compute.instance.rebuild.scheduled": ("REBUILD", "none"),
    "compute.instance.resize.prep.start": ("RESIZE", "start"),
    "compute.instance.resize.prep.end": ("RESIZE", "end"),
    "compute.instance.resize.start": ("RESIZE", "start"),
    "compute.instance.resize.end": ("RESIZE", "end"),
    "compute.instance.resize.error": ("RESIZE", "error"),
    "compute.instance.finish_resize.start": ("RESIZE", "start"),
    "compute.instance.finish_resize.end": ("RESIZE", "end"),
    "compute.instance.resize.confirm.start": ("RESIZE_CONFIRM", "start"),
    "compute.instance.resize.confirm.end": ("RESIZE_CONFIRM", "end"),
    "compute.instance.resize.revert.start": ("RESIZE_REVERT", "start"),
    "compute.instance.resize.revert.end": ("RESIZE_REVERT", "end"),
    "compute.instance.rescue.start": ("RESCUE", "start"),
    "compute.instance.unrescue.end": ("UNRESCUE", "end"),
    "compute.instance.shelve.start": ("SHELVE", "start"),
    "compute.instance.shelve_offload.end": ("SHELVE_OFFLOAD", "end"),
    "compute.instance.unshelve.start": ("UNSHELVE", "start"),
    "compute.instance.live_migration.pre.start": ("LIVE_MIGRATION", "start"),
    "compute.instance.live_migration.pre.end": ("LIVE_MIGRATION", "end"),
    "compute.instance.live_migration._post.start": ("LIVE_MIGRATION", "start"),
    "compute.instance.live_migration._post.end": ("LIVE_MIGRATION", "end"),
    "compute.instance.live_migration.post.dest.start": ("LIVE_MIGRATION", "start"),
    "compute.instance.live_migration.post.dest.end": ("LIVE_MIGRATION", "end"),
    "compute.instance.live_migration._rollback.start": ("LIVE_MIGRATION_ROLLBACK", "start"),
    "compute.instance.live_migration.rollback.dest.end": ("LIVE_MIGRATION_ROLLBACK", "end"),
    "compute.instance.live.migration.abort.start": ("LIVE_MIGRATION_ABORT", "start"),
    "compute.instance.live.migration.force.complete.end": ("LIVE_MIGRATION_FORCE_COMPLETE", "end"),
    "compute.instance.evacuate": ("EVACUATE", "none"),
    "compute.instance.snapshot.start": ("SNAPSHOT", "start"),
    "compute.instance.snapshot.end": ("SNAPSHOT", "end"),
    "compute.instance.trigger_crash_dump.start": ("TRIGGER_CRASH_DUMP", "start"),
    "compute.instance.volume.attach": ("VOLUME_ATTACH", "none"),
    "compute.instance.volume.detach": ("VOLUME_DETACH", "none"),
    "compute.instance.create_ip.end": ("CREATE_IP", "end"),
    "compute.instance.delete_ip.start": ("DELETE_IP", "start"),
    "compute.instance.exists": ("EXISTS", "none"),
    "compute.instance.update": ("UPDATE", "none"),
    # versioned, nova/objects/fields.py NotificationAction
    "instance.create.start": ("CREATE", "start"),
    "instance.create.error": ("CREATE", "error"),
    "instance.delete.end": ("DELETE", "end"),
    "instance.soft_delete.start": ("SOFT_DELETE", "start"),
    "instance.restore.end": ("RESTORE", "end"),
    "instance.pause.end": ("PAUSE", "end"),
    "instance.unpause.start": ("UNPAUSE", "start"),
    "instance.suspend.end": ("SUSPEND", "end"),
    "instance.resume.start": ("RESUME", "start"),
    "instance.power_on.end": ("POWER_ON", "end"),
    "instance.power_off.start": ("POWER_OFF", "start"),
    "instance.shutdown.end": ("SHUT_DOWN", "end"),
    "instance.reboot.error": ("REBOOT", "error"),
    "instance.rebuild.start": ("REBUILD", "start"),
    "instance.rebuild_scheduled": ("REBUILD", "none"),
    "instance.resize_prep.start": ("RESIZE", "start"),
    "instance.resize.end": ("RESIZE", "end"),
    "instance.resize.error": ("RESIZE", "error"),
    "instance.resize_finish.end": ("RESIZE", "end"),
    "instance.resize_confirm.start": ("RESIZE_CONFIRM", "start"),
    "instance.resize_revert.end": ("RESIZE_REVERT", "end"),
    "instance.rescue.end": ("RESCUE", "end"),
    "instance.unrescue.start": ("UNRESCUE", "start"),
    "instance.shelve.end": ("SHELVE", "end"),
    "instance.shelve_offload.start": ("SHELVE_OFFLOAD", "start"),
    "instance.unshelve.end": ("UNSHELVE", "end"),
    "instance.live_migration_pre.start": ("LIVE_MIGRATION", "start"),
    "instance.live_migration_post.end": ("LIVE_MIGRATION", "end"),
    "instance.live_migration_post_dest.end": ("LIVE_MIGRATION", "end"),
    "instance.live_migration_rollback.start": ("LIVE_MIGRATION_ROLLBACK", "start"),
    "instance.live_migration_rollback_dest.end": ("LIVE_MIGRATION_ROLLBACK", "end"),
    "instance.live_migration_abort.start": ("LIVE_MIGRATION_ABORT", "start"),
    "instance.live_migration_force_complete.end": ("LIVE_MIGRATION_FORCE_COMPLETE", "end"),
    "instance.evacuate": ("EVACUATE", "none"),
    "instance.snapshot.start": ("SNAPSHOT", "start"),
    "instance.trigger_crash_dump.end": ("TRIGGER_CRASH_DUMP", "end"),
    "instance.volume_attach.start": ("VOLUME_ATTACH", "start"),
    "instance.volume_attach.error": ("VOLUME_ATTACH", "error"),
    "instance.volume_detach.end": ("VOLUME_DETACH", "end"),
    "instance.volume_swap.error": ("VOLUME_SWAP", "error"),
    "instance.interface_attach.start": ("INTERFACE_ATTACH", "start"),
    "instance.interface_attach.error": ("INTERFACE_ATTACH", "error"),
    "instance.interface_detach.end": ("INTERFACE_DETACH", "end"),
    "instance.share_attach.end": ("SHARE_ATTACH", "end"),
    "instance.share_detach.error": ("SHARE_DETACH", "error"),
    "instance.lock": ("LOCK", "none"),
    "instance.unlock": ("UNLOCK", "none"),
    "instance.exists": ("EXISTS", "none"),
    "instance.update": ("UPDATE", "none"),
}

NOT_INSTANCE_EVENTS = [
    "compute.metrics.update",
    "scheduler.select_destinations.start",
    "scheduler.select_destinations.end",
    "aggregate.create.end",
    "aggregate.add_host.start",
    "aggregate.update_metadata.end",
    "compute_task.build_instances.error",
    "service.update",
    "keypair.create.end",
    "flavor.update",
    "libvirt.connect.error",
    "volume.usage",
    "compute.instance",
    "instance",
    "instance.",
    "instance.create",  # versioned create always has a phase
    "instance.pause",
    "instance.update.end",  # update never has one
    "compute.instance.pause.finish",
    "compute.instance.teleport.start",
    "INSTANCE.CREATE.START",
    "",
]


@pytest.mark.parametrize(("event_type", "expected"), sorted(EXPECTED.items()))
def test_catalogue_maps_each_promised_action(event_type: str, expected: tuple[str, str]) -> None:
    assert lookup(event_type) == expected
    found = CATALOGUE.get(event_type)
    assert found is not None
    assert found.format == ("legacy" if event_type.startswith("compute.") else "versioned")


@pytest.mark.parametrize("event_type", NOT_INSTANCE_EVENTS)
def test_other_event_types_are_not_status_events(event_type: str) -> None:
    assert lookup(event_type) is None
    assert CATALOGUE.get(event_type) is None


def test_catalogue_covers_every_event_type_in_the_samples() -> None:
    versioned = {json.loads(path.read_text())["event_type"] for path in nova_samples.versioned_files()}
    legacy = {
        json.loads(path.read_text())["event_type"]
        for path in nova_samples.legacy_files() + nova_samples.template_files()
    }
    assert (len(versioned), len(legacy)) == (93, 32)
    assert {event_type for event_type in versioned | legacy if lookup(event_type) is None} == set()
    assert {CATALOGUE.get(event_type).format for event_type in versioned} == {"versioned"}  # type: ignore[union-attr]
    assert {CATALOGUE.get(event_type).format for event_type in legacy} == {"legacy"}  # type: ignore[union-attr]


def test_doubled_prefix_from_old_nova_is_a_create_error() -> None:
    # Seen in production captures (stacktach-notigen): some Nova releases sent this spelling.
    assert lookup("compute.instance.instance.create.error") == ("CREATE", "error")


def test_onap_spec_kinds_are_present() -> None:
    assert {"DELETE", "PAUSE", "POWER_OFF", "REBUILD", "SHUT_DOWN", "SOFT_DELETE"} <= KINDS


def test_kinds_are_exactly_those_the_catalogue_produces() -> None:
    assert {found.kind for found in CATALOGUE.values()} == KINDS
    assert all(kind.isupper() and " " not in kind for kind in KINDS)
    assert len(KINDS) == 41


def test_phases_and_formats() -> None:
    assert {found.phase for found in CATALOGUE.values()} == PHASES == {"start", "end", "error", "none"}
    for event_type, found in CATALOGUE.items():
        if found.phase == "none":
            assert not event_type.endswith((".start", ".end", ".error"))
        else:
            assert event_type.endswith("." + found.phase)
        prefix = "compute.instance." if found.format == "legacy" else "instance."
        assert event_type.startswith(prefix)


def test_phaseless_actions() -> None:
    phaseless = {event_type for event_type, found in CATALOGUE.items() if found.phase == "none"}
    assert phaseless == {
        "compute.instance.update",
        "compute.instance.exists",
        "compute.instance.evacuate",
        "compute.instance.volume.attach",
        "compute.instance.volume.detach",
        "compute.instance.rebuild.scheduled",
        "instance.update",
        "instance.exists",
        "instance.evacuate",
        "instance.lock",
        "instance.unlock",
        "instance.rebuild_scheduled",
    }


def test_vm_states_are_novas() -> None:
    assert {
        "active",
        "building",
        "paused",
        "suspended",
        "stopped",
        "rescued",
        "resized",
        "soft-delete",
        "deleted",
        "error",
        "shelved",
        "shelved_offloaded",
    } == VM_STATES
    # No name is both a kind and a vm_state, even ignoring case, so a filter value means one thing.
    assert not {kind.lower() for kind in KINDS} & VM_STATES


def test_task_and_power_states_cover_the_samples() -> None:
    task_states = set()
    power_states = set()
    for path in nova_samples.versioned_files():
        data = json.loads(path.read_text())["payload"]["nova_object.data"]
        task_states.add(data["task_state"])
        power_states.add(data["power_state"])
    assert task_states - {None} <= catalogue.TASK_STATES
    assert power_states <= catalogue.POWER_STATES


def test_readme_catalogue_table_matches_the_code() -> None:
    import re
    from pathlib import Path

    import schemas

    readme = Path(schemas.__file__).with_name("README.md").read_text(encoding="utf-8")
    documented = [line for line in readme.splitlines() if re.match(r"\| `[A-Z_]+` \|", line)]
    rows: dict[str, tuple[list[str], list[str]]] = {}
    for entry in catalogue._TABLE:
        legacy, versioned = rows.setdefault(entry.kind, ([], []))
        legacy_note = "" if entry.legacy_phases == ("start", "end", "error") else " (no phase)"
        versioned_note = "" if entry.versioned_phases == ("start", "end", "error") else " (no phase)"
        legacy.extend(f"`{action}`{legacy_note}" for action in entry.legacy)
        versioned.extend(f"`{action}`{versioned_note}" for action in entry.versioned)
    expected = [
        f"| `{kind}` | {', '.join(legacy) or '-'} | {', '.join(versioned) or '-'} |"
        for kind, (legacy, versioned) in rows.items()
    ]
    assert documented == expected
