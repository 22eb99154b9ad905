"""Which subscription feeds one event's records reach, and in what encoding. Pure: no I/O.

One router serves every output a worker makes: the records of an applied, replayed or stale
event, and a stuck action's alarm. Per subscription it decides, from the compiled matcher, whether
the feed selects the event (`matches`: its events, phases, states and scope) or only watches its VM
(`watches`: vims, tenants and hosts; what a `ves` feed needs to pass an alarm's raise or clear on),
and asks the caller for a `ves` feed's records, since those depend on what the event did to the
VM's alarms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from schemas.raw import Headers
from streams import codecs, ves
from streams.subscriptions import Matcher, Subscription

# The `content-type` header of each output, by format. An Avro record says which framing it has:
# single-object (C3 01 + fingerprint) without a registry, Confluent's (00 + schema id) with one.
CONTENT_TYPES = {
    "json": b"application/json",
    "avro": b"application/vnd.apache.avro+binary; encoding=single-object",
    "avro-confluent": b"application/vnd.apache.avro+binary; encoding=confluent",
    "ves": b"application/json; profile=ves-7.2.1",
    "ves-measurement": b"application/json; profile=ves-7.2.1",
}


class Output(NamedTuple):
    """One record to write. A named tuple rather than a frozen dataclass: as immutable, and made
    in about a third of the time (two or three are made per notification)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """A subscription, with what its outputs carry."""

    name: str
    topic: str
    fmt: str
    encoding: str
    reporting_entity: str | None
    is_ves: bool
    # The headers after the event's own: the subscription's name and the content type.
    tail: tuple[tuple[str, bytes], ...]
    # ves feeds: the domains carried, and the rule that makes a VM failure.
    faults: bool = False
    state_changes: bool = False
    failure_rule: ves.FailureRule = ves.DEFAULT_RULE


def _route(subscription: Subscription, avro_content_type: bytes) -> Route:
    sink = subscription.sink
    is_ves = sink.format == "ves"
    return Route(
        subscription.name,
        sink.topic,
        sink.format,
        sink.encoding,
        sink.ves_reporting_entity,
        is_ves,
        (
            ("subscription", subscription.name.encode()),
            ("content-type", avro_content_type if sink.format == "avro" else CONTENT_TYPES[sink.format]),
        ),
        is_ves and ves.FAULT_DOMAIN in sink.ves_domains,
        is_ves and ves.STATE_CHANGE_DOMAIN in sink.ves_domains,
        ves.FAILURE_RULES[sink.ves_failure_statuses],
    )


# A ves feed's records for an event: (route, whether it selects the event, whether it watches the
# event's VM) -> the encoded records, in sequence order.
VesRecords = Callable[[Route, bool, bool], list[bytes]]
# The Avro record of an event for a topic, with a cache of encodings shared across its topics.
AvroOf = Callable[[Mapping[str, Any], str, dict[str, bytes]], bytes]


class Router:
    """The subscriptions in force compiled once for every event: their matcher, and per
    subscription the names, topic, encoding and headers its outputs need."""

    def __init__(self, subscriptions: tuple[Subscription, ...], avro_content_type: bytes) -> None:
        self.subscriptions = subscriptions
        # Measurement feeds take no events: they are written by the interval sweep.
        for_events = tuple(s for s in subscriptions if not s.sink.is_measurement)
        self.matcher = Matcher(for_events)
        self.routes = tuple(_route(s, avro_content_type) for s in for_events)
        self.any_ves = any(route.is_ves for route in self.routes)
        self.measurement_feeds = tuple(
            (s, s.sink.topic, ("subscription", s.name.encode()))
            for s in subscriptions
            if s.sink.is_measurement
        )

    def route(
        self,
        event: Mapping[str, Any],
        event_json: Mapping[str, Any],
        headers: Headers,
        *,
        selectable: bool,
        alarms_moved: bool,
        ves_records: VesRecords,
        avro: AvroOf,
        encoded: dict[str, bytes],
    ) -> tuple[list[Output], list[str]]:
        """The feeds' records of one event, and the names of the subscriptions it reached.

        selectable: whether the event may reach a feed that selects it (a stale event may not);
        alarms_moved: whether it raised or cleared an alarm, which every ves feed watching the VM
        gets whatever its event and phase filters (a clear filtered out would leave the alarm
        standing in ONAP forever). encoded: the encodings made so far, shared with the caller.
        """
        instance_key = str(event["instance_id"]).encode()
        matches = self.matcher.matches(event)
        watches = self.matcher.watches(event) if self.any_ves and alarms_moved else None
        outputs: list[Output] = []
        matched: list[str] = []
        for route, route_matches, route_watches in zip(
            self.routes, matches, watches or repeat(False), strict=False
        ):
            if route.is_ves:
                values = ves_records(route, route_matches and selectable, route_watches)
            elif not selectable or not route_matches:
                continue
            elif route.fmt == "avro":
                values = [avro(event, route.topic, encoded)]
            else:
                if route.encoding not in encoded:
                    encoded[route.encoding] = codecs.encode_json_dict(event_json)
                values = [encoded[route.encoding]]
            if not values:
                continue
            if selectable:
                # A stale event matched nobody: it only carries the stuck clears its end made.
                matched.append(route.name)
            outputs.extend(
                Output(route.topic, instance_key, value, [*headers, *route.tail]) for value in values
            )
        return outputs, matched


def compiled(
    current: Router | None, subscriptions: Sequence[Subscription], avro_content_type: bytes
) -> Router:
    """The router for the subscriptions in force: `current` if they have not changed."""
    in_force = tuple(subscriptions)
    # Tuples compare their items by identity first: the same subscriptions cost a few checks.
    if current is None or current.subscriptions != in_force:
        return Router(in_force, avro_content_type)
    return current
