"""librdkafka's local error codes, named once in bridge.kafka_error_internals."""

from __future__ import annotations

from importlib import metadata

from confluent_kafka import KafkaError

from bridge import kafka_error_internals


def test_the_installed_version_is_the_one_checked():
    # An upgrade must re-check the codes and then update CHECKED_VERSIONS.
    installed = {name: metadata.version(name) for name in kafka_error_internals.CHECKED_VERSIONS}
    assert installed == kafka_error_internals.CHECKED_VERSIONS


def test_each_name_is_librdkafkas_code_of_that_name():
    codes = {
        name: value
        for name, value in vars(kafka_error_internals).items()
        if name.isupper() and isinstance(value, int)
    }
    assert len(codes) == 7
    for name, code in codes.items():
        assert KafkaError(code).name() == f"_{name}"
