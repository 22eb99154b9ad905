"""What the stream stage does with one raw record. Pure: no Kafka, no Faust, no clock.

For each record the processor decides one explicit outcome (streams.outcomes: applied, replayed,
stale, duplicate, ignored, dead; stuck for a timer) in small steps: read the event, decide it
against the VM's state (a replay, a duplicate, stale or new), and for a new state decide its alarm
step (streams.ves) and action timers (streams.stuck); streams.publish makes the records.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.dead_letter import STAGE_STUCK, dead_letter_headers
from schemas.raw import SAMPLE_EVENT_TYPES, Headers, samples_of
from schemas.state import (
    DELETED_STATE,
    META,
    Bookkeeping,
    ClearedRecord,
    source_of,
    source_partition,
    state_key,
)
from schemas.vocabulary import FORMAT_LEGACY, FORMAT_POLL, FORMAT_VERSIONED, twin_action
from streams import codecs, metering, stuck, ves, ves_measurement
from streams.fleet import FleetFlow
from streams.normalise import MalformedNotification, Normalised, load_record, normalise_with_texts
from streams.outcomes import (
    APPLIED,
    DEAD,
    DUPLICATE,
    IGNORED,
    MEASURED,
    METERED,
    REPLAYED,
    STALE,
    STUCK,
    Outcome,
    Source,
    Topics,
)
from streams.publish import Publisher
from streams.routing import CONTENT_TYPES, Output
from streams.subscriptions import Subscription

__all__ = [
    "APPLIED",
    "CONTENT_TYPES",
    "DEAD",
    "DUPLICATE",
    "IGNORED",
    "MEASURED",
    "METERED",
    "REPLAYED",
    "STALE",
    "STUCK",
    "Outcome",
    "Output",
    "Source",
    "Topics",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MEASUREMENT_TYPE = ("content-type", CONTENT_TYPES["ves-measurement"])


class DedupWindow:
    """message_ids seen in the last `window` seconds, bounded in size (oldest forgotten first)."""

    def __init__(self, window: float, max_entries: int = 1_000_000) -> None:
        self._window = window
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen_before(self, message_id: str, now: float) -> bool:
        if self._window <= 0:
            return False
        seen = self._seen
        while seen:
            oldest_id, seen_at = next(iter(seen.items()))
            if now - seen_at <= self._window and len(seen) < self._max:
                break
            del seen[oldest_id]
        if message_id in seen:
            return True
        seen[message_id] = now
        return False

    def __len__(self) -> int:
        return len(self._seen)


# A notification this close (seconds) to a polled snapshot with the same vm_state, task_state and
# host is the same change seen twice: Nova sends an action's notification just after it saves the
# instance, whose updated_at the API shows.
SAME_CHANGE_SECONDS = 5.0


def version_of(event_json: Mapping[str, Any]) -> list[str]:
    """Searchlight's ordering: the instance's updated_at, then the notification time (ISO, UTC).

    Nova keeps updated_at in whole seconds (a DATETIME column), so the first part is cut to the
    second whether it is updated_at or, where the notification has none (legacy ones, a versioned
    create.start), the notification time: else a notification without updated_at would rank above
    every later one of the same second, and real Nova sends a whole lifecycle within one.

    A polled snapshot (its `updated` is whole seconds too) is the state at the end of its second:
    it held when the server was read, so it ranks after the notifications of that second; a later
    change in the same second loses to it until the next cycle reads it.
    """
    occurred = str(event_json.get("occurred_at") or "")
    first = str(event_json.get("updated_at") or occurred)
    # "YYYY-MM-DDTHH:MM:SS.ffffffZ", the form codecs.event_to_json_dict writes.
    if len(first) == 27 and first[19] == ".":
        if event_json.get("format") == FORMAT_POLL:
            end_of_second = first[:19] + ".999999" + first[26:]
            return [end_of_second, end_of_second]
        first = first[:19] + ".000000" + first[26:]
    return [first, occurred]


def is_older(
    version: list[str], current: list[str], event_json: Mapping[str, Any], state: Mapping[str, Any]
) -> bool:
    """Whether the event is older than the state, by version_of.

    Across formats only the notification times compare: a legacy notification has no updated_at
    (its version starts with its own time), and a versioned payload's updated_at is often the
    instance's previous save, so a versioned lock right after a legacy update would look older.
    """
    if event_json.get("format") != state.get("format"):
        return version[1:] < current[1:]
    return version < current


# Twins are sent one right after the other; further apart, two alike events are two events.
TWIN_SECONDS = 5.0
_TWIN_FORMATS = frozenset({FORMAT_LEGACY, FORMAT_VERSIONED})


def is_twin(event_json: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    """Whether the event is the other-format twin of the one that made the state."""
    if {event_json.get("format"), state.get("format")} != _TWIN_FORMATS:
        return False
    if twin_action(str(event_json.get("event_type"))) != twin_action(str(state.get("event_type"))):
        return False
    if any(event_json.get(name) != state.get(name) for name in ("phase", "state", "task_state")):
        return False
    try:
        apart = abs(_instant(event_json["occurred_at"]) - _instant(state["occurred_at"]))
    except (KeyError, TypeError, ValueError):
        return False
    return apart <= TWIN_SECONDS


def _instant(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def same_change(event_json: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    """Whether a polled snapshot and the VM's state (or a notification and a polled state) tell of
    the same change: same vm_state, task_state and host. A snapshot that finds the VM as its state
    already says brings no news; a notification within SAME_CHANGE_SECONDS of the snapshot it
    follows is that snapshot's change. Two notifications are never compared here."""
    event_polled = event_json.get("format") == FORMAT_POLL
    state_polled = state.get("format") == FORMAT_POLL
    if not (event_polled or state_polled):
        return False
    if any(event_json.get(name) != state.get(name) for name in ("state", "task_state", "host")):
        return False
    if event_polled:
        return True
    try:
        polled_at = _instant(str(state.get("updated_at") or state.get("occurred_at")))
        occurred = _instant(str(event_json.get("occurred_at")))
    except ValueError:
        return False
    return abs(occurred - polled_at) <= SAME_CHANGE_SECONDS


