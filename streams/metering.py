"""Ceilometer's samples of one VM, gathered per interval in its state record. Pure: no I/O, no clock.

A VM's samples are kept in its state record (under META, key `metering`), like its action timers,
so the figures of an interval in progress survive a worker restart and move with the VM's
partition; the worker's sweep closes an interval once its end plus the grace period has passed
and writes its measurement events and the state without it through the same ordered writer as
every batch (outputs first, then the state). What an interval holds:

- per series (one meter of one resource: the instance, one of its disks or NICs), by
  `counter_type`: a gauge its last value by sample time; a delta the sum of its volumes; a
  cumulative its first and last readings, for the rate between them;
- the message_id of every sample counted, since a polled sample reaches the bus twice
  (`telemetry.polling`, then relayed as `metering`) and a replayed raw record brings its
  samples again.

Bookkeeping written (JSON):

  {"open": {"<interval start, epoch s>": {"ids": [message_id, ...],
                                           "series": {"<meter>|<resource_id>": Series.as_list()},
                                           "info": {"project", "host", "vcpus", "memory_mb"}}},
   "carry": {"<meter>|<resource_id>": [time, volume]},   # a cumulative's last reading, closed
   "through": <start of the last interval closed>}

A cumulative's rate over an interval runs from the last reading of the interval before (`carry`)
to its last reading in this one, so back-to-back intervals cover the time between them; a
reading lower than the one before it is a reset (the VM restarted, the counter wrapped), and
that series gives no rate for the interval. A sample for an interval already closed is late and
dropped; one inside the grace period is counted in its own interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from schemas.raw import sample_instance

GAUGE: Final = "gauge"
CUMULATIVE: Final = "cumulative"
DELTA: Final = "delta"
COUNTER_TYPES: Final = frozenset({GAUGE, CUMULATIVE, DELTA})

# What became of each sample (the worker counts them by these names).
COUNTED: Final = "counted"
DUPLICATE: Final = "duplicate"
LATE: Final = "late"
AFTER_DELETE: Final = "after_delete"
INVALID: Final = "invalid"
# The outcome's reason when the samples made their VM known (it had no state before).
NEW_VM: Final = "new_vm"
OTHER_INSTANCE: Final = "other_instance"

METERING: Final = "metering"
# A carried reading older than this many intervals is dropped: the VM stopped being polled.
CARRY_INTERVALS: Final = 4


class InvalidSample(ValueError):
    """A sample without the fields a figure needs."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The fields of one Ceilometer sample (ceilometer.publisher.utils.meter_message_from_counter)
    that a measurement needs."""

    meter: str
    kind: str
    unit: str
    volume: float
    resource_id: str
    instance_id: str
    at: float  # epoch seconds
    message_id: str
    project_id: str | None
    host: str | None
    label: str | None  # the disk or NIC name of a per-device meter
    vcpus: int | None
    memory_mb: float | None  # the flavour's memory, as the compute pollsters' metadata has it


def epoch_seconds(text: Any) -> float:
    """A sample's timestamp: ISO 8601, naive (polled samples: UTC) or with an offset."""
    if not isinstance(text, str):
        raise InvalidSample(f"timestamp {text!r} is not a string")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSample(f"timestamp {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_sample(raw: Any) -> Sample:
    """One sample dict as Ceilometer writes it; InvalidSample when a needed field is missing."""
    if type(raw) is not dict:
        raise InvalidSample("a sample must be an object")
    meter, kind, resource_id = raw.get("counter_name"), raw.get("counter_type"), raw.get("resource_id")
    volume, message_id = raw.get("counter_volume"), raw.get("message_id")
    if not isinstance(meter, str) or not meter:
        raise InvalidSample("counter_name is missing")
    if kind not in COUNTER_TYPES:
        raise InvalidSample(f"counter_type {kind!r} is none of gauge, cumulative, delta")
    if isinstance(volume, bool) or not isinstance(volume, int | float) or volume != volume:
        raise InvalidSample(f"counter_volume {volume!r} is not a number")
    if not isinstance(resource_id, str) or not resource_id:
        raise InvalidSample("resource_id is missing")
    if not isinstance(message_id, str) or not message_id:
        raise InvalidSample("message_id is missing")
    instance_id = sample_instance(raw)
    assert instance_id is not None  # resource_id is a non-empty string
    metadata = raw.get("resource_metadata")
    metadata = metadata if type(metadata) is dict else {}
    label = metadata.get("disk_name") or metadata.get("vnic_name")
    vcpus = metadata.get("vcpus", metadata.get("cpu_number"))
    memory_mb = metadata.get("memory_mb")
    project, host = raw.get("project_id"), metadata.get("host")
    return Sample(
        meter=meter,
        kind=kind,
        unit=str(raw.get("counter_unit") or ""),
        volume=float(volume),
        resource_id=resource_id,
        instance_id=instance_id,
        at=epoch_seconds(raw.get("timestamp")),
        message_id=message_id,
        project_id=project if isinstance(project, str) and project else None,
        host=host if isinstance(host, str) and host else None,
        label=label if isinstance(label, str) and label else None,
        vcpus=vcpus if type(vcpus) is int and vcpus > 0 else None,
        memory_mb=float(memory_mb) if isinstance(memory_mb, int | float) and memory_mb > 0 else None,
    )


def interval_start(at: float, interval: int) -> int:
    """The start of the clock-aligned interval holding `at` (epoch seconds)."""
    return int(at // interval) * interval


@dataclass(slots=True)
class Series:
    """One meter of one resource within one interval."""

    kind: str
    unit: str
    base_at: float
    base: float
    last_at: float
    last: float
    reset: bool
    total: float
    label: str | None

    @classmethod
    def first(cls, sample: Sample) -> Series:
        return cls(
            sample.kind, sample.unit, sample.at, sample.volume, sample.at, sample.volume, False,
            sample.volume, sample.label,
        )  # fmt: skip

    def add(self, sample: Sample) -> None:
        self.total += sample.volume
        if sample.at >= self.last_at:
            if self.kind == CUMULATIVE and sample.volume < self.last:
                self.reset = True
            self.last_at, self.last = sample.at, sample.volume
        elif sample.at < self.base_at:
            if self.kind == CUMULATIVE and sample.volume > self.base:
                self.reset = True
            self.base_at, self.base = sample.at, sample.volume
        elif self.kind == CUMULATIVE and not self.base <= sample.volume <= self.last:
            self.reset = True

    def as_list(self) -> list[Any]:
        return [
            self.kind, self.unit, self.base_at, self.base, self.last_at, self.last, self.reset, self.total,
            self.label,
        ]  # fmt: skip

    @classmethod
    def from_list(cls, value: Any) -> Series | None:
        if not isinstance(value, list) or len(value) != 9:
            return None
        kind, unit, base_at, base, last_at, last, reset, total, label = value
        return cls(str(kind), str(unit), base_at, base, last_at, last, bool(reset), total, label)


@dataclass(frozen=True, slots=True)
class Figure:
    """One series' figure for a closed interval.

    value        gauge: the last value; delta: the sum; cumulative: the rate per second between the
                 previous interval's last reading (else this one's first) and this one's last, None
                 with fewer than two readings or after a reset
    accumulated  cumulative: the last reading
    increase     cumulative: the increase the rate is made of (None as for the rate)
    """

    meter: str
    resource_id: str
    kind: str
    unit: str
    value: float | None
    accumulated: float | None
    increase: float | None
    reset: bool
    label: str | None


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed interval of one VM: its figures and what the samples said of the VM."""

    start: int
    length: int
    figures: tuple[Figure, ...]
    samples: int
    project_id: str | None
    host: str | None
    vcpus: int | None
    memory_mb: float | None


@dataclass(frozen=True, slots=True)
class Added:
    """The VM's bookkeeping after some samples (None: unchanged) and what became of each."""

    metering: dict[str, Any] | None
    counts: dict[str, int]


def _bucket(metering: Mapping[str, Any], start: int) -> dict[str, Any]:
    found = (metering.get("open") or {}).get(str(start))
    if isinstance(found, Mapping):
        return {
            "ids": list(found.get("ids") or []),
            "series": dict(found.get("series") or {}),
            "info": dict(found.get("info") or {}),
        }
    return {"ids": [], "series": {}, "info": {}}


def add_samples(
    metering: Mapping[str, Any] | None,
    samples: Iterable[Sample],
    interval: int,
    deleted_at: float | None = None,
) -> Added:
    """The samples of one VM counted into their intervals. deleted_at: when the VM was deleted
    (epoch s): a sample taken after that is not counted, as an event after the delete is stale."""
    current: Mapping[str, Any] = metering or {}
    through = current.get("through")
    counts: dict[str, int] = {}
    buckets: dict[int, dict[str, Any]] = {}
    seen: dict[int, set[str]] = {}
    changed: set[int] = set()
    for sample in samples:
        start = interval_start(sample.at, interval)
        if deleted_at is not None and sample.at > deleted_at:
            outcome = AFTER_DELETE
        elif isinstance(through, int) and start <= through:
            outcome = LATE
        else:
            bucket = buckets.get(start)
            if bucket is None:
                bucket = buckets[start] = _bucket(current, start)
                seen[start] = set(bucket["ids"])
            if sample.message_id in seen[start]:
                outcome = DUPLICATE
            else:
                outcome = COUNTED
                changed.add(start)
                seen[start].add(sample.message_id)
                bucket["ids"].append(sample.message_id)
                _count(bucket, sample)
        counts[outcome] = counts.get(outcome, 0) + 1
    if not changed:
        return Added(None, counts)
    opened = dict(current.get("open") or {})
    for start in changed:
        opened[str(start)] = buckets[start]
    return Added({**current, "open": opened}, counts)


def _count(bucket: dict[str, Any], sample: Sample) -> None:
    key = f"{sample.meter}|{sample.resource_id}"
    series = Series.from_list(bucket["series"].get(key))
    if series is None or series.kind != sample.kind:
        series = Series.first(sample)
    else:
        series.add(sample)
    bucket["series"][key] = series.as_list()
    info = bucket["info"]
    for name, value in (
        ("project", sample.project_id),
        ("host", sample.host),
        ("vcpus", sample.vcpus),
        ("memory_mb", sample.memory_mb),
    ):
        if value is not None:
            info[name] = value


def due(metering: Mapping[str, Any] | None, now: float, interval: int, grace: float) -> list[int]:
    """The open intervals whose end plus the grace period has passed, oldest first."""
    if not metering:
        return []
    starts = []
    for text in metering.get("open") or {}:
        try:
            start = int(text)
        except ValueError:
            continue
        if start + interval + grace <= now:
            starts.append(start)
    return sorted(starts)


def close(metering: Mapping[str, Any], start: int, interval: int) -> tuple[Interval, dict[str, Any]]:
    """The figures of an open interval, and the bookkeeping with it closed: its cumulative series'
    last readings carried to the next interval, `through` moved to it."""
    bucket = _bucket(metering, start)
    carry = {k: v for k, v in (metering.get("carry") or {}).items() if _recent(v, start, interval)}
    figures = []
    for key, value in sorted(bucket["series"].items()):
        series = Series.from_list(value)
        if series is None:
            continue
        meter, _, resource_id = key.partition("|")
        figures.append(_figure(meter, resource_id, series, carry.get(key)))
        if series.kind == CUMULATIVE:
            carry[key] = [series.last_at, series.last]
    info = bucket["info"]
    closed = Interval(
        start=start,
        length=interval,
        figures=tuple(figures),
        samples=len(bucket["ids"]),
        project_id=info.get("project"),
        host=info.get("host"),
        vcpus=info.get("vcpus"),
        memory_mb=info.get("memory_mb"),
    )
    opened = {k: v for k, v in (metering.get("open") or {}).items() if k != str(start)}
    through = metering.get("through")
    return closed, {
        "open": opened,
        "carry": carry,
        "through": max(start, through) if isinstance(through, int) else start,
    }


def _recent(reading: Any, start: int, interval: int) -> bool:
    return (
        isinstance(reading, list)
        and len(reading) == 2
        and isinstance(reading[0], int | float)
        and reading[0] >= start - CARRY_INTERVALS * interval
    )


def _figure(meter: str, resource_id: str, series: Series, carried: Any) -> Figure:
    if series.kind == GAUGE:
        value: float | None = series.last
        return Figure(meter, resource_id, series.kind, series.unit, value, None, None, False, series.label)
    if series.kind == DELTA:
        return Figure(
            meter, resource_id, series.kind, series.unit, series.total, None, None, False, series.label
        )
    base_at, base, reset = series.base_at, series.base, series.reset
    if isinstance(carried, list) and carried[0] < base_at:
        if carried[1] > base:
            reset = True
        else:
            base_at, base = carried[0], carried[1]
    increase = rate = None
    if not reset and series.last_at > base_at:
        increase = series.last - base
        rate = increase / (series.last_at - base_at)
    return Figure(
        meter, resource_id, series.kind, series.unit, rate, series.last, increase, reset, series.label
    )
