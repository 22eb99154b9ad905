"""librdkafka's local error codes, under names that do not start with an underscore.

librdkafka reports what happens in the client itself (a broken connection, a failed TLS
handshake, the end of a partition) with negative error codes; confluent-kafka exposes them as
`KafkaError` attributes with a leading underscore (`RD_KAFKA_RESP_ERR__TRANSPORT` is
`KafkaError._TRANSPORT`). They are part of its documented API, but read as private to a linter,
so eventfed reaches them here only. Checked against confluent-kafka 2.16.1; a unit test fails if
an upgrade drops one.
"""

from __future__ import annotations

from confluent_kafka import KafkaError

CHECKED_VERSIONS = {"confluent-kafka": "2.16.1"}

# A connection to a broker failed or was closed.
TRANSPORT: int = KafkaError._TRANSPORT
# The TLS layer failed (librdkafka reports a refused handshake as this or as TRANSPORT).
SSL: int = KafkaError._SSL
# No broker of the cluster answers.
ALL_BROKERS_DOWN: int = KafkaError._ALL_BROKERS_DOWN
# A consumer reached the end of a partition (with enable.partition.eof).
PARTITION_EOF: int = KafkaError._PARTITION_EOF
# A request got no answer in time.
TIMED_OUT: int = KafkaError._TIMED_OUT
# A transactional or idempotent producer was fenced by a newer one.
FENCED: int = KafkaError._FENCED
# A record was produced to a partition the topic does not have.
UNKNOWN_PARTITION: int = KafkaError._UNKNOWN_PARTITION
