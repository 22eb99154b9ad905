"""Nova's API status of a server (ACTIVE, SHUTOFF, ...) from its vm_state and task_state. Pure.

The stream worker's VES statuses and fleet figures and the API's metrics count VMs by it, so the
mapping is written once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# Nova's API status of a server from its vm_state and task_state (the mapping the servers API
# applies, nova/api/openstack/common.py): the task states listed override the vm_state's default.
_REBOOT = {"rebooting": "REBOOT", "reboot_pending": "REBOOT", "reboot_started": "REBOOT"}
_HARD_REBOOT = {
    "rebooting_hard": "HARD_REBOOT",
    "reboot_pending_hard": "HARD_REBOOT",
    "reboot_started_hard": "HARD_REBOOT",
}
_REBUILD = {
    "rebuilding": "REBUILD",
    "rebuild_block_device_mapping": "REBUILD",
    "rebuild_spawning": "REBUILD",
}
_RESIZE = {
    "resize_prep": "RESIZE",
    "resize_migrating": "RESIZE",
    "resize_migrated": "RESIZE",
    "resize_finish": "RESIZE",
}
API_STATUS: Final[Mapping[str, tuple[str, Mapping[str, str]]]] = {
    "active": (
        "ACTIVE",
        {
            **_REBOOT,
            **_HARD_REBOOT,
            **_REBUILD,
            **_RESIZE,
            "updating_password": "PASSWORD",
            "migrating": "MIGRATING",
        },
    ),
    "building": ("BUILD", {}),
    "stopped": ("SHUTOFF", {**_RESIZE, **_REBUILD}),
    "resized": ("VERIFY_RESIZE", {"resize_reverting": "REVERT_RESIZE"}),
    "paused": ("PAUSED", {"migrating": "MIGRATING"}),
    "suspended": ("SUSPENDED", {}),
    "rescued": ("RESCUE", {}),
    "error": ("ERROR", {"rebuilding": "REBUILD"}),
    "deleted": ("DELETED", {}),
    "soft-delete": ("SOFT_DELETED", {}),
    "shelved": ("SHELVED", {}),
    "shelved_offloaded": ("SHELVED_OFFLOADED", {}),
}


def api_status(vm_state: Any, task_state: Any) -> str | None:
    """Nova's API status (ACTIVE, SHUTOFF, ...) for a vm_state and task_state; None if unknown."""
    entry = API_STATUS.get(vm_state) if isinstance(vm_state, str) else None
    if entry is None:
        return None
    default, by_task = entry
    return by_task.get(task_state, default) if isinstance(task_state, str) else default


# A VM eventfed knows of without a vm_state (known from its Ceilometer samples only).
UNKNOWN_STATUS: Final = "UNKNOWN"


def status_or_unknown(vm_state: Any, task_state: Any) -> str:
    """The API status the fleet figures count a VM under: UNKNOWN where there is none."""
    return api_status(vm_state, task_state) or UNKNOWN_STATUS