class Processor:
    """Decides the outcome of raw records; keeps only the dedup window between calls."""

    def __init__(
        self,
        topics: Topics,
        subscriptions: Callable[[], Sequence[Subscription]],
        dedup_window: float,
        schema_ids: Mapping[str, int] | None = None,
        stuck_after: Mapping[str, float] | None = None,
        measurement_interval: int = 300,
        measurement_grace: float = 60.0,
    ) -> None:
        """``schema_ids``: with a Schema Registry, the schema id of each Avro topic's subject
        (streams.registration); Avro records are then in the Confluent wire format. None: no
        registry, Avro single-object encoding. ``measurement_interval``: seconds per measurement
        interval, aligned to the clock; ``measurement_grace``: how long after its end an interval
        still takes late samples."""
        self._topics = topics
        self._dedup = DedupWindow(dedup_window)
        self._publisher = Publisher(topics, subscriptions, schema_ids)
        # Seconds per action kind before an action without an end is stuck; empty: no timers.
        self._stuck_after = dict(stuck_after or {})
        self.measurement_interval = measurement_interval
        self.measurement_grace = measurement_grace
        # The event flow of the open fleet intervals per raw partition (streams.fleet); the
        # runner loads and writes it with the state table.
        self.fleet_flow = FleetFlow(measurement_interval)

    def process(
        self,
        key: bytes | None,
        value: bytes | None,
        source: Source,
        current_state: Callable[[bytes], Mapping[str, Any] | None],
        now: float,
    ) -> Outcome:
        read = self._read(key, value, source)
        if isinstance(read, Outcome):
            return read
        if isinstance(read, dict):
            return self._meter(key, value, read, source, current_state, now)
        event, timestamp_texts = read
        vm_key = state_key(event["vim_id"], event["instance_id"])
        try:
            return self._decide(event, timestamp_texts, vm_key, current_state(vm_key), source, now)
        except codecs.CodecError as exc:
            # An event normalise accepted but a sink cannot carry (or a schema registry refusing
            # it): kept, with its reason, rather than crashing the worker.
            return self._publisher.dead(key, value, source, "encode_failed", str(exc))
        except ves.VesMappingError as exc:
            return self._publisher.dead(key, value, source, exc.reason, str(exc))

    def _read(
        self, key: bytes | None, value: bytes | None, source: Source
    ) -> Normalised | Outcome | dict[str, Any]:
        """The record's event and the ISO texts of its timestamps, or its outcome if it has none;
        a record of Ceilometer samples as it is."""
        try:
            raw = load_record(value) if value is not None else None
            if raw is None:
                raise MalformedNotification("not_an_object", "the record has no value")
            if type(raw) is dict and raw.get("event_type") in SAMPLE_EVENT_TYPES:
                return raw
            normalised = normalise_with_texts(raw)
        except MalformedNotification as exc:
            return self._publisher.dead(key, value, source, exc.reason, str(exc))
        except (ValueError, UnicodeDecodeError) as exc:
            return self._publisher.dead(key, value, source, "bad_json", f"not JSON: {exc}")
        except RecursionError:
            return self._publisher.dead(key, value, source, "bad_json", "nested too deeply")
        if normalised is None:
            return Outcome(IGNORED)
        return normalised

    def _decide(
        self,
        event: Mapping[str, Any],
        timestamp_texts: dict[str, str],
        vm_key: bytes,
        state: Mapping[str, Any] | None,
        source: Source,
        now: float,
    ) -> Outcome:
        """The event against its VM's state: a replay, a duplicate, stale, or applied."""
        message_id = event.get("message_id")
        meta = state.get(META) if state else None
        if message_id and meta and state and state.get("message_id") == message_id:
            if source_of(state) == source.as_dict():
                return self._replay(event, timestamp_texts, vm_key, meta)
            return Outcome(DUPLICATE, "same_as_state", event)
        if message_id and self._dedup.seen_before(message_id, now):
            return Outcome(DUPLICATE, "window", event)
        event_json = codecs.event_to_json_dict(event, timestamp_texts=timestamp_texts)
        if state is not None and is_twin(event_json, state):
            return Outcome(DUPLICATE, "twin", event)
        if state is not None and same_change(event_json, state):
            return Outcome(DUPLICATE, "same_change", event)
        version = version_of(event_json)
        if state is not None:
            if state.get("state") == DELETED_STATE and event_json.get("state") != DELETED_STATE:
                return self._publisher.publish(
                    event, event_json, STALE, vm_key, None, None, reason="after_delete"
                )
            if meta and is_older(version, list(meta.get("version") or []), event_json, state):
                late_state, late_clears = _late_end(event_json, state, meta)
                return self._publisher.publish(
                    event,
                    event_json,
                    STALE,
                    vm_key,
                    late_state,
                    None,
                    reason="older",
                    stuck_clears=late_clears,
                )
        return self._apply(event, event_json, version, vm_key, state, meta, source, now)

    def _replay(
        self,
        event: Mapping[str, Any],
        timestamp_texts: dict[str, str],
        vm_key: bytes,
        meta: Mapping[str, Any],
    ) -> Outcome:
        """The record that made the state, read again: encoded as first written, from the alarm
        step and the stuck clears its state keeps."""
        event_json = codecs.event_to_json_dict(event, timestamp_texts=timestamp_texts)
        step = ves.step_from_meta(meta) or ves.next_step(event_json, None, META)
        return self._publisher.publish(
            event, event_json, REPLAYED, vm_key, None, step, stuck_clears=_cleared_of(meta)
        )

    def _apply(
        self,
        event: Mapping[str, Any],
        event_json: dict[str, Any],
        version: list[str],
        vm_key: bytes,
        state: Mapping[str, Any] | None,
        meta: Mapping[str, Any] | None,
        source: Source,
        now: float,
    ) -> Outcome:
        """A new latest state: the alarm step and the action timers decided from the state given,
        whichever worker holds the partition now, and written into the new state."""
        step = ves.next_step(event_json, state, META)
        before = stuck.pending_of(meta) if meta else {}
        # From the datetime, not the ISO text: the same number, without parsing the text.
        occurred = ves.epoch_micros(event["occurred_at"])
        if before or self._stuck_after:
            started = occurred if event_json.get("phase") == "start" else 0
            timers = stuck.next_timers(event_json, before, self._stuck_after, started, _micros(now))
        else:
            # No timer set and none running: nothing to start, stop or clear.
            timers = stuck.Timers({}, ())
        clears: list[tuple[stuck.Pending, int]] = []
        if before:
            # A stuck raise took a VES sequence number of the VM's; the VM's next events follow
            # it: the stuck clears first, then the event's own faults and its stateChange.
            first = max(step.first_sequence, _after_stuck_raises(before))
            clears = [(pending, first + i) for i, pending in enumerate(timers.cleared)]
            sequence = first + len(clears) + step.fault_count
            if sequence != step.sequence:
                step = step._replace(sequence=sequence)
        bookkeeping: Bookkeeping = {"version": version, "source": source.as_dict()}
        if meta and metering.METERING in meta:
            # The VM's open measurement intervals outlive its events.
            bookkeeping["metering"] = meta[metering.METERING]
        bookkeeping.update(ves.step_to_meta(step))
        bookkeeping.update(stuck.pending_to_meta(timers.pending))
        bookkeeping.update(_cleared_to_meta(clears))
        new_state = {**event_json, META: bookkeeping}
        outcome = self._publisher.publish(
            event, event_json, APPLIED, vm_key, new_state, step, stuck_clears=clears, occurred_micros=occurred
        )
        if self.measuring():
            self._count_flow(event, step, source.partition, now)
        return outcome

    def _count_flow(self, event: Mapping[str, Any], step: ves.Step, partition: int, now: float) -> None:
        """The applied event in the fleet figures of the interval in progress."""
        received, occurred = event.get("received_at"), event.get("occurred_at")
        lag = (
            (received - occurred).total_seconds()
            if isinstance(received, datetime) and isinstance(occurred, datetime)
            else None
        )
        self.fleet_flow.event(
            partition,
            str(event["vim_id"]),
            str(event.get("status")),
            lag,
            step.transition == ves.RAISE,
            step.transition == ves.CLEAR,
            now,
        )

    def _meter(
        self,
        key: bytes | None,
        value: bytes | None,
        raw: dict[str, Any],
        source: Source,
        current_state: Callable[[bytes], Mapping[str, Any] | None],
        now: float,
    ) -> Outcome:
        """A record of Ceilometer samples (of one VM, as the listener splits them) counted into
        the VM's open intervals; samples taken after the VM's delete are not counted.

        A VM eventfed has no state for is made known by its samples, as by its first event: a
        record with the VM's ids, its tenant and host as the samples say, and the metering
        bookkeeping, but no vm_state or status (none was seen). Its first event or poll fills
        those in. Samples whose interval is already over (grace included) do not make a record:
        they are late either way, and a replay of old samples must not bring back a VM whose
        deleted state was removed."""
        if not self.measuring():
            return Outcome(IGNORED, "samples")
        vim_id = raw.get("vim_id")
        if not isinstance(vim_id, str) or not vim_id:
            return self._publisher.dead(key, value, source, "missing_vim_id", "a sample record has no vim_id")
        samples = samples_of(raw.get("event_type"), raw.get("payload"))
        if samples is None:
            detail = f"{raw.get('event_type')} carries no list of samples"
            return self._publisher.dead(key, value, source, "bad_samples", detail)
        parsed: list[metering.Sample] = []
        problems: list[str] = []
        for sample in samples:
            try:
                parsed.append(metering.parse_sample(sample))
            except metering.InvalidSample as exc:
                problems.append(str(exc))
        if not parsed:
            if problems:
                return self._publisher.dead(key, value, source, "bad_samples", "; ".join(problems[:3]))
            return Outcome(IGNORED, "samples")
        instance_id = parsed[0].instance_id
        mine = [s for s in parsed if s.instance_id == instance_id]
        counts = {metering.INVALID: len(problems), metering.OTHER_INSTANCE: len(parsed) - len(mine)}
        vm_key = state_key(vim_id, instance_id)
        state = current_state(vm_key)
        if state is None:
            current = [s for s in mine if not self._interval_over(s.at, now)]
            counts[metering.LATE] = len(mine) - len(current)
            if not current:
                return Outcome(METERED, "", counts=counts)
            state, mine = _known_from_samples(vim_id, instance_id, current, source), current
        deleted_at = None
        if state.get("state") == DELETED_STATE:
            try:
                deleted_at = ves.epoch_micros(state.get("occurred_at")) / 1e6
            except ves.VesMappingError:
                deleted_at = 0.0
        meta = state.get(META)
        meta = meta if isinstance(meta, Mapping) else {}
        added = metering.add_samples(meta.get(metering.METERING), mine, self.measurement_interval, deleted_at)
        counts.update(added.counts)
        if added.metering is None:
            return Outcome(METERED, "", counts=counts)
        new_state = {**state, META: {**meta, metering.METERING: added.metering}}
        reason = metering.NEW_VM if current_state(vm_key) is None else ""
        return Outcome(METERED, reason, state_key=vm_key, new_state=new_state, counts=counts)

    def _interval_over(self, at: float, now: float) -> bool:
        start = metering.interval_start(at, self.measurement_interval)
        return start + self.measurement_interval + self.measurement_grace <= now

    def measuring(self) -> bool:
        """Whether any measurement feed is in force (else samples are not kept)."""
        return bool(self._publisher.routes().measurement_feeds)

    def close_measurements(self, vm_key: bytes, state: Mapping[str, Any], now: float) -> Outcome | None:
        """The VM's open intervals whose end and grace period have passed, closed: a measurement
        event per interval to every measurement feed watching the VM, and the state without them
        (None: nothing is due). Written like a batch, outputs first, so an interval is emitted
        once, or again with the same eventId after a crash between the two writes."""
        meta = state.get(META)
        kept = meta.get(metering.METERING) if isinstance(meta, Mapping) else None
        if not isinstance(kept, Mapping):
            return None
        starts = metering.due(kept, now, self.measurement_interval, self.measurement_grace)
        if not starts:
            return None
        assert isinstance(meta, Mapping)
        feeds = self._publisher.routes().measurement_feeds
        vm = ves_measurement.VmIdentity(
            vim_id=str(state.get("vim_id")),
            instance_id=str(state.get("instance_id")),
            name=state.get("display_name") or None,
            tenant_id=state.get("tenant_id") or None,
            host=state.get("host") or None,
        )
        outputs: list[Output] = []
        book: Mapping[str, Any] = kept
        for start in starts:
            closed, book = metering.close(book, start, self.measurement_interval)
            scope = {
                "vim_id": vm.vim_id,
                "tenant_id": vm.tenant_id or closed.project_id,
                "host": vm.host or closed.host,
            }
            for subscription, topic, name_header in feeds:
                if not subscription.watches(scope):
                    continue
                event = ves_measurement.vm_measurement(
                    vm, closed, subscription.meters.matches, subscription.sink.ves_reporting_entity
                )
                if event is not None:
                    headers: Headers = [("vim_id", vm.vim_id.encode()), name_header, _MEASUREMENT_TYPE]
                    outputs.append(
                        Output(topic, vm.instance_id.encode(), ves_measurement.encode(event), headers)
                    )
        new_state = {**state, META: {**meta, metering.METERING: book}}
        return Outcome(MEASURED, "", outputs=outputs, state_key=vm_key, new_state=new_state)

    def fleet_outputs(self, figures: Sequence[ves_measurement.FleetFigures]) -> list[Output]:
        """The fleet measurement events of one interval, to every measurement feed whose VIMs
        include the VIM and that takes the whole VIM: a feed narrowed to tenants or hosts gets
        no figures of the others'."""
        outputs = []
        for subscription, topic, name_header in self._publisher.routes().measurement_feeds:
            if not (subscription.tenants.matches_all and subscription.hosts.matches_all):
                continue
            for figure in figures:
                if not subscription.vims.matches(figure.vim_id):
                    continue
                event = ves_measurement.fleet_measurement(figure, subscription.sink.ves_reporting_entity)
                headers: Headers = [("vim_id", figure.vim_id.encode()), name_header, _MEASUREMENT_TYPE]
                outputs.append(Output(topic, figure.vim_id.encode(), ves_measurement.encode(event), headers))
        return outputs

    def expire(self, vm_key: bytes, state: Mapping[str, Any], now: float) -> Outcome | None:
        """The stuck alarm of the VM's earliest pending action past its deadline, or None.

        One per call: the sweep comes back for the next. Its outputs are the STUCK event (events
        topic, subscriptions selecting it) and the VES fault (every ves feed watching the VM); its
        new state marks the timer fired, so it is raised once, unless a crash comes between the
        two writes (then again, with the same eventId).
        """
        meta = state.get(META)
        if not isinstance(meta, Mapping) or "pending" not in meta:
            return None
        now_micros = _micros(now)
        pending = stuck.pending_of(meta)
        due = sorted((p for p in pending.values() if p.due(now_micros)), key=lambda p: (p.deadline, p.kind))
        if not due:
            return None
        written = ves.step_from_meta(meta)
        sequence = max((written.sequence + 1) if written else 0, _after_stuck_raises(pending))
        fired = due[0].raised(sequence, str(state.get("display_name") or state.get("instance_id")))
        partition = source_partition(state)
        if partition is not None and self.measuring():
            self.fleet_flow.stuck(partition, str(state.get("vim_id")), now)
        pending[fired.kind] = fired
        new_state = {**state, META: {**meta, **stuck.pending_to_meta(pending)}}
        event_json = stuck.stuck_event(state, fired, META, _iso_micros(fired.deadline))
        try:
            event = codecs.json_dict_to_event(event_json)
            outcome = self._publisher.publish_stuck(event, event_json, fired, vm_key, new_state)
        except (codecs.CodecError, ves.VesMappingError) as exc:
            # A state record a STUCK event cannot be made of: kept, with the reason, and the
            # timer marked fired, so that the sweep does not try again forever.
            reason = exc.reason if isinstance(exc, ves.VesMappingError) else "encode_failed"
            headers = dead_letter_headers(reason, str(exc), STAGE_STUCK)
            dead = Output(self._topics.dlq, vm_key, codecs.encode_json_dict(state), headers)
            return Outcome(DEAD, reason, outputs=[dead], state_key=vm_key, new_state=new_state)
        return outcome


