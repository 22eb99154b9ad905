"""The records one decision makes: the event on the canonical events topic, each feed's records
(through streams.routing), the dead letters. Pure: no I/O.

The processor (streams.pipeline) decides what an event is (applied, replayed, stale, ...) and
what it did to the VM's alarms and timers; this module only encodes and addresses the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schemas.dead_letter import STAGE_STREAM, dead_letter_headers
from schemas.raw import Headers
from streams import codecs, stuck, ves
from streams.outcomes import DEAD, STALE, STUCK, Outcome, Source, Topics
from streams.routing import CONTENT_TYPES, Output, Route, Router, VesRecords, compiled
from streams.subscriptions import Subscription


class Publisher:
    """Encodes and addresses the records of the processor's outcomes."""

    def __init__(
        self,
        topics: Topics,
        subscriptions: Callable[[], Sequence[Subscription]],
        schema_ids: Mapping[str, int] | None = None,
    ) -> None:
        self._topics = topics
        self._subscriptions = subscriptions
        self._schema_ids = schema_ids
        self._avro_content_type = CONTENT_TYPES["avro" if schema_ids is None else "avro-confluent"]
        self._router: Router | None = None

    def avro(self, event: Mapping[str, Any], topic: str, encoded: dict[str, bytes]) -> bytes:
        """The event's Avro record for a topic, in the framing the topic's consumers expect.

        ``encoded`` caches across the topics of one event: the body is encoded once.
        """
        if self._schema_ids is None:
            if "avro" not in encoded:
                encoded["avro"] = codecs.encode_avro(event)
            return encoded["avro"]
        schema_id = self._schema_ids.get(topic)
        if schema_id is None:
            # Registration comes before a topic is written to; should it not have, the record is
            # dead-lettered rather than written in a framing the topic's consumers do not expect.
            raise codecs.CodecError(f"no schema id registered for subject {codecs.subject_for(topic)}")
        if "avro-body" not in encoded:
            encoded["avro-body"] = codecs.avro_body(event)
        # Each topic has its own subject, and so possibly its own schema id.
        return codecs.frame_confluent(encoded["avro-body"], schema_id)

    def routes(self) -> Router:
        """The subscriptions in force, compiled; compiled again only when they change."""
        self._router = compiled(self._router, self._subscriptions(), self._avro_content_type)
        return self._router

    def event_output(
        self, event: Mapping[str, Any], headers: Headers, encoded: dict[str, bytes], stale: str | None = None
    ) -> Output:
        """The event on the canonical events topic; `stale` the reason it is stale, if it is."""
        tail: Headers = [("content-type", self._avro_content_type)]
        if stale is not None:
            tail.append(("eventfed.stale", stale.encode()))
        return Output(
            self._topics.events,
            str(event["instance_id"]).encode(),
            self.avro(event, self._topics.events, encoded),
            [*headers, *tail],
        )

    def publish(
        self,
        event: Mapping[str, Any],
        event_json: Mapping[str, Any],
        kind: str,
        vm_key: bytes,
        new_state: dict[str, Any] | None,
        step: ves.Step | None,
        reason: str = "",
        stuck_clears: Sequence[tuple[stuck.Pending, int]] = (),
        occurred_micros: int | None = None,
    ) -> Outcome:
        """``occurred_micros``: the event's occurred_at in epoch µs, when the caller has it."""
        headers = _event_headers(event, str(event["status"]), str(event["phase"]))
        # Each encoding is made once per event, whatever the number of topics that carry it.
        encoded: dict[str, bytes] = {}
        stale = kind == STALE
        outcome = Outcome(kind, reason, event, state_key=vm_key, new_state=new_state)
        outcome.outputs.append(self.event_output(event, headers, encoded, reason if stale else None))
        if stale and not stuck_clears:
            # A stale event reaches no subscriber and moves no alarm; it cleared no stuck alarm.
            return outcome
        # A stale event is no state change and moves no alarm: only the stuck clears its end made.
        moved = None if stale else step

        def ves_records(route: Route, selected: bool, watched: bool) -> list[bytes]:
            return _ves_records(
                route, selected, watched, event_json, moved, stuck_clears, encoded, occurred_micros
            )

        alarms_moved = (step is not None and step.moved) or bool(stuck_clears)
        return self._to_feeds(outcome, event_json, headers, not stale, alarms_moved, ves_records, encoded)

    def publish_stuck(
        self,
        event: Mapping[str, Any],
        event_json: Mapping[str, Any],
        fired: stuck.Pending,
        vm_key: bytes,
        new_state: dict[str, Any],
    ) -> Outcome:
        """The STUCK event on the events topic and to the feeds selecting it; its VES fault to
        every ves feed carrying faults that watches the VM (a stuck action is an alarm, no state
        change)."""
        headers = _event_headers(event, stuck.STUCK_STATUS, stuck.STUCK_PHASE)
        encoded: dict[str, bytes] = {}
        outcome = Outcome(STUCK, fired.kind, event, state_key=vm_key, new_state=new_state)
        outcome.outputs.append(self.event_output(event, headers, encoded))
        sequence = fired.sequence
        assert sequence is not None

        def ves_records(route: Route, selected: bool, watched: bool) -> list[bytes]:
            if not (watched and route.faults):
                return []
            return [ves.encode_stuck(event_json, fired, True, sequence, route.reporting_entity)]

        return self._to_feeds(outcome, event_json, headers, True, True, ves_records, encoded)

    def _to_feeds(
        self,
        outcome: Outcome,
        event_json: Mapping[str, Any],
        headers: Headers,
        selectable: bool,
        alarms_moved: bool,
        ves_records: VesRecords,
        encoded: dict[str, bytes],
    ) -> Outcome:
        """The outcome with its feeds' records added (streams.routing.Router.route)."""
        assert outcome.event is not None
        outputs, matched = self.routes().route(
            outcome.event,
            event_json,
            headers,
            selectable=selectable,
            alarms_moved=alarms_moved,
            ves_records=ves_records,
            avro=self.avro,
            encoded=encoded,
        )
        outcome.outputs.extend(outputs)
        outcome.matched.extend(matched)
        return outcome

    def dead(
        self, key: bytes | None, value: bytes | None, source: Source, reason: str, detail: str
    ) -> Outcome:
        headers = dead_letter_headers(
            reason, detail, STAGE_STREAM, source=(source.topic, source.partition, source.offset, source.index)
        )
        return Outcome(DEAD, reason, outputs=[Output(self._topics.dlq, key, value, headers)])


