"""How the worker's Faust app is put together, built without a broker (nothing connects before
the worker starts)."""

from __future__ import annotations

import asyncio

import pytest

from bridge.settings import StreamSettings, load
from streams.app import StreamHealth, build_app
from streams.subscription_source import SubscriptionSource


@pytest.fixture
def stream_app(tmp_path, monkeypatch):
    for name, value in {
        "EVENTFED_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "EVENTFED_DATA_DIR": str(tmp_path),
        "EVENTFED_STATE_TOPIC": "unit.state",
        "EVENTFED_RAW_TOPIC": "unit.raw",
    }.items():
        monkeypatch.setenv(name, value)
    asyncio.set_event_loop(asyncio.new_event_loop())
    app, runner = build_app(load(StreamSettings), SubscriptionSource(None), StreamHealth())
    yield app
    runner.reader.close()
    asyncio.get_event_loop().close()


def test_the_state_topic_is_acked_like_a_faust_changelog_not_like_a_stream(stream_app):
    """Faust's check for stalled streams counts every acked topic it is assigned; the state topic
    is only read to recover the table, so counted it would log an error per partition every few
    seconds once the worker is five minutes old and has written states."""
    (table,) = [t for t in stream_app.tables.values() if t.name == "vm-state"]
    assert table.changelog_topic.get_topic_name() == "unit.state"
    assert table.changelog_topic.acks is False


def test_the_raw_topic_is_not_acked_by_faust(stream_app):
    """The runner commits the raw topic's offsets itself (streams.runner); the fleet merge's agent
    (streams.fleet_merge) is acked as Faust does, its table written from it."""
    (agent,) = [a for a in stream_app.agents.values() if a.channel.get_topic_name() == "unit.raw"]
    assert agent.channel.acks is False


def test_the_fleet_merge_reads_the_parts_topic_into_a_changelogged_table(stream_app):
    (agent,) = [a for a in stream_app.agents.values() if a.channel.get_topic_name() != "unit.raw"]
    assert agent.channel.get_topic_name() == "eventfed.fleet.parts"
    (table,) = [t for t in stream_app.tables.values() if t.name == "fleet-merge"]
    assert table.changelog_topic.get_topic_name().endswith("fleet-merge-changelog")
    assert table.changelog_topic.key_serializer == "raw"
