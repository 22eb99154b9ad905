"""What the stream stage does with one raw record. Pure: no Kafka, no Faust, no clock.

For each record the processor decides an explicit outcome and the records it causes:

applied     a new latest state for the VM: canonical event, matching subscriptions, new state
replayed    the record that produced the current state, read again after a restart: its outputs
            are written again (at-least-once), the state stays
stale       older than the state already applied, or about a VM deleted before: it goes to the
            canonical events topic (it did happen) but neither moves the state backwards nor
            reaches subscribers, who act on the latest state
duplicate   the same notification seen again (RabbitMQ requeue, listener restart), the twin of
            the one that made the state (Nova's notification_format=both sends every event as a
            legacy and a versioned notification, with different message ids), or a polled
            snapshot and a notification of the same change (see `same_change`): dropped
ignored     not an instance status event (aggregate.*, compute.metrics.update, ...)
dead        malformed: to the dead-letter topic with the reason and where it came from
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.raw import (
    HEADER_ERROR,
    HEADER_REASON,
    HEADER_SOURCE_INDEX,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    HEADER_STAGE,
    Headers,
)
from bridge.state import DELETED_STATE, META, source_of, state_key
from streams import codecs, ves
from streams.catalogue import FORMAT_LEGACY, FORMAT_POLL, FORMAT_VERSIONED, twin_action
from streams.normalise import MalformedNotification, load_record, normalise
from streams.subscriptions import Sink, Subscription

APPLIED = "applied"
REPLAYED = "replayed"
STALE = "stale"
DUPLICATE = "duplicate"
IGNORED = "ignored"
DEAD = "dead"

CONTENT_TYPES = {
    "json": b"application/json",
    "avro": b"application/vnd.apache.avro+binary; encoding=single-object",
    "ves": b"application/json; profile=ves-7.2.1",
}


@dataclass(frozen=True, slots=True)
class Source:
    """Where a notification came from: its raw record, and its line in a packed record."""

    topic: str
    partition: int
    offset: int
    index: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "index": self.index}


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None


@dataclass(slots=True)
class Outcome:
    kind: str
    reason: str = ""
    event: Mapping[str, Any] | None = None
    outputs: list[Output] = field(default_factory=list)
    state_key: bytes | None = None
    new_state: dict[str, Any] | None = None
    matched: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Topics:
    events: str
    dlq: str


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


# Twins are sent one right after the other; further apart, two alike events are two events.
TWIN_SECONDS = 5.0


def is_twin(event_json: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    """Whether the event is the other-format twin of the one that made the state."""
    if {event_json.get("format"), state.get("format")} != {FORMAT_LEGACY, FORMAT_VERSIONED}:
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
        confluent: codecs.ConfluentCodec | None = None,
    ) -> None:
        self._topics = topics
        self._subscriptions = subscriptions
        self._dedup = DedupWindow(dedup_window)
        self._confluent = confluent

    def process(
        self,
        key: bytes | None,
        value: bytes | None,
        source: Source,
        current_state: Callable[[bytes], Mapping[str, Any] | None],
        now: float,
    ) -> Outcome:
        try:
            stamps: dict[str, str] = {}
            raw = load_record(value) if value is not None else None
            event = normalise(raw, stamps=stamps) if raw is not None else None
            if raw is None:
                raise MalformedNotification("not_an_object", "the record has no value")
        except MalformedNotification as exc:
            return self._dead(key, value, source, exc.reason, str(exc))
        except (ValueError, UnicodeDecodeError) as exc:
            return self._dead(key, value, source, "bad_json", f"not JSON: {exc}")
        except RecursionError:
            return self._dead(key, value, source, "bad_json", "nested too deeply")
        if event is None:
            return Outcome(IGNORED)

        skey = state_key(event["vim_id"], event["instance_id"])
        state = current_state(skey)
        message_id = event.get("message_id")
        meta = state.get(META) if state else None
        if message_id and meta and state and state.get("message_id") == message_id:
            if source_of(state) == source.as_dict():
                event_json = codecs.event_to_json_dict(event, stamps=stamps)
                # Encoded as first written: the alarm step this record made is in its state.
                step = ves.step_from_meta(meta) or ves.next_step(event_json, None, META)
                try:
                    return self._publish(event, event_json, REPLAYED, skey, None, step)
                except codecs.CodecError as exc:
                    return self._dead(key, value, source, "encode_failed", str(exc))
                except ves.VesMappingError as exc:
                    return self._dead(key, value, source, exc.reason, str(exc))
            return Outcome(DUPLICATE, "same_as_state", event)
        if message_id and self._dedup.seen_before(message_id, now):
            return Outcome(DUPLICATE, "window", event)

        event_json = codecs.event_to_json_dict(event, stamps=stamps)
        if state is not None and is_twin(event_json, state):
            return Outcome(DUPLICATE, "twin", event)
        if state is not None and same_change(event_json, state):
            return Outcome(DUPLICATE, "same_change", event)
        version = version_of(event_json)
        try:
            if state is not None:
                if state.get("state") == DELETED_STATE and event_json.get("state") != DELETED_STATE:
                    return self._publish(event, event_json, STALE, skey, None, None, reason="after_delete")
                if meta and version < list(meta.get("version") or []):
                    return self._publish(event, event_json, STALE, skey, None, None, reason="older")
            # The VM's alarm lives in its state record, so it is decided here from the state
            # given, whichever worker holds the partition now.
            step = ves.next_step(event_json, state, META)
            new_state = {
                **event_json,
                META: {"version": version, "source": source.as_dict(), **ves.step_to_meta(step)},
            }
            return self._publish(event, event_json, APPLIED, skey, new_state, step)
        except codecs.CodecError as exc:
            # An event normalise accepted but a sink cannot carry (or a schema registry refusing
            # it): kept, with its reason, rather than crashing the worker.
            return self._dead(key, value, source, "encode_failed", str(exc))
        except ves.VesMappingError as exc:
            return self._dead(key, value, source, exc.reason, str(exc))

    def _publish(
        self,
        event: Mapping[str, Any],
        event_json: Mapping[str, Any],
        kind: str,
        skey: bytes,
        new_state: dict[str, Any] | None,
        step: ves.Step | None,
        reason: str = "",
    ) -> Outcome:
        instance_key = str(event["instance_id"]).encode()
        headers: Headers = [
            ("vim_id", str(event["vim_id"]).encode()),
            ("status", str(event["status"]).encode()),
            ("phase", str(event["phase"]).encode()),
            ("message_id", str(event.get("message_id") or "").encode()),
        ]
        encoded: dict[str, bytes] = {}

        def encoded_as(sink: Sink | None) -> bytes:
            key = sink.encoding if sink is not None else "avro"
            if key not in encoded:
                fmt = sink.format if sink is not None else "avro"
                if fmt == "json":
                    encoded[key] = codecs.encode_json_dict(event_json)
                elif fmt == "ves":
                    assert step is not None and sink is not None, "stale events reach no subscription"
                    encoded[key] = ves.encode(event_json, step, sink.ves_reporting_entity)
                elif self._confluent is not None:
                    encoded[key] = self._confluent.encode(event)
                else:
                    encoded[key] = codecs.encode_avro(event)
            return encoded[key]

        outcome = Outcome(kind, reason, event, state_key=skey, new_state=new_state)
        stale_header: Headers = [("eventfed.stale", reason.encode())] if kind == STALE else []
        outcome.outputs.append(
            Output(
                self._topics.events,
                instance_key,
                encoded_as(None),
                [*headers, ("content-type", CONTENT_TYPES["avro"]), *stale_header],
            )
        )
        if kind == STALE:
            return outcome
        alarm_moved = step is not None and step.transition != ves.NONE
        for subscription in self._subscriptions():
            # A raise or clear reaches every `ves` feed watching the VM, whatever its event and
            # phase filters: a clear filtered out would leave the alarm standing in ONAP forever.
            if subscription.matches(event) or (
                alarm_moved and subscription.sink.format == "ves" and subscription.watches(event)
            ):
                fmt = subscription.sink.format
                outcome.matched.append(subscription.name)
                outcome.outputs.append(
                    Output(
                        subscription.sink.topic,
                        instance_key,
                        encoded_as(subscription.sink),
                        [
                            *headers,
                            ("subscription", subscription.name.encode()),
                            ("content-type", CONTENT_TYPES[fmt]),
                        ],
                    )
                )
        return outcome

    def _dead(
        self, key: bytes | None, value: bytes | None, source: Source, reason: str, detail: str
    ) -> Outcome:
        headers: Headers = [
            (HEADER_REASON, reason.encode()),
            (HEADER_ERROR, detail[:500].encode()),
            (HEADER_STAGE, b"stream"),
            (HEADER_SOURCE_TOPIC, source.topic.encode()),
            (HEADER_SOURCE_PARTITION, str(source.partition).encode()),
            (HEADER_SOURCE_OFFSET, str(source.offset).encode()),
            (HEADER_SOURCE_INDEX, str(source.index).encode()),
        ]
        return Outcome(DEAD, reason, outputs=[Output(self._topics.dlq, key, value, headers)])


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
