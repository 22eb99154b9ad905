"""The catalogue of Nova instance notifications: event type -> (status kind, phase).

A status kind is what users subscribe to (ONAP names DELETE, PAUSE, POWER_OFF, REBUILD, SHUT_DOWN,
SOFT_DELETE, ...). The rule: the kind is Nova's *versioned* action name in upper case, and each
legacy action maps to the kind of its versioned twin. Two refinements keep the list short and
useful to subscribers:

- ``shutdown`` is ``SHUT_DOWN``, the spelling of the ONAP spec.
- The steps of one user operation share its kind and are told apart by ``event_type``: the
  resize steps (prep, migrate, finish) are all RESIZE, the successful live-migration steps (pre,
  post, post dest) are all LIVE_MIGRATION, and rebuild_scheduled is REBUILD. What ends or undoes
  the operation is its own kind (RESIZE_CONFIRM, RESIZE_REVERT, LIVE_MIGRATION_ROLLBACK,
  LIVE_MIGRATION_ABORT, LIVE_MIGRATION_FORCE_COMPLETE), because subscribers react to those
  differently.

The phase is ``start``, ``end`` or ``error``, or ``none`` for actions Nova sends without one
(update, exists, lock, unlock, evacuate, rebuild.scheduled/rebuild_scheduled, legacy
volume.attach/detach).
Every phased action accepts all three phases, although Nova sends ``error`` for only some.

Everything here is data; nothing is read from the network or disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

LEGACY_PREFIX: Final = "compute.instance."
VERSIONED_PREFIX: Final = "instance."

PHASE_START: Final = "start"
PHASE_END: Final = "end"
PHASE_ERROR: Final = "error"
PHASE_NONE: Final = "none"
PHASES: Final = frozenset({PHASE_START, PHASE_END, PHASE_ERROR, PHASE_NONE})

FORMAT_LEGACY: Final = "legacy"
FORMAT_VERSIONED: Final = "versioned"

# nova/compute/vm_states.py
VM_STATES: Final = frozenset(
    {
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
    }
)

# nova/compute/task_states.py
TASK_STATES: Final = frozenset(
    {
        "scheduling",
        "block_device_mapping",
        "networking",
        "spawning",
        "image_snapshot",
        "image_snapshot_pending",
        "image_pending_upload",
        "image_uploading",
        "image_backup",
        "updating_password",
        "resize_prep",
        "resize_migrating",
        "resize_migrated",
        "resize_finish",
        "resize_reverting",
        "resize_confirming",
        "rebooting",
        "reboot_pending",
        "reboot_started",
        "rebooting_hard",
        "reboot_pending_hard",
        "reboot_started_hard",
        "pausing",
        "unpausing",
        "suspending",
        "resuming",
        "powering-off",
        "powering-on",
        "rescuing",
        "unrescuing",
        "rebuilding",
        "rebuild_block_device_mapping",
        "rebuild_spawning",
        "migrating",
        "deleting",
        "soft-deleting",
        "restoring",
        "shelving",
        "shelving_image_pending_upload",
        "shelving_image_uploading",
        "shelving_offloading",
        "unshelving",
    }
)

# nova/objects/fields.py InstancePowerState (versioned notifications only)
POWER_STATES: Final = frozenset({"pending", "running", "paused", "shutdown", "crashed", "suspended"})

_PHASED = (PHASE_START, PHASE_END, PHASE_ERROR)
_PHASELESS = (PHASE_NONE,)


class _Entry(NamedTuple):
    kind: str
    legacy: tuple[str, ...]
    versioned: tuple[str, ...]
    legacy_phases: tuple[str, ...] = _PHASED
    versioned_phases: tuple[str, ...] = _PHASED


# Legacy names come from nova/compute/manager.py and nova/compute/api.py
# (notify_about_instance_usage), versioned ones from nova/objects/fields.py NotificationAction.
_TABLE: Final[tuple[_Entry, ...]] = (
    # "instance.create.error" under the legacy prefix is what some older Nova releases really sent
    # (a doubled "instance."); it is in production captures, so it is accepted as CREATE.
    _Entry("CREATE", ("create", "instance.create"), ("create",)),
    _Entry("DELETE", ("delete",), ("delete",)),
    _Entry("SOFT_DELETE", ("soft_delete",), ("soft_delete",)),
    _Entry("RESTORE", ("restore",), ("restore",)),
    _Entry("PAUSE", ("pause",), ("pause",)),
    _Entry("UNPAUSE", ("unpause",), ("unpause",)),
    _Entry("SUSPEND", ("suspend",), ("suspend",)),
    _Entry("RESUME", ("resume",), ("resume",)),
    _Entry("POWER_ON", ("power_on",), ("power_on",)),
    _Entry("POWER_OFF", ("power_off",), ("power_off",)),
    _Entry("SHUT_DOWN", ("shutdown",), ("shutdown",)),
    _Entry("REBOOT", ("reboot",), ("reboot",)),
    _Entry("REBUILD", ("rebuild",), ("rebuild",)),
    # The conductor sends both twins once the rebuild is scheduled, without a phase.
    _Entry("REBUILD", ("rebuild.scheduled",), ("rebuild_scheduled",), _PHASELESS, _PHASELESS),
    _Entry("EVACUATE", ("evacuate",), ("evacuate",), _PHASELESS, _PHASELESS),
    _Entry("RESCUE", ("rescue",), ("rescue",)),
    _Entry("UNRESCUE", ("unrescue",), ("unrescue",)),
    _Entry("SHELVE", ("shelve",), ("shelve",)),
    _Entry("SHELVE_OFFLOAD", ("shelve_offload",), ("shelve_offload",)),
    _Entry("UNSHELVE", ("unshelve",), ("unshelve",)),
    _Entry("SNAPSHOT", ("snapshot",), ("snapshot",)),
    _Entry("RESIZE", ("resize.prep", "resize", "finish_resize"), ("resize_prep", "resize", "resize_finish")),
    _Entry("RESIZE_CONFIRM", ("resize.confirm",), ("resize_confirm",)),
    _Entry("RESIZE_REVERT", ("resize.revert",), ("resize_revert",)),
    _Entry(
        "LIVE_MIGRATION",
        ("live_migration.pre", "live_migration._post", "live_migration.post.dest"),
        ("live_migration_pre", "live_migration_post", "live_migration_post_dest"),
    ),
    _Entry(
        "LIVE_MIGRATION_ROLLBACK",
        ("live_migration._rollback", "live_migration.rollback.dest"),
        ("live_migration_rollback", "live_migration_rollback_dest"),
    ),
    _Entry("LIVE_MIGRATION_ABORT", ("live.migration.abort",), ("live_migration_abort",)),
    _Entry(
        "LIVE_MIGRATION_FORCE_COMPLETE",
        ("live.migration.force.complete",),
        ("live_migration_force_complete",),
    ),
    _Entry("TRIGGER_CRASH_DUMP", ("trigger_crash_dump",), ("trigger_crash_dump",)),
    # Legacy volume.attach/detach are sent once, after the fact, without a phase.
    _Entry("VOLUME_ATTACH", ("volume.attach",), ("volume_attach",), _PHASELESS),
    _Entry("VOLUME_DETACH", ("volume.detach",), ("volume_detach",), _PHASELESS),
    _Entry("VOLUME_SWAP", (), ("volume_swap",)),
    _Entry("INTERFACE_ATTACH", (), ("interface_attach",)),
    _Entry("INTERFACE_DETACH", (), ("interface_detach",)),
    # Legacy add/remove fixed IP (a port on another network); Nova has no versioned twin.
    _Entry("CREATE_IP", ("create_ip",), ()),
    _Entry("DELETE_IP", ("delete_ip",), ()),
    _Entry("SHARE_ATTACH", (), ("share_attach",)),
    _Entry("SHARE_DETACH", (), ("share_detach",)),
    _Entry("LOCK", (), ("lock",), versioned_phases=_PHASELESS),
    _Entry("UNLOCK", (), ("unlock",), versioned_phases=_PHASELESS),
    _Entry("UPDATE", ("update",), ("update",), _PHASELESS, _PHASELESS),
    _Entry("EXISTS", ("exists",), ("exists",), _PHASELESS, _PHASELESS),
)


class Classification(NamedTuple):
    kind: str
    phase: str
    format: str
    # The versioned action name, for a legacy event type that of its versioned twin: a legacy
    # notification and its twin share kind, phase and action (resize.prep and resize_prep are one
    # step; resize_prep and resize_finish are not).
    action: str


def _event_types(prefix: str, actions: Iterable[str], phases: Iterable[str]) -> Iterable[tuple[str, str]]:
    for action in actions:
        for phase in phases:
            yield (f"{prefix}{action}" if phase == PHASE_NONE else f"{prefix}{action}.{phase}"), phase


def _build() -> dict[str, Classification]:
    catalogue: dict[str, Classification] = {}
    for entry in _TABLE:
        sides = (
            (LEGACY_PREFIX, entry.legacy, entry.legacy_phases, FORMAT_LEGACY),
            (VERSIONED_PREFIX, entry.versioned, entry.versioned_phases, FORMAT_VERSIONED),
        )
        for prefix, actions, phases, fmt in sides:
            for index, action in enumerate(actions):
                # Twins sit at the same place in both lists; an extra legacy spelling (the doubled
                # "instance.create") is the twin of the first versioned action.
                twin = (
                    entry.versioned[index if index < len(entry.versioned) else 0]
                    if entry.versioned
                    else action
                )
                for event_type, phase in _event_types(prefix, (action,), phases):
                    # Dotted legacy actions could collide with "<action>.<phase>" of another one.
                    if event_type in catalogue:
                        raise RuntimeError(f"catalogue: {event_type} is listed twice")
                    catalogue[event_type] = Classification(entry.kind, phase, fmt, twin)
    return catalogue


CATALOGUE: Final[dict[str, Classification]] = _build()

KINDS: Final = frozenset(entry.kind for entry in _TABLE)


def twin_action(event_type: str) -> str | None:
    """The action a notification shares with its twin in the other format, or None."""
    found = CATALOGUE.get(event_type)
    return None if found is None else found.action


def lookup(event_type: str) -> tuple[str, str] | None:
    """(status kind, phase) of a Nova instance event type, or None if it is not one."""
    found = CATALOGUE.get(event_type)
    return None if found is None else (found.kind, found.phase)


# --- polled snapshots ------------------------------------------------------------------------
# A server read from Nova's API (`eventfed poll`) says what the VM is, not what was done to it.
# Its status kind is the action its task_state shows in progress (phase start), else the action
# that leaves a VM in its vm_state (phase end); UPDATE when no action does (active, or an error
# with no task); vm_state error gives phase error. So a subscriber to PAUSE hears of a VM found
# paused whether the news came from a notification or a poll.
FORMAT_POLL: Final = "poll"

_TASK_KINDS: Final = {
    "scheduling": "CREATE",
    "block_device_mapping": "CREATE",
    "networking": "CREATE",
    "spawning": "CREATE",
    "image_snapshot": "SNAPSHOT",
    "image_snapshot_pending": "SNAPSHOT",
    "image_pending_upload": "SNAPSHOT",
    "image_uploading": "SNAPSHOT",
    "image_backup": "SNAPSHOT",
    "updating_password": "UPDATE",
    "resize_prep": "RESIZE",
    "resize_migrating": "RESIZE",
    "resize_migrated": "RESIZE",
    "resize_finish": "RESIZE",
    "resize_reverting": "RESIZE_REVERT",
    "resize_confirming": "RESIZE_CONFIRM",
    "rebooting": "REBOOT",
    "reboot_pending": "REBOOT",
    "reboot_started": "REBOOT",
    "rebooting_hard": "REBOOT",
    "reboot_pending_hard": "REBOOT",
    "reboot_started_hard": "REBOOT",
    "pausing": "PAUSE",
    "unpausing": "UNPAUSE",
    "suspending": "SUSPEND",
    "resuming": "RESUME",
    "powering-off": "POWER_OFF",
    "powering-on": "POWER_ON",
    "rescuing": "RESCUE",
    "unrescuing": "UNRESCUE",
    "rebuilding": "REBUILD",
    "rebuild_block_device_mapping": "REBUILD",
    "rebuild_spawning": "REBUILD",
    "migrating": "LIVE_MIGRATION",
    "deleting": "DELETE",
    "soft-deleting": "SOFT_DELETE",
    "restoring": "RESTORE",
    "shelving": "SHELVE",
    "shelving_image_pending_upload": "SHELVE",
    "shelving_image_uploading": "SHELVE",
    "shelving_offloading": "SHELVE_OFFLOAD",
    "unshelving": "UNSHELVE",
}
_STATE_KINDS: Final = {
    "building": "CREATE",
    "paused": "PAUSE",
    "suspended": "SUSPEND",
    "stopped": "POWER_OFF",
    "rescued": "RESCUE",
    "resized": "RESIZE",
    "soft-delete": "SOFT_DELETE",
    "deleted": "DELETE",
    "shelved": "SHELVE",
    "shelved_offloaded": "SHELVE_OFFLOAD",
}
POLLED_KIND_DEFAULT: Final = "UPDATE"
# A snapshot has no action of its own, and no twin.
POLLED_ACTION: Final = "polled"


def polled_kinds() -> frozenset[str]:
    """The kinds a polled server's state or task can be classified as."""
    return frozenset({*_TASK_KINDS.values(), *_STATE_KINDS.values(), POLLED_KIND_DEFAULT})


def polled_classification(vm_state: str, task_state: str | None) -> Classification:
    """(status kind, phase, format, action) of a polled server snapshot; see the table above."""
    if vm_state == "error":
        return Classification(
            _TASK_KINDS.get(task_state or "", POLLED_KIND_DEFAULT), PHASE_ERROR, FORMAT_POLL, POLLED_ACTION
        )
    if task_state:
        return Classification(
            _TASK_KINDS.get(task_state, POLLED_KIND_DEFAULT), PHASE_START, FORMAT_POLL, POLLED_ACTION
        )
    if vm_state == "building":
        return Classification("CREATE", PHASE_START, FORMAT_POLL, POLLED_ACTION)
    return Classification(
        _STATE_KINDS.get(vm_state, POLLED_KIND_DEFAULT), PHASE_END, FORMAT_POLL, POLLED_ACTION
    )
