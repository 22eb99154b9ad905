"""The outcomes of the stream stage: what became of one raw record (or a timer), with the records it
causes. Pure data.

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
stuck       not a record: an action of the VM got no end in time (streams.stuck); the sweep's
            STUCK event and VES fault, and the state marking the timer fired
metered     a record of Ceilometer samples: counted into the VM's open intervals (streams.metering);
            `counts` says what became of each sample
measured    not a record: the sweep closed intervals of a VM; their measurement events, and the
            state without them
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.state import SourceRecord
from streams.routing import Output

APPLIED = "applied"
REPLAYED = "replayed"
STALE = "stale"
DUPLICATE = "duplicate"
IGNORED = "ignored"
DEAD = "dead"
STUCK = "stuck"
METERED = "metered"
MEASURED = "measured"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a notification came from: its raw record, and its line in a packed record."""

    topic: str
    partition: int
    offset: int
    index: int = 0

    def as_dict(self) -> SourceRecord:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "index": self.index}


@dataclass(slots=True)
class Outcome:
    kind: str
    reason: str = ""
    event: Mapping[str, Any] | None = None
    outputs: list[Output] = field(default_factory=list)
    state_key: bytes | None = None
    new_state: dict[str, Any] | None = None
    matched: list[str] = field(default_factory=list)
    # metered: samples by what became of them (streams.metering's names).
    counts: dict[str, int] | None = None


@dataclass(frozen=True)
class Topics:
    events: str
    dlq: str
