"""Registering the event schema under each Avro topic's subject, with confluent-kafka's in-memory
registry (``mock://``) and a registry that refuses for a while."""

from __future__ import annotations

import json
import uuid

import pytest

from streams import codecs
from streams.codecs import RegistrationError
from streams.registration import BACKOFF_MAX, Registrar, SchemaIds, avro_topics
from streams.subscriptions import load_subscriptions

SUBS = load_subscriptions(
    """
subscriptions:
  - name: a
    sink: {type: kafka, topic: feed.a, format: avro}
  - name: a-again
    match: {events: [DELETE]}
    sink: {type: kafka, topic: feed.a, format: avro}
  - name: j
    sink: {type: kafka, topic: feed.j, format: json}
  - name: v
    sink: {type: kafka, topic: feed.v, format: ves}
  - name: also-events
    sink: {type: kafka, topic: events, format: avro}
"""
)


def test_avro_topics_are_the_events_topic_and_the_avro_feeds_once_each() -> None:
    assert avro_topics("events", SUBS) == ["events", "feed.a"]
    assert avro_topics("events", []) == ["events"]


def test_every_avro_topic_gets_its_subject_once() -> None:
    codec = codecs.ConfluentCodec(f"mock://{uuid.uuid4().hex}")
    registrar = Registrar(codec)
    assert registrar.register(avro_topics("events", SUBS)) == ["events", "feed.a"]
    assert sorted(codec.client.get_subjects()) == ["events-value", "feed.a-value"]
    for topic in ("events", "feed.a"):
        latest = codec.client.get_latest_version(f"{topic}-value")
        assert registrar.ids[topic] == latest.schema_id
        assert json.loads(latest.schema.schema_str) == codecs.SCHEMA
    # Already registered: nothing new, the same ids.
    assert registrar.register(["events", "feed.a"]) == []
    assert registrar.register(["events", "feed.b"]) == ["feed.b"]
    assert set(registrar.ids) == {"events", "feed.a", "feed.b"}


class FlakyCodec:
    """Refuses the first `failures` registrations, as a registry that is starting would."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    def register(self, topic: str) -> int:
        self.calls.append(topic)
        if self.failures:
            self.failures -= 1
            raise RegistrationError(f"schema registry http://r: cannot register subject {topic}-value: down")
        return 40 + len(self.calls)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_registration_is_retried_with_backoff_until_the_registry_answers() -> None:
    codec = FlakyCodec(failures=4)
    clock = FakeClock()
    retries: list[str] = []
    registrar = Registrar(codec)  # type: ignore[arg-type]
    added = registrar.register_within(
        ["events", "feed.a"], 60, on_retry=retries.append, sleep=clock.sleep, clock=clock
    )
    assert added == ["events", "feed.a"]
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert len(retries) == 4 and "events-value" in retries[0]
    assert dict(registrar.ids) == {"events": 45, "feed.a": 46}


def test_registration_gives_up_at_its_deadline_with_the_last_reason() -> None:
    codec = FlakyCodec(failures=10_000)
    clock = FakeClock()
    registrar = Registrar(codec)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match="cannot register subject events-value"):
        registrar.register_within(["events"], 100, sleep=clock.sleep, clock=clock)
    assert sum(clock.sleeps) == pytest.approx(100)
    assert max(clock.sleeps) <= BACKOFF_MAX
    assert len(registrar.ids) == 0


def test_topics_registered_before_a_failure_keep_their_ids() -> None:
    class FailsOnB(FlakyCodec):
        def register(self, topic: str) -> int:
            if topic == "feed.b":
                raise RegistrationError("cannot register subject feed.b-value: incompatible")
            return super().register(topic)

    ids = SchemaIds()
    registrar = Registrar(FailsOnB(0), ids)  # type: ignore[arg-type]
    with pytest.raises(RegistrationError, match=r"feed\.b-value"):
        registrar.register(["events", "feed.b"])
    assert dict(ids) == {"events": 41}


# --- new subscriptions go in force only once their topics are ready -----------------------------------


def test_new_subscriptions_are_read_then_applied(tmp_path) -> None:
    from streams.subscription_source import SubscriptionSource

    path = tmp_path / "subs.yaml"
    path.write_text("subscriptions: []\n")
    source = SubscriptionSource(path)
    assert source.read_if_changed() is None
    path.write_text("subscriptions:\n  - name: a\n    sink: {type: kafka, topic: feed.a, format: avro}\n")
    pending = source.read_if_changed()
    assert pending is not None and [s.name for s in pending.subscriptions] == ["a"]
    # Not in force until applied; read again (its topics could not be readied), it comes back.
    assert source() == []
    again = source.read_if_changed()
    assert again is not None and again.digest == pending.digest
    source.apply(pending)
    assert [s.name for s in source()] == ["a"]
    assert source.read_if_changed() is None
    # A version that does not validate is reported once, and the rules in force stay.
    path.write_text("subscriptions: [{name: b}]\n")
    assert source.read_if_changed() is None
    assert source.read_if_changed() is None
    assert [s.name for s in source()] == ["a"]


def test_a_standing_problem_makes_the_worker_not_ready() -> None:
    from streams.app import StreamHealth

    health = StreamHealth()
    health.observed = (True, "8 partitions active", 0.0)
    assert health.check()[0] is True
    health.problem = "new subscriptions not in force: cannot register subject feed.a-value"
    ready, reason = health.check()
    assert ready is False and "feed.a-value" in reason
    health.problem = None
    assert health.check()[0] is True


def test_the_registry_url_and_timeout_are_validated_at_start() -> None:
    from bridge.settings import SettingsError, StreamSettings, load

    with pytest.raises(SettingsError, match="EVENTFED_SCHEMA_REGISTRY_URL") as caught:
        load(StreamSettings, schema_registry_url="registry:8081", schema_registry_timeout=0)
    assert "EVENTFED_SCHEMA_REGISTRY_TIMEOUT" in str(caught.value)
    settings = load(StreamSettings, schema_registry_url="https://registry.onap:8081/apis/ccompat/v7")
    assert settings.schema_registry_timeout == 60
