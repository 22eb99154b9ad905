"""VES 7.2 `measurement` events: one per VM per interval from Ceilometer's samples, and one per VIM
per interval of eventfed's own fleet figures. Pure: no I/O.

Each VM event carries the figures of one closed interval (streams.metering) in the schema's typed
arrays where the schema has a field for the meter (CommonEventFormat_30.2.1_ONAP.json
`measurementFields`), and every other meter in `additionalMeasurements`, one named hashMap per
meter and resource (VES hashMaps carry strings). schemas/README.md has the table of each field,
the meter it comes from and its unit conversion.

Identity: sourceId the instance uuid, sourceName the VM's name, reportingEntityName the VIM (or
the feed's own name), eventId `{vim}/{instance}/measurement/{interval start}` (deterministic: an
interval written again after a crash between its two writes has the same id), sequence the
interval's number since the epoch (increasing per VM, as VES asks of a source's events).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from streams.event_ids import bounded_event_id
from streams.metering import CUMULATIVE, Figure, Interval
from streams.ves import FIELDS_VERSION, HEADER_VERSION, LISTENER_VERSION

MEASUREMENT_DOMAIN: Final = "measurement"
VM_EVENT_NAME: Final = "Measurement_eventfed_VmUsage"
FLEET_EVENT_NAME: Final = "Measurement_eventfed_VimFleet"
_MICROS: Final = 1_000_000

# Meters of Ceilometer 27's compute pollsters that fill a typed array (ceilometer/compute/pollsters).
CPU_METER: Final = "cpu"
MEMORY_USAGE: Final = "memory.usage"
MEMORY_CONFIGURED: Final = "memory"
MEMORY_AVAILABLE: Final = "memory.available"
VCPUS: Final = "vcpus"
# Per-device disk meters (resource "<instance>-<device>", cumulative): VES field, per second.
DISK_RATES: Final[Mapping[str, str]] = {
    "disk.device.read.bytes": "diskOctetsReadAvg",
    "disk.device.write.bytes": "diskOctetsWriteAvg",
    "disk.device.read.requests": "diskOpsReadAvg",
    "disk.device.write.requests": "diskOpsWriteAvg",
}
# Per-NIC meters (cumulative): the VES field pair, increase over the interval and last reading.
NIC_COUNTERS: Final[Mapping[str, tuple[str, str]]] = {
    "network.incoming.bytes": ("receivedOctetsDelta", "receivedOctetsAccumulated"),
    "network.outgoing.bytes": ("transmittedOctetsDelta", "transmittedOctetsAccumulated"),
    "network.incoming.packets": ("receivedTotalPacketsDelta", "receivedTotalPacketsAccumulated"),
    "network.outgoing.packets": ("transmittedTotalPacketsDelta", "transmittedTotalPacketsAccumulated"),
    "network.incoming.packets.drop": ("receivedDiscardedPacketsDelta", "receivedDiscardedPacketsAccumulated"),
    "network.outgoing.packets.drop": (
        "transmittedDiscardedPacketsDelta",
        "transmittedDiscardedPacketsAccumulated",
    ),
    "network.incoming.packets.error": ("receivedErrorPacketsDelta", "receivedErrorPacketsAccumulated"),
    "network.outgoing.packets.error": ("transmittedErrorPacketsDelta", "transmittedErrorPacketsAccumulated"),
}
_MIB_IN_KIB: Final = 1024.0


@dataclass(frozen=True, slots=True)
class VmIdentity:
    """What the VM's state record says of it (its samples fill the gaps)."""

    vim_id: str
    instance_id: str
    name: str | None
    tenant_id: str | None
    host: str | None


def _number(value: float) -> float | int:
    # Whole numbers as integers: "512" rather than "512.0" in hashMaps, and exact in JSON.
    return int(value) if value == int(value) and abs(value) < 2**53 else value


def _text(value: float) -> str:
    return str(_number(value))


def _header(
    vim_id: str,
    source_id: str,
    source_name: str,
    reporting_entity: str | None,
    event_name: str,
    event_id: str,
    interval: Interval | tuple[int, int],
) -> dict[str, Any]:
    start, length = (interval.start, interval.length) if isinstance(interval, Interval) else interval
    return {
        "domain": MEASUREMENT_DOMAIN,
        "eventId": event_id,
        "eventName": event_name,
        "priority": "Normal",
        "reportingEntityName": reporting_entity or vim_id,
        "sequence": start // length,
        "sourceId": source_id,
        "sourceName": source_name,
        "startEpochMicrosec": start * _MICROS,
        "lastEpochMicrosec": (start + length) * _MICROS,
        "version": HEADER_VERSION,
        "vesEventListenerVersion": LISTENER_VERSION,
        "timeZoneOffset": "UTC+00.00",
    }


