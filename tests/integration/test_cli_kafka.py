"""The interactive commands against the real Kafka: `eventfed topics` and `eventfed consume`."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.kafka import delete_topics_containing
from tests.support.processes import EVENTFED, clean_env

pytestmark = pytest.mark.integration


def _topic_env(unique: str, bootstrap: str, **settings: str) -> dict[str, str]:
    env = clean_env(
        EVENTFED_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        EVENTFED_RAW_TOPIC=f"test.raw.{unique}",
        EVENTFED_EVENTS_TOPIC=f"test.events.{unique}",
        EVENTFED_STATE_TOPIC=f"test.state.{unique}",
        EVENTFED_DLQ_TOPIC=f"test.dlq.{unique}",
        EVENTFED_REPLICATION_FACTOR="1",
        **settings,
    )
    # As a person runs it: no log format chosen.
    env.pop("EVENTFED_LOG_FORMAT", None)
    return env


def _run(args: list[str], env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([EVENTFED, *args], env=env, capture_output=True, input=stdin, timeout=90)


def test_topics_prints_kafka_s_partition_counts_and_fails_on_a_disagreement(
    kafka_bootstrap, kafka_topic_factory, unique
):
    kafka_topic_factory(f"test.raw.{unique}", partitions=2)
    env = _topic_env(unique, kafka_bootstrap, EVENTFED_PARTITIONS="3")
    try:
        result = _run(["topics"], env)
        out, err = result.stdout.decode(), result.stderr.decode()
        assert result.returncode == 1, err
        lines = {line.split("\t")[0]: line.split("\t")[1:] for line in out.splitlines()}
        assert lines[f"test.raw.{unique}"] == ["2 partitions", "exists, the settings say 3"]
        assert lines[f"test.events.{unique}"] == ["3 partitions", "created"]
        assert lines[f"test.dlq.{unique}"] == ["1 partitions", "created"]
        errors = [line for line in err.splitlines() if line.strip()]
        assert len(errors) == 1, err
        assert errors[0].startswith(f"eventfed topics: topic test.raw.{unique} has 2 partitions in Kafka")
        assert "EVENTFED_PARTITIONS=2" in errors[0]

        # Settings that agree: exit 0, nothing on stderr.
        env["EVENTFED_PARTITIONS"] = "2"
        for name in ("events", "state"):
            delete_topics_containing(kafka_bootstrap, f"test.{name}.{unique}")
        agreed = _run(["topics"], env)
        assert agreed.returncode == 0, agreed.stderr.decode()
        assert agreed.stderr.decode().strip() == ""
        assert f"test.raw.{unique}\t2 partitions\texists" in agreed.stdout.decode()
    finally:
        delete_topics_containing(kafka_bootstrap, unique)
