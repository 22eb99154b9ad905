"""faust-streaming's private attributes that eventfed relies on are still where they were."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
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
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.stop()
        return consumer

    loop = asyncio.get_event_loop()
    try:
        return loop.run_until_complete(build())
    finally:
        loop.close()


def test_the_worker_consumer_is_paced_as_it_starts_unless_the_wait_is_0(tmp_path, monkeypatch):
    paced = _worker_app(tmp_path, monkeypatch)
    unpaced = _worker_app(tmp_path, monkeypatch, EVENTFED_FETCH_WAIT_MS="0")
    assert paced.start.__name__ == "start_paced"
    assert unpaced.start.__func__ is type(unpaced).start
    # The broker-side wait stays Faust's: an idle worker's fetch waits there, not in a loop.
    assert (paced._fetch_min_bytes, paced._fetch_max_wait_ms) == (unpaced._fetch_min_bytes, 1500)


class _Fetcher:
    """The parts of aiokafka's Fetcher that pacing uses: a fetch, the readers' waiters."""

    def __init__(self, brings_records):
        self.brings_records = brings_records
        self._fetch_waiters = set()

    async def _proc_fetch_request(self, assignment, node_id, request):
        return self.brings_records

    def _notify(self, future):
        if not future.done():
            future.set_result(None)


def _paced(brings_records, pause):
    fetcher = _Fetcher(brings_records)
    faust_internals._pace_fetches(fetcher, pause)
    return fetcher


def test_a_fetch_that_brought_records_wakes_the_readers_at_once_then_stays_in_flight():
    async def scenario():
        fetcher = _paced(True, 0.2)
        reader = asyncio.get_running_loop().create_future()
        fetcher._fetch_waiters.add(reader)
        fetch = asyncio.create_task(fetcher._proc_fetch_request(None, 1, None))
        await asyncio.wait_for(reader, 0.1)
        assert not fetch.done()
        started = time.monotonic()
        assert await fetch is True
        return time.monotonic() - started

    assert 0.05 < asyncio.run(scenario()) < 0.5


def test_a_fetch_that_brought_nothing_is_not_held():
    async def scenario():
        return await asyncio.wait_for(_paced(False, 10.0)._proc_fetch_request(None, 1, None), 1.0)

    assert asyncio.run(scenario()) is False


def test_a_paused_fetch_cancelled_ends_as_aiokafkas_own_does_without_raising():
    """aiokafka's close() cancels its fetches and awaits them; one that raised would break it."""

    async def scenario():
        fetch = asyncio.create_task(_paced(True, 10.0)._proc_fetch_request(None, 1, None))
        await asyncio.sleep(0.01)
        fetch.cancel()
        return await fetch

    assert asyncio.run(scenario()) is True
