"""The dead-letter record: the record set aside, unchanged (or its head, when it was too large),
with headers that say why, at which stage, and where it came from. Every stage writes these
headers through `dead_letter_headers`, so a reader of the dead-letter topic finds the same names
whichever stage refused the record."""

from __future__ import annotations

from typing import Final

# A Kafka record's headers as eventfed writes them.
Headers = list[tuple[str, str | bytes | None]]

HEADER_REASON: Final = "eventfed.reason"
HEADER_ERROR: Final = "eventfed.error"
HEADER_STAGE: Final = "eventfed.stage"
HEADER_SOURCE_TOPIC: Final = "eventfed.source.topic"
HEADER_SOURCE_PARTITION: Final = "eventfed.source.partition"
HEADER_SOURCE_OFFSET: Final = "eventfed.source.offset"
HEADER_SOURCE_INDEX: Final = "eventfed.source.index"
HEADER_ORIGINAL_SIZE: Final = "eventfed.original.size"

STAGE_LISTEN: Final = "listen"
STAGE_STREAM: Final = "stream"
STAGE_STUCK: Final = "stuck"
# Enough of an error message to diagnose; the rest of a long one (a whole payload) is noise.
MAX_DETAIL: Final = 500


def dead_letter_headers(
    reason: str,
    detail: str,
    stage: str,
    *,
    source: tuple[str, int, int, int] | None = None,
    original_size: int | None = None,
) -> Headers:
    """The headers of a dead letter: its stable `reason` (also a metric label), the error text,
    the stage that refused it and, from the stream stage, the raw record it came from
    (topic, partition, offset and its line in a packed record)."""
    headers: Headers = [
        (HEADER_REASON, reason.encode()),
        (HEADER_ERROR, detail[:MAX_DETAIL].encode()),
        (HEADER_STAGE, stage.encode()),
    ]
    if source is not None:
        topic, partition, offset, index = source
        headers += [
            (HEADER_SOURCE_TOPIC, topic.encode()),
            (HEADER_SOURCE_PARTITION, str(partition).encode()),
            (HEADER_SOURCE_OFFSET, str(offset).encode()),
            (HEADER_SOURCE_INDEX, str(index).encode()),
        ]
    if original_size is not None:
        headers.append((HEADER_ORIGINAL_SIZE, str(original_size).encode()))
    return headers