def vm_event_id(vim_id: str, instance_id: str, start: int) -> str:
    return bounded_event_id(vim_id, f"{instance_id}/measurement/{start}")


def vm_measurement(
    vm: VmIdentity,
    interval: Interval,
    keep_meter: Callable[[str], bool] = lambda _meter: True,
    reporting_entity: str | None = None,
) -> dict[str, Any] | None:
    """The VES measurement event of one VM's closed interval, with the meters `keep_meter` keeps;
    None when it keeps none."""
    figures = [f for f in interval.figures if keep_meter(f.meter)]
    if not figures:
        return None
    by_meter: dict[str, list[Figure]] = {}
    for figure in figures:
        by_meter.setdefault(figure.meter, []).append(figure)
    used: set[int] = set()
    fields: dict[str, Any] = {
        "measurementInterval": interval.length,
        "measurementFieldsVersion": FIELDS_VERSION,
    }
    cpu = _cpu_usage(vm, interval, by_meter, used)
    if cpu:
        fields["cpuUsageArray"] = cpu
    memory = _memory_usage(vm, interval, by_meter, used)
    if memory:
        fields["memoryUsageArray"] = memory
    disks = _disk_usage(figures, used)
    if disks:
        fields["diskUsageArray"] = disks
    nics = _nic_performance(figures, used)
    if nics:
        fields["nicPerformanceArray"] = nics
    rest = [_additional(f) for f in figures if id(f) not in used]
    if rest:
        fields["additionalMeasurements"] = rest
    fields["additionalFields"] = {
        k: v
        for k, v in {
            "vimId": vm.vim_id,
            "tenantId": vm.tenant_id or interval.project_id,
            "host": vm.host or interval.host,
            "samples": str(interval.samples),
            "source": "ceilometer",
        }.items()
        if v
    }
    header = _header(
        vm.vim_id,
        vm.instance_id,
        vm.name or vm.instance_id,
        reporting_entity,
        VM_EVENT_NAME,
        vm_event_id(vm.vim_id, vm.instance_id, interval.start),
        interval,
    )
    return {"event": {"commonEventHeader": header, "measurementFields": fields}}


def _own(figures: Sequence[Figure] | None, vm: VmIdentity) -> Figure | None:
    """The figure of an instance-level meter (resource the instance itself)."""
    for figure in figures or ():
        if figure.resource_id == vm.instance_id:
            return figure
    return None


def _cpu_usage(
    vm: VmIdentity, interval: Interval, by_meter: Mapping[str, list[Figure]], used: set[int]
) -> list[dict[str, Any]]:
    cpu = _own(by_meter.get(CPU_METER), vm)
    if cpu is None or cpu.value is None:
        return []
    vcpus_figure = _own(by_meter.get(VCPUS), vm)
    vcpus = (vcpus_figure.value if vcpus_figure is not None else None) or interval.vcpus or 1
    used.add(id(cpu))
    # cpu is nanoseconds of CPU time; its rate over the interval per vCPU-second is the share used.
    percent = cpu.value / 1e9 / vcpus * 100.0
    return [{"cpuIdentifier": "all", "percentUsage": round(percent, 6)}]


def _memory_usage(
    vm: VmIdentity, interval: Interval, by_meter: Mapping[str, list[Figure]], used: set[int]
) -> list[dict[str, Any]]:
    """memory.usage against the memory the guest has: libvirt's `memory.available`, else the
    flavour's (`memory` gauge, or the pollsters' memory_mb metadata). Without either, memoryFree
    (required by the schema) is unknown: memory.usage then goes to additionalMeasurements."""
    usage = _own(by_meter.get(MEMORY_USAGE), vm)
    if usage is None or usage.value is None:
        return []
    configured = _own(by_meter.get(MEMORY_CONFIGURED), vm)
    available = _own(by_meter.get(MEMORY_AVAILABLE), vm)
    configured_mib = configured.value if configured is not None else interval.memory_mb
    total_mib = available.value if available is not None else configured_mib
    if total_mib is None:
        return []
    used.add(id(usage))
    if available is not None:
        used.add(id(available))
    used_kib = usage.value * _MIB_IN_KIB
    free_kib = max(total_mib * _MIB_IN_KIB - used_kib, 0.0)
    entry: dict[str, Any] = {"vmIdentifier": vm.instance_id, "memoryUsed": _number(used_kib)}
    if configured_mib is not None:
        entry["memoryConfigured"] = _number(configured_mib * _MIB_IN_KIB)
    entry["memoryFree"] = _number(free_kib)
    if used_kib + free_kib > 0:
        entry["percentMemoryUsage"] = round(used_kib / (used_kib + free_kib) * 100.0, 6)
    return [entry]