def _known_from_samples(
    vim_id: str, instance_id: str, samples: Sequence[metering.Sample], source: Source
) -> dict[str, Any]:
    """The first record of a VM known from its samples only: no vm_state or status is made up."""
    record: dict[str, Any] = {"vim_id": vim_id, "instance_id": instance_id}
    for name, value in (
        ("tenant_id", next((s.project_id for s in samples if s.project_id), None)),
        ("host", next((s.host for s in samples if s.host), None)),
    ):
        if value is not None:
            record[name] = value
    bookkeeping: Bookkeeping = {"source": source.as_dict()}
    record[META] = bookkeeping
    return record


def _micros(epoch_seconds: float) -> int:
    return round(epoch_seconds * 1e6)


def _iso_micros(micros: int) -> str:
    # Integer arithmetic: a float of today's epoch microseconds is not exact.
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _after_stuck_raises(pending: Mapping[str, stuck.Pending]) -> int:
    """The first VES sequence number after the stuck raises of these pending actions (0: none)."""
    return max((p.sequence + 1 for p in pending.values() if p.sequence is not None), default=0)


def _late_end(
    event_json: Mapping[str, Any], state: Mapping[str, Any], meta: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[tuple[stuck.Pending, int]]]:
    """An end or error older than the VM's state (an update overtook it) still stops its action's
    timer, if it came after the start: otherwise the action would be called stuck although it
    ended. The new state changes only the timers; (None, []) when nothing is to change."""
    kind, phase = event_json.get("status"), event_json.get("phase")
    pending = stuck.pending_of(meta)
    ended = pending.get(kind) if isinstance(kind, str) and phase in ("end", "error") else None
    if ended is None:
        return None, []
    try:
        if ves.epoch_micros(event_json.get("occurred_at")) < ended.started_at:
            return None, []
    except ves.VesMappingError:
        return None, []
    del pending[ended.kind]
    clears = []
    if ended.stuck:
        written = ves.step_from_meta(meta)
        sequence = max((written.sequence + 1) if written else 0, _after_stuck_raises({ended.kind: ended}))
        clears = [(ended, sequence)]
    kept = {k: v for k, v in meta.items() if k != "pending"}
    return {**state, META: {**kept, **stuck.pending_to_meta(pending)}}, clears