def _event_headers(event: Mapping[str, Any], status: str, phase: str) -> Headers:
    return [
        ("vim_id", str(event["vim_id"]).encode()),
        ("status", status.encode()),
        ("phase", phase.encode()),
        ("message_id", str(event.get("message_id") or "").encode()),
    ]


def _ves_records(
    route: Route,
    selected: bool,
    watched: bool,
    event_json: Mapping[str, Any],
    step: ves.Step | None,
    stuck_clears: Sequence[tuple[stuck.Pending, int]],
    encoded: dict[str, bytes],
    occurred_micros: int | None,
) -> list[bytes]:
    """A ves feed's records for one event, in sequence order: the stuck alarms it cleared, the
    faults it raised or cleared (the feed watching the VM, and carrying faults), then its
    stateChange (the feed selecting the event, and carrying state changes). ``step`` None: a stale
    event, which moves no alarm and is no state change."""
    values: list[bytes] = []
    if watched and route.faults:
        values.extend(
            ves.encode_stuck(event_json, pending, False, sequence, route.reporting_entity)
            for pending, sequence in stuck_clears
        )
        if step is not None and step.moved:
            values.extend(
                ves.encode_faults(
                    event_json,
                    step,
                    route.failure_rule,
                    route.reporting_entity,
                    occurred_micros=occurred_micros,
                )
            )
    if selected and route.state_changes and step is not None:
        key = f"stateChange:{route.reporting_entity or ''}"
        if key not in encoded:
            encoded[key] = ves.encode_state_change(
                event_json, step, route.reporting_entity, occurred_micros=occurred_micros
            )
        values.append(encoded[key])
    return values