def _device(figure: Figure) -> str:
    return figure.label or figure.resource_id


def _disk_usage(figures: Sequence[Figure], used: set[int]) -> list[dict[str, Any]]:
    disks: dict[str, dict[str, Any]] = {}
    for figure in figures:
        field = DISK_RATES.get(figure.meter)
        if field is None or figure.kind != CUMULATIVE or figure.value is None:
            continue
        used.add(id(figure))
        disk = disks.setdefault(figure.resource_id, {"diskIdentifier": _device(figure)})
        disk[field] = round(figure.value, 6)
    return [disks[k] for k in sorted(disks)]


def _nic_performance(figures: Sequence[Figure], used: set[int]) -> list[dict[str, Any]]:
    nics: dict[str, dict[str, Any]] = {}
    for figure in figures:
        names = NIC_COUNTERS.get(figure.meter)
        if names is None or figure.kind != CUMULATIVE:
            continue
        used.add(id(figure))
        nic = nics.setdefault(
            figure.resource_id, {"nicIdentifier": _device(figure), "valuesAreSuspect": "false"}
        )
        delta_field, accumulated_field = names
        if figure.accumulated is not None:
            nic[accumulated_field] = _number(figure.accumulated)
        if figure.increase is not None:
            nic[delta_field] = _number(figure.increase)
        if figure.reset:
            # A counter that went down: the delta is unknown, the reading may be off.
            nic["valuesAreSuspect"] = "true"
    return [nics[k] for k in sorted(nics)]


def _additional(figure: Figure) -> dict[str, Any]:
    values: dict[str, str] = {"resourceId": figure.resource_id, "type": figure.kind}
    if figure.kind == CUMULATIVE:
        values["unit"] = f"{figure.unit}/s"
        if figure.value is not None:
            values["value"] = _text(figure.value)
        if figure.accumulated is not None:
            values["accumulated"] = _text(figure.accumulated)
        if figure.reset:
            values["reset"] = "true"
    else:
        values["unit"] = figure.unit
        if figure.value is not None:
            values["value"] = _text(figure.value)
    return {"name": figure.meter, "hashMap": values}


def encode(event: Mapping[str, Any]) -> bytes:
    return orjson.dumps(event)


@dataclass(frozen=True, slots=True)
class FleetFigures:
    """One VIM's figures over one interval, from the state table and the events of the interval."""

    vim_id: str
    start: int
    length: int
    vms_by_status: Mapping[str, int]
    events_by_kind: Mapping[str, int]
    failures_raised: int
    failures_cleared: int
    stuck_actions: int
    lag_p50: float | None
    lag_p99: float | None
    # The raw-topic partitions whose VMs and events the figures count, and those whose share had
    # not come when the figures had to go (see streams.fleet).
    partitions: tuple[int, ...] = ()
    missing_partitions: tuple[int, ...] = ()


def fleet_event_id(vim_id: str, start: int) -> str:
    return bounded_event_id(vim_id, f"fleet/measurement/{start}")


def fleet_measurement(figures: FleetFigures, reporting_entity: str | None = None) -> dict[str, Any]:
    """The VES measurement event of one VIM's fleet figures over one interval."""
    named = [
        {"name": "vmsByStatus", "hashMap": {k: str(v) for k, v in sorted(figures.vms_by_status.items())}},
        {"name": "eventsByKind", "hashMap": {k: str(v) for k, v in sorted(figures.events_by_kind.items())}},
        {
            "name": "vmFailures",
            "hashMap": {"raised": str(figures.failures_raised), "cleared": str(figures.failures_cleared)},
        },
        {"name": "stuckActions", "hashMap": {"raised": str(figures.stuck_actions)}},
    ]
    lag = {
        name: _text(round(value, 6))
        for name, value in (("p50", figures.lag_p50), ("p99", figures.lag_p99))
        if value is not None
    }
    if lag:
        named.append({"name": "notificationLagSeconds", "hashMap": lag})
    fields = {
        "measurementInterval": figures.length,
        "measurementFieldsVersion": FIELDS_VERSION,
        "additionalMeasurements": named,
        "additionalFields": {
            "vimId": figures.vim_id,
            "source": "eventfed",
            **({"partitions": ",".join(map(str, figures.partitions))} if figures.partitions else {}),
            **(
                {"missingPartitions": ",".join(map(str, figures.missing_partitions))}
                if figures.missing_partitions
                else {}
            ),
        },
    }
    header = _header(
        figures.vim_id,
        figures.vim_id,
        figures.vim_id,
        reporting_entity,
        FLEET_EVENT_NAME,
        fleet_event_id(figures.vim_id, figures.start),
        (figures.start, figures.length),
    )
    return {"event": {"commonEventHeader": header, "measurementFields": fields}}
