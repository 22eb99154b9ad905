"""A simulated Nova: VMs going through their lifecycle, as the notifications Nova would send.

Pure and deterministic for a given seed. Both formats carry the fields Nova's own code fills
(`info_from_instance` for legacy, InstanceActionPayload 1.9 for versioned); the states follow
Nova's compute manager: the task_state while an action runs, the vm_state and power_state after.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.raw import raw_document

# action -> (task_state during it, vm_state after, power_state after)
ACTIONS: dict[str, tuple[str | None, str, str]] = {
    "create": ("spawning", "active", "running"),
    "power_off": ("powering-off", "stopped", "shutdown"),
    "power_on": ("powering-on", "active", "running"),
    "pause": ("pausing", "paused", "paused"),
    "unpause": ("unpausing", "active", "running"),
    "suspend": ("suspending", "suspended", "suspended"),
    "resume": ("resuming", "active", "running"),
    "reboot": ("rebooting", "active", "running"),
    "rebuild": ("rebuilding", "active", "running"),
    "shutdown": ("deleting", "active", "shutdown"),
    "soft_delete": ("soft-deleting", "soft-delete", "shutdown"),
    "restore": ("restoring", "active", "running"),
    "delete": ("deleting", "deleted", "shutdown"),
}

# The lifecycle each simulated VM goes through (Nova sends shutdown.* inside a delete).
LIFECYCLE: tuple[str, ...] = (
    "create",
    "power_off",
    "power_on",
    "pause",
    "unpause",
    "reboot",
    "rebuild",
    "soft_delete",
    "restore",
    "suspend",
    "resume",
    "shutdown",
    "delete",
)

FLAVORS = (
    ("m1.tiny", "1", 512, 1, 1),
    ("m1.small", "2", 2048, 1, 20),
    ("m1.medium", "3", 4096, 2, 40),
)
_LEGACY_PREFIX = "compute.instance."
_VERSIONED_PREFIX = "instance."


def nova_timestamp(moment: datetime) -> str:
    """Nova's own format: str(utcnow()), UTC without a zone."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _iso_z(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SimulatedVm:
    uuid: str
    display_name: str
    tenant_id: str
    user_id: str
    host: str
    flavor: tuple[str, str, int, int, int]
    image: str
    ip: str
    created_at: datetime
    vm_state: str = "building"
    task_state: str | None = "scheduling"
    power_state: str = "pending"
    launched_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    """What a Notifier sends: publisher, event type, priority and payload."""

    publisher_id: str
    event_type: str
    priority: str
    payload: dict[str, Any]
    instance_id: str


