"""Produce a batch with librdkafka and wait until Kafka has acknowledged, or refused, every record.

The listener and the stream worker both hand a batch on only once all of it is in Kafka; this is
the one place that knows how to tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from confluent_kafka import KafkaException

from schemas.raw import Headers


class ProduceRequest(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    partition: int | None = None  # None: the producer's partitioner decides from the key


class Producible(Protocol):
    """A record to produce: a ProduceRequest, or anything with the same fields."""

    @property
    def topic(self) -> str: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers | None: ...
    @property
    def partition(self) -> int | None: ...


@dataclass(frozen=True)
class Delivery:
    failed: list[int]  # indices of the records refused or left unconfirmed, in batch order
    first_error: str


def produce_and_confirm(producer: Any, requests: Sequence[Producible], delivery_timeout: float) -> Delivery:
    """Produce every request, flush, and say which ones Kafka did not acknowledge.

    `delivery_timeout` is the producer's message.timeout.ms in seconds: every delivery report
    arrives within it, so the flush returns with each record either acknowledged or refused.

    A flush that leaves nothing in the producer's queue means every record was either
    acknowledged or refused, and a refusal always comes with a delivery report; so this works
    the same with `delivery.report.only.error`, which spares a Python callback per record.
    The one callback, shared by the whole batch, knows a refused record by its content (a
    delivery report carries no reference to the request): records with the same topic, key and
    value as a refused one all count as failed, which at worst writes one of them twice.
    """
    refused: set[int] = set()
    errors: list[str] = []
    reported_failures: set[tuple[str | None, bytes | None, bytes | None]] = set()

    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            reported_failures.add((message.topic(), message.key(), message.value()))
            errors.append(str(error))

    produce = producer.produce
    for index, request in enumerate(requests):
        # librdkafka's "unassigned" partition (-1): its partitioner decides from the key.
        partition = -1 if request.partition is None else request.partition
        while True:
            try:
                produce(
                    request.topic,
                    key=request.key,
                    value=request.value,
                    headers=request.headers or None,
                    on_delivery=on_delivery,
                    partition=partition,
                )
                break
            except BufferError:
                # The local queue is full: serve delivery reports to make room, then retry.
                producer.poll(0.1)
            except KafkaException as exc:
                # Refused before it was queued (a partition that does not exist, a record over
                # the client's size limit): it counts as failed, like a refused delivery.
                refused.add(index)
                errors.append(str(exc.args[0] if exc.args else exc))
                break
    left = producer.flush(delivery_timeout + 5)
    if left:
        # Some records are neither acknowledged nor refused, and nothing tells which: all but
        # the refused count as failed. A later success makes a duplicate, never a loss.
        errors.append(f"{left} records unconfirmed after flush")
        return Delivery(list(range(len(requests))), errors[0])
    if reported_failures:
        refused.update(
            index
            for index, request in enumerate(requests)
            if (request.topic, request.key, request.value) in reported_failures
        )
    return Delivery(sorted(refused), errors[0] if errors else "")
