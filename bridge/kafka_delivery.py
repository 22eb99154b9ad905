"""Produce a batch with librdkafka and wait until Kafka has acknowledged, or refused, every record.

The listener and the stream worker both hand a batch on only once all of it is in Kafka; this is
the one place that knows how to tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import KafkaException

from bridge.raw import Headers


class ProduceRequest(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    partition: int | None = None  # None: the producer's partitioner decides from the key


@dataclass(frozen=True)
class Delivery:
    failed: list[int]  # indices of the records refused or left unconfirmed, in batch order
    first_error: str


def produce_and_confirm(
    producer: Any, requests: Sequence[ProduceRequest], delivery_timeout: float
) -> Delivery:
    """Produce every request, flush, and say which ones Kafka did not acknowledge.

    `delivery_timeout` is the producer's message.timeout.ms in seconds: every delivery report
    arrives within it, so the flush returns with each record either acknowledged or refused.
    """
    reported: set[int] = set()
    refused: set[int] = set()
    errors: list[str] = []

    def reporter(index: int) -> Any:
        def on_delivery(error: Any, _message: Any) -> None:
            reported.add(index)
            if error is not None:
                refused.add(index)
                errors.append(str(error))

        return on_delivery

    for index, request in enumerate(requests):
        extra = {} if request.partition is None else {"partition": request.partition}
        while True:
            try:
                producer.produce(
                    request.topic,
                    key=request.key,
                    value=request.value,
                    headers=request.headers or None,
                    on_delivery=reporter(index),
                    **extra,
                )
                break
            except BufferError:
                # The local queue is full: serve delivery reports to make room, then retry.
                producer.poll(0.1)
            except KafkaException as exc:
                # Refused before it was queued (a partition that does not exist, a record over
                # the client's size limit): it counts as failed, like a refused delivery.
                reported.add(index)
                refused.add(index)
                errors.append(str(exc.args[0] if exc.args else exc))
                break
    producer.flush(delivery_timeout + 5)
    # A record with no report counts as failed: a later success makes a duplicate, never a loss.
    unconfirmed = set(range(len(requests))) - reported
    if unconfirmed and not errors:
        errors.append(f"{len(unconfirmed)} records unconfirmed after flush")
    return Delivery(sorted(refused | unconfirmed), errors[0] if errors else "")