class SimulatedCloud:
    def __init__(self, seed: int = 7, start: datetime | None = None) -> None:
        self._random = random.Random(seed)
        self.clock = start or datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def new_vm(self, index: int) -> SimulatedVm:
        host = f"compute-{index % 4 + 1}"
        return SimulatedVm(
            uuid=self._uuid(),
            display_name=f"vnf-{index:04d}",
            tenant_id=f"{self._random.getrandbits(64):016x}" * 2,
            user_id=f"user-{index % 5}",
            host=host,
            flavor=FLAVORS[index % len(FLAVORS)],
            image=self._uuid(),
            ip=f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256 + 1}",
            created_at=self.clock,
            metadata={"vnf": f"vnf-{index % 7}"},
        )

    def polled_samples(self, vm: SimulatedVm, poll: int, at: datetime) -> Notification:
        """One poll of the VM by Ceilometer's compute pollsters, as the polling agent hands it to
        the notification agent (event_type telemetry.polling, payload {"samples": [...]}; the
        sample fields of ceilometer.publisher.utils.meter_message_from_counter): CPU time, memory
        in use, the root disk's and the NIC's counters, growing from poll to poll."""
        name, flavor_id, ram, vcpus, _disk = vm.flavor
        metadata = {
            "display_name": vm.display_name,
            "instance_id": vm.uuid,
            "instance_type": name,
            "host": vm.host,
            "flavor": {"id": flavor_id, "name": name, "vcpus": vcpus, "ram": ram},
            "vcpus": vcpus,
            "memory_mb": ram,
        }
        # Each VM as busy from poll to poll, so that its counters only grow.
        busy = 0.05 + int(vm.uuid[:4], 16) % 85 / 100
        growth = poll + 1
        # CPU time since the VM started (a minute before its first poll): `busy` of its vCPUs.
        up_seconds = 60.0 + (at - vm.created_at).total_seconds()
        vda, tap0 = f"{vm.uuid}-vda", f"{vm.uuid}-tap0"
        disk, nic = {"disk_name": "vda"}, {"vnic_name": "tap0"}
        meters: tuple[tuple[str, str, str, str, int, dict[str, str]], ...] = (
            ("cpu", "cumulative", "ns", vm.uuid, int(busy * vcpus * 1e9 * up_seconds), {}),
            ("memory.usage", "gauge", "MiB", vm.uuid, int(ram * busy), {}),
            ("disk.device.read.bytes", "cumulative", "B", vda, 4_000_000 * growth, disk),
            ("disk.device.write.bytes", "cumulative", "B", vda, 1_000_000 * growth, disk),
            ("network.incoming.bytes", "cumulative", "B", tap0, 900_000 * growth, nic),
            ("network.outgoing.bytes", "cumulative", "B", tap0, 300_000 * growth, nic),
        )
        samples = [
            {
                "source": "openstack",
                "counter_name": meter,
                "counter_type": kind,
                "counter_unit": unit,
                "counter_volume": volume,
                "user_id": vm.user_id,
                "user_name": None,
                "project_id": vm.tenant_id,
                "project_name": None,
                "resource_id": resource_id,
                # Polled samples carry naive UTC times.
                "timestamp": at.astimezone(UTC).replace(tzinfo=None).isoformat(),
                "resource_metadata": {**metadata, **extra},
                "message_id": self._uuid(),
                "monotonic_time": None,
                "message_signature": "",
            }
            for meter, kind, unit, resource_id, volume, extra in meters
        ]
        return Notification(
            "ceilometer.polling", "telemetry.polling", "SAMPLE", {"samples": samples}, vm.uuid
        )

    def tick(self) -> datetime:
        self.clock += timedelta(milliseconds=self._random.randint(5, 50))
        return self.clock

    def lifecycle(self, vm: SimulatedVm, fmt: str) -> Iterator[Notification]:
        """Every notification of a VM's lifecycle, in the order Nova sends them."""
        for action in LIFECYCLE:
            if action == "delete":
                yield self.action(vm, "delete", "start", fmt)
                yield self.action(vm, "shutdown", "start", fmt)
                yield self.action(vm, "shutdown", "end", fmt)
                yield self.action(vm, "delete", "end", fmt)
            elif action != "shutdown":
                yield self.action(vm, action, "start", fmt)
                yield self.action(vm, action, "end", fmt)

    def varied_lifecycle(
        self, vm: SimulatedVm, index: int, fmt: str, stuck_delete: bool = False
    ) -> Iterator[Notification]:
        """A lifecycle that ends in one of several states, with an occasional failed action.

        A quarter of the VMs stay stopped, a quarter paused, a quarter soft-deleted and the rest are
        deleted; every fifth VM's reboot fails (an `.error` notification, the VM stays active).
        With `stuck_delete`, a deleted VM's delete starts and never ends (stuck in `deleting`).
        """
        ending = ("power_off", "pause", "soft_delete", None)[index % 4]
        for action in LIFECYCLE:
            if action == "shutdown":
                continue
            if action == "delete":
                yield self.action(vm, "delete", "start", fmt)
                if stuck_delete:
                    return
                yield self.action(vm, "shutdown", "start", fmt)
                yield self.action(vm, "shutdown", "end", fmt)
                yield self.action(vm, "delete", "end", fmt)
                return
            yield self.action(vm, action, "start", fmt)
            failed = action == "reboot" and index % 5 == 4
            yield self.action(vm, action, "error" if failed else "end", fmt)
            if action == ending:
                return

    def action(self, vm: SimulatedVm, action: str, phase: str, fmt: str) -> Notification:
        task_state, vm_state, power_state = ACTIONS[action]
        now = self.tick()
        if phase == "start":
            vm.task_state = task_state
        elif phase == "error":
            vm.task_state = None
        elif phase == "end":
            vm.task_state = None if action != "shutdown" else vm.task_state
            vm.vm_state = vm_state
            vm.power_state = power_state
            if action == "create":
                vm.launched_at = now
            if action == "delete":
                vm.deleted_at = now
        vm.updated_at = now
        if fmt == "legacy":
            return self._legacy(vm, action, phase)
        return self._versioned(vm, action, phase)

    def _legacy(self, vm: SimulatedVm, action: str, phase: str) -> Notification:
        name, flavor_id, memory_mb, vcpus, root_gb = vm.flavor
        payload: dict[str, Any] = {
            "tenant_id": vm.tenant_id,
            "user_id": vm.user_id,
            "instance_id": vm.uuid,
            "display_name": vm.display_name,
            "reservation_id": f"r-{vm.uuid[:8]}",
            "hostname": vm.display_name,
            "instance_type": name,
            "instance_type_id": int(flavor_id),
            "instance_flavor_id": flavor_id,
            "architecture": "x86_64",
            "memory_mb": memory_mb,
            "disk_gb": root_gb,
            "vcpus": vcpus,
            "root_gb": root_gb,
            "ephemeral_gb": 0,
            "host": vm.host,
            "node": f"{vm.host}.cloud.local",
            "availability_zone": "nova",
            "cell_name": "",
            "created_at": nova_timestamp(vm.created_at),
            "terminated_at": nova_timestamp(vm.deleted_at) if vm.deleted_at else "",
            "deleted_at": nova_timestamp(vm.deleted_at) if vm.deleted_at else "",
            "launched_at": nova_timestamp(vm.launched_at) if vm.launched_at else "",
            "image_ref_url": f"http://glance.cloud.local:9292/images/{vm.image}",
            "os_type": "linux",
            "kernel_id": "",
            "ramdisk_id": "",
            "image_meta": {"base_image_ref": vm.image, "min_disk": str(root_gb)},
            "state": vm.vm_state,
            "state_description": vm.task_state or "",
            "progress": "",
            "fixed_ips": [{"address": vm.ip, "type": "fixed", "version": 4, "label": "private"}],
            "metadata": dict(vm.metadata),
            "access_ip_v4": vm.ip,
            "access_ip_v6": None,
        }
        if phase == "error":
            payload["exception"] = "InstanceFaultRollback"
            payload["message"] = f"{action} failed on {vm.host}"
            payload["code"] = 500
        return Notification(
            f"compute.{vm.host}", f"{_LEGACY_PREFIX}{action}.{phase}", _priority(phase), payload, vm.uuid
        )

    def _versioned(self, vm: SimulatedVm, action: str, phase: str) -> Notification:
        data: dict[str, Any] = {
            "uuid": vm.uuid,
            "display_name": vm.display_name,
            "display_description": vm.display_name,
            "host_name": vm.display_name,
            "host": vm.host,
            "node": f"{vm.host}.cloud.local",
            "availability_zone": "nova",
            "tenant_id": vm.tenant_id,
            "user_id": vm.user_id,
            "reservation_id": f"r-{vm.uuid[:8]}",
            "request_id": f"req-{self._uuid()}",
            "action_initiator_user": vm.user_id,
            "action_initiator_project": vm.tenant_id,
            "created_at": _iso_z(vm.created_at),
            "updated_at": _iso_z(vm.updated_at),
            "launched_at": _iso_z(vm.launched_at),
            "terminated_at": _iso_z(vm.deleted_at),
            "deleted_at": _iso_z(vm.deleted_at),
            "state": vm.vm_state,
            "power_state": vm.power_state,
            "task_state": vm.task_state,
            "progress": 0,
            "locked": False,
            "locked_reason": None,
            "image_uuid": vm.image,
            "kernel_id": "",
            "ramdisk_id": "",
            "os_type": "linux",
            "architecture": "x86_64",
            "key_name": "ops-key",
            "auto_disk_config": "MANUAL",
            "metadata": dict(vm.metadata),
            "fault": _versioned_fault(vm, action) if phase == "error" else None,
            "flavor": _flavor_payload(vm),
            "ip_addresses": [_ip_payload(vm)],
            "block_devices": [],
            "shares": [],
        }
        payload = {
            "nova_object.name": "InstanceActionPayload",
            "nova_object.namespace": "nova",
            "nova_object.version": "1.9",
            "nova_object.data": data,
        }
        return Notification(
            f"nova-compute:{vm.host}",
            f"{_VERSIONED_PREFIX}{action}.{phase}",
            _priority(phase),
            payload,
            vm.uuid,
        )


