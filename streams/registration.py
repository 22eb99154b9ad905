"""The event schema's subjects in a Schema Registry: one per topic that carries Avro.

With a registry configured, every record eventfed writes in Avro (the events topic, and each
subscription topic of format ``avro``) is in the Confluent wire format, framed with the id the
registry gave the event schema under that topic's subject, ``<topic>-value`` (Confluent's
TopicNameStrategy, what confluent-kafka's, Java's and kcat's deserializers assume). The schema is
registered once per topic: at start-up for the topics in force, and for a new subscription's topic
before that subscription is put in force. The processor then frames records with the ids held in
:class:`SchemaIds`, without waiting on the registry; a topic without an id gets no Avro record at
all (its event is dead-lettered with the reason), never single-object bytes by mistake.

JSON and VES feeds are not registered: their records are plain JSON for DMaaP and ONAP consumers,
which read no Confluent framing, and a subject nobody's records point to would only mislead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from bridge.retry import Backoff
from streams.codecs import ConfluentCodec, RegistrationError, subject_for
from streams.subscriptions import Subscription

LOG = logging.getLogger(__name__)

# Between two rounds of registration while the registry refuses or cannot be reached, and
# between two attempts to put a changed subscriptions file in force (streams.worker_timers).
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0


def registry_backoff() -> Backoff:
    """The schedule of those retries. Without jitter: one worker retries its own start-up or
    reload, not a crowd of clients in step, and the log's "retrying in" is then the exact wait."""
    return Backoff(BACKOFF_INITIAL, BACKOFF_MAX, jitter=0.0)


def avro_topics(events_topic: str, subscriptions: Iterable[Subscription]) -> list[str]:
    """The topics whose records are Avro: the events topic and every ``avro`` subscription's."""
    topics = {s.sink.topic for s in subscriptions if s.sink.format == "avro"}
    return [events_topic, *sorted(topics - {events_topic})]


class SchemaIds(Mapping[str, int]):
    """Schema id by topic, for the topics registered so far.

    Written by the registration (from a worker thread), read by the processor: a dict's single
    item assignment is atomic, and an id, once known, never changes for the life of the process.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def __getitem__(self, topic: str) -> int:
        return self._ids[topic]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, topic: str, schema_id: int) -> None:
        self._ids[topic] = schema_id


class Registrar:
    """Registers the event schema under the subject of each topic not registered yet."""

    def __init__(self, codec: ConfluentCodec, ids: SchemaIds | None = None) -> None:
        self.codec = codec
        self.ids = ids if ids is not None else SchemaIds()

    def register(self, topics: Iterable[str]) -> list[str]:
        """One round: every topic without an id is registered; the topics newly registered.

        RegistrationError names the first subject the registry did not take; the topics
        registered before it keep their ids.
        """
        added = []
        for topic in topics:
            if topic in self.ids:
                continue
            schema_id = self.codec.register(topic)
            self.ids.add(topic, schema_id)
            added.append(topic)
            LOG.info("schema registered: subject %s, schema id %s", subject_for(topic), schema_id)
        return added

    def register_within(
        self,
        topics: Iterable[str],
        timeout: float,
        *,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> list[str]:
        """Rounds of :meth:`register` with exponential backoff until every topic has an id or
        ``timeout`` seconds have passed; then the last RegistrationError is raised."""
        wanted = list(topics)
        deadline = clock() + timeout
        backoff = registry_backoff()
        added: list[str] = []
        while True:
            try:
                added += self.register(wanted)
                return added
            except RegistrationError as exc:
                left = deadline - clock()
                if left <= 0:
                    raise
                delay = min(backoff.next_delay(), left)
                LOG.warning("%s; retrying in %.1fs", exc, delay)
                if on_retry is not None:
                    on_retry(str(exc))
                sleep(delay)
