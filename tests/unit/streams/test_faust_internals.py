"""faust-streaming's private attributes that eventfed relies on are still where they were."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from streams import faust_internals

ROOT = Path(__file__).resolve().parents[3]


def test_every_private_attribute_used_is_present():
    assert faust_internals.missing_internals() == []


def test_the_installed_versions_are_the_ones_checked():
    # An upgrade must re-check the attributes above and then update CHECKED_VERSIONS.
    installed = {name: metadata.version(name) for name in faust_internals.CHECKED_VERSIONS}
    assert installed == faust_internals.CHECKED_VERSIONS


def test_a_moved_attribute_is_reported(monkeypatch):
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    monkeypatch.delattr(AIOKafkaConsumerThread, "_ensure_consumer")
    assert faust_internals.missing_internals() == ["AIOKafkaConsumerThread._ensure_consumer"]


def test_no_other_module_touches_them():
    pattern = "_read_offset|_ensure_consumer|call_thread|tp_last_committed_at"
    found = subprocess.run(
        ["grep", "-rlE", pattern, "bridge", "streams", "--include=*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert found == ["streams/faust_internals.py"], sys.executable


def _worker_app(tmp_path, monkeypatch, **settings):
    import asyncio

    from bridge.settings import StreamSettings, load
    from streams.app import StreamHealth, build_app
    from streams.subscription_source import SubscriptionSource

    for name, value in {
        "EVENTFED_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "EVENTFED_DATA_DIR": str(tmp_path),
        **settings,
    }.items():
        monkeypatch.setenv(name, value)
    asyncio.set_event_loop(asyncio.new_event_loop())
    app, runner = build_app(load(StreamSettings), SubscriptionSource(None), StreamHealth())
    runner.reader.close()

    async def build():
        # What Faust's consumer thread builds when it starts (not started here).
        return app.consumer._thread._create_worker_consumer(app.transport)

    loop = asyncio.get_event_loop()
    try:
        return loop.run_until_complete(build())
    finally:
        loop.close()


def test_the_worker_consumer_waits_at_the_broker_for_company(tmp_path, monkeypatch):
    """A quiet cloud's records come a few per fetch: the broker holds the fetch for
    EVENTFED_FETCH_WAIT_MS unless FETCH_MIN_BYTES came first (Faust's own would return one)."""
    from bridge.settings import StreamSettings

    consumer = _worker_app(tmp_path, monkeypatch)
    assert consumer._fetch_max_wait_ms == StreamSettings.model_fields["fetch_wait_ms"].default == 20
    assert consumer._fetch_min_bytes == faust_internals.FETCH_MIN_BYTES > 1

    consumer = _worker_app(tmp_path, monkeypatch, EVENTFED_FETCH_WAIT_MS="35")
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (faust_internals.FETCH_MIN_BYTES, 35)


def test_no_fetch_wait_leaves_fausts_consumer_as_faust_builds_it(tmp_path, monkeypatch):
    consumer = _worker_app(tmp_path, monkeypatch, EVENTFED_FETCH_WAIT_MS="0")
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (1, 1500)