def _versioned_fault(vm: SimulatedVm, action: str) -> dict[str, Any]:
    return {
        "nova_object.name": "ExceptionPayload",
        "nova_object.namespace": "nova",
        "nova_object.version": "1.1",
        "nova_object.data": {
            "exception": "InstanceFaultRollback",
            "exception_message": f"{action} failed on {vm.host}",
            "function_name": action,
            "module_name": "nova.compute.manager",
            "traceback": "",
        },
    }


def _flavor_payload(vm: SimulatedVm) -> dict[str, Any]:
    name, flavor_id, memory_mb, vcpus, root_gb = vm.flavor
    return {
        "nova_object.name": "FlavorPayload",
        "nova_object.namespace": "nova",
        "nova_object.version": "1.4",
        "nova_object.data": {
            "flavorid": flavor_id,
            "name": name,
            "memory_mb": memory_mb,
            "vcpus": vcpus,
            "root_gb": root_gb,
            "ephemeral_gb": 0,
            "swap": 0,
            "is_public": True,
            "rxtx_factor": 1.0,
            "vcpu_weight": 0,
            "disabled": False,
            "description": None,
            "extra_specs": {},
            "projects": None,
        },
    }


def _ip_payload(vm: SimulatedVm) -> dict[str, Any]:
    return {
        "nova_object.name": "IpPayload",
        "nova_object.namespace": "nova",
        "nova_object.version": "1.0",
        "nova_object.data": {
            "address": vm.ip,
            "device_name": "tap0",
            "label": "private",
            "mac": "fa:16:3e:00:00:01",
            "meta": {},
            "port_uuid": vm.uuid,
            "version": 4,
        },
    }


def _priority(phase: str) -> str:
    return "ERROR" if phase == "error" else "INFO"


def raw_record(
    notification: Notification, vim_id: str, sent_at: datetime, message_id: str | None = None
) -> dict[str, Any]:
    """The listener's raw record for a notification, for feeding the stream stage directly."""
    return raw_document(
        vim_id=vim_id,
        received_at=sent_at,
        event_type=notification.event_type,
        publisher_id=notification.publisher_id,
        priority=notification.priority,
        payload=notification.payload,
        message_id=message_id or str(uuid.uuid4()),
        timestamp=nova_timestamp(sent_at),
    )
