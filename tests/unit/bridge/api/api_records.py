"""State-topic records for the API's unit tests."""

from __future__ import annotations

import json
from typing import Any

from bridge.api.state_table import StateTable

VIM_A = "CloudOwner_RegionOne"
VIM_B = "CloudOwner_RegionTwo"


def state_record(vim_id: str, instance_id: str, **fields: Any) -> dict[str, Any]:
    """A state-topic value in the contract's shape; keyword arguments override fields."""
    record: dict[str, Any] = {
        "state_description": "",
        "availability_zone": "nova",
        "terminated_at": None,
        "ephemeral_gb": 0,
        "instance_type_id": 2,
        "deleted_at": None,
        "reservation_id": "r-abc",
        "memory_mb": 512,
        "display_name": f"vm-{instance_id}",
        "hostname": f"vm-{instance_id}",
        "state": "active",
        "progress": 100,
        "launched_at": "2024-05-01T10:00:00+00:00",
        "metadata": {},
        "node": "compute-1",
        "ramdisk_id": None,
        "access_ip_v6": None,
        "disk_gb": 1,
        "access_ip_v4": "10.0.0.5",
        "kernel_id": None,
        "host": "compute-1",
        "user_id": "user-1",
        "image_ref_url": "http://glance/images/1",
        "cell_name": None,
        "root_gb": 1,
        "tenant_id": "tenant-1",
        "created_at": "2024-05-01T09:59:00+00:00",
        "instance_id": instance_id,
        "instance_type": "m1.tiny",
        "vcpus": 1,
        "image_meta": {"os_type": "linux"},
        "architecture": "x86_64",
        "os_type": "linux",
        "instance_flavor_id": "1",
        "status": "CREATE",
        "phase": "end",
        "vim_id": vim_id,
        "event_type": "instance.create.end",
        "format": "versioned",
        "message_id": "m-1",
        "publisher_id": "nova-compute:compute-1",
        "priority": "INFO",
        "occurred_at": "2024-05-01T10:00:00+00:00",
        "received_at": "2024-05-01T10:00:01+00:00",
        "updated_at": None,
        "power_state": "running",
        "task_state": None,
        "fault": None,
    }
    record.update(fields)
    return record


def encode(record: dict[str, Any] | None) -> bytes | None:
    return None if record is None else json.dumps(record).encode("utf-8")


def put(table: StateTable, vim_id: str, instance_id: str, **fields: Any) -> None:
    table.apply(f"{vim_id}/{instance_id}".encode(), encode(state_record(vim_id, instance_id, **fields)))


def fill_sample(table: StateTable) -> None:
    """Eight VMs in VIM_A in assorted states, two in VIM_B."""
    put(table, VIM_A, "vm-01")
    put(table, VIM_A, "vm-02", state="stopped", status="POWER_OFF", event_type="instance.power_off.end")
    put(table, VIM_A, "vm-03", state="stopped", status="SHUT_DOWN", host="compute-2")
    put(table, VIM_A, "vm-04", state="paused", status="PAUSE", tenant_id="tenant-2")
    put(table, VIM_A, "vm-05", state="active", status="POWER_OFF", phase="start", task_state="powering-off")
    put(table, VIM_A, "vm-06", state="deleted", status="DELETE", occurred_at="2024-05-02T08:00:00+00:00")
    put(table, VIM_A, "vm-07", state="error", status="CREATE", phase="error", fault={"message": "no host"})
    put(
        table,
        VIM_A,
        "vm-08",
        state="soft-delete",
        status="SOFT_DELETE",
        tenant_id="tenant-2",
        host="compute-2",
    )
    put(table, VIM_B, "vm-b1", state="active", status="UPDATE", phase="none")
    put(table, VIM_B, "vm-b2", state="stopped", status="POWER_OFF")


# Paging parameters every paged route refuses, with the message it gives (page limit max 50).
BAD_PAGING_QUERIES: list[tuple[str, str]] = [
    ("limit=0", "limit must be an integer from 1 to 50"),
    ("limit=51", "limit must be an integer from 1 to 50"),
    ("limit=-1", "limit must be"),
    ("limit=1.5", "limit must be"),
    ("limit=abc", "limit must be"),
    ("limit=", "limit must be 1 to 255 characters"),
    ("limit=99999999999999999999", "limit must be"),
    ("limit=1&limit=2", "give limit at most once"),
    ("marker=", "marker must be 1 to 255 characters"),
    ("marker=" + "x" * 256, "marker must be 1 to 255 characters"),
    ("marker=a&marker=b", "give marker at most once"),
]