def _cleared_to_meta(clears: Sequence[tuple[stuck.Pending, int]]) -> Bookkeeping:
    """The stuck alarms a record cleared, so that the record replayed clears them the same way."""
    if not clears:
        return {}
    cleared: list[ClearedRecord] = []
    for pending, sequence in clears:
        record: ClearedRecord = {"kind": pending.kind}
        record.update(pending.as_dict())
        record["clear_sequence"] = sequence
        cleared.append(record)
    return {"stuck_cleared": cleared}


def _cleared_of(meta: Mapping[str, Any]) -> list[tuple[stuck.Pending, int]]:
    written = meta.get("stuck_cleared")
    clears = []
    for item in written if isinstance(written, list) else []:
        kind = item.get("kind") if isinstance(item, Mapping) else None
        pending = stuck.Pending.from_dict(kind, item) if isinstance(kind, str) else None
        if pending is not None and type(item.get("clear_sequence")) is int:
            clears.append((pending, item["clear_sequence"]))
    return clears


def tombstone_due(state: Mapping[str, Any], now_epoch: float, retention: float) -> bool:
    """A deleted VM's state is removed (a Kafka tombstone) once `retention` seconds have passed."""
    if state.get("state") != DELETED_STATE:
        return False
    deleted = state.get("occurred_at")
    if not isinstance(deleted, str):
        return True
    try:
        deleted_epoch = datetime.fromisoformat(deleted.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return True
    return now_epoch - deleted_epoch >= retention
