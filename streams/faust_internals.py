"""Every use of faust-streaming's and aiokafka's private attributes, in one module.

The worker commits the raw topic's offsets itself and watches its consumer's positions for
records fetched but never handed over (see streams.runner), which Faust has no public API for.
Each use below was checked against faust-streaming 0.15.3, mode-streaming 0.7.1 and aiokafka
0.14.0; `missing_internals()` says whether the installed versions still have them, a unit test
fails loudly when an upgrade moves one, and the worker refuses to start without them.

Faust runs its aiokafka consumer on a thread of its own, and aiokafka is not thread-safe, so the
consumer is only ever called there, through the thread's `call_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from bridge.private_api import has_source, missing

# How long a partition's position may take to read before it is left for the next check.
POSITION_SECONDS = 1.0

CHECKED_VERSIONS = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}


def _checks() -> dict[str, Callable[[], bool]]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.consumer.fetcher import Fetcher
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import ThreadDelegateConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    return {
        # ThreadDelegateConsumer keeps its consumer thread in `_thread`.
        "ThreadDelegateConsumer._thread": lambda: has_source(ThreadDelegateConsumer.__init__, "self._thread"),
        # mode's QueueServiceThread runs a coroutine on the thread and returns its result.
        "ConsumerThread.call_thread": lambda: callable(getattr(AIOKafkaConsumerThread, "call_thread", None)),
        # The aiokafka consumer itself.
        "AIOKafkaConsumerThread._ensure_consumer": lambda: callable(
            getattr(AIOKafkaConsumerThread, "_ensure_consumer", None)
        ),
        # Faust's livelock check reads when each partition was last committed.
        "AIOKafkaConsumerThread.tp_last_committed_at": lambda: has_source(
            AIOKafkaConsumerThread, "self.tp_last_committed_at = "
        ),
        # Faust builds its aiokafka consumer here, with a fetch wait of its own choosing.
        "AIOKafkaConsumerThread._create_worker_consumer": lambda: has_source(
            AIOKafkaConsumerThread._create_consumer, "self._create_worker_consumer("
        ),
        # aiokafka's consumer builds its fetcher in start(); the fetcher sends a broker's next
        # fetch only once the one in flight is done, and wakes its readers from _fetch_waiters.
        "AIOKafkaConsumer._fetcher": lambda: has_source(AIOKafkaConsumer.start, "self._fetcher = Fetcher("),
        "Fetcher._proc_fetch_request/_in_flight": lambda: (
            has_source(Fetcher._fetch_requests_routine, "self._proc_fetch_request(")
            and has_source(Fetcher._get_actions_per_node, "elif node_id in self._in_flight:")
        ),
        "Fetcher._fetch_waiters/_notify": lambda: (
            has_source(Fetcher._create_fetch_waiter, "self._fetch_waiters.add(")
            and callable(getattr(Fetcher, "_notify", None))
        ),
        # Whether the table is still being recovered from its changelog (readiness).
        "Recovery.in_recovery": lambda: hasattr(Recovery, "in_recovery"),
    }


def missing_internals() -> list[str]:
    """The private attributes this module relies on that the installed versions lack."""
    return missing(_checks())


def _aiokafka_tp(tp: Any) -> Any:
    from aiokafka.structs import TopicPartition

    return TopicPartition(tp.topic, tp.partition)


async def _commit(thread: Any, offsets: Mapping[Any, int]) -> int:
    from aiokafka.structs import OffsetAndMetadata

    consumer = thread._ensure_consumer()
    assigned = consumer.assignment()
    committable = {
        _aiokafka_tp(tp): OffsetAndMetadata(offset, "")
        for tp, offset in offsets.items()
        if _aiokafka_tp(tp) in assigned
    }
    if committable:
        await consumer.commit(committable)
        # Faust's livelock check reads this; it is updated by Faust's own commits only.
        now = time.monotonic()
        thread.tp_last_committed_at.update({tp: now for tp in offsets})
    return len(committable)


async def _log_starts(thread: Any, partitions: set[Any]) -> dict[Any, int]:
    consumer = thread._ensure_consumer()
    by_key = {_aiokafka_tp(tp): tp for tp in partitions}
    beginnings = await consumer.beginning_offsets(list(by_key))
    return {by_key[key]: offset for key, offset in beginnings.items()}


async def _starts(thread: Any, partitions: set[Any]) -> dict[Any, int]:
    consumer = thread._ensure_consumer()
    starts: dict[Any, int] = {}
    never_committed = set()
    for tp in partitions:
        committed = await consumer.committed(_aiokafka_tp(tp))
        if committed is None:
            never_committed.add(tp)
        else:
            starts[tp] = committed
    if never_committed:
        # No commit yet: the group starts at the log start (auto.offset.reset=earliest).
        starts.update(await _log_starts(thread, never_committed))
    return starts


async def _positions(thread: Any, partitions: set[Any]) -> dict[Any, int]:
    consumer = thread._ensure_consumer()
    assigned = consumer.assignment()
    positions: dict[Any, int] = {}
    for tp in partitions:
        key = _aiokafka_tp(tp)
        if key not in assigned:
            continue
        # position() waits while a partition has no valid position yet (being reset): skip it.
        with contextlib.suppress(TimeoutError):
            positions[tp] = await asyncio.wait_for(consumer.position(key), POSITION_SECONDS)
    return positions


class FaustConsumerOffsets:
    """The runner's ConsumerOffsets port on Faust's consumer: committed offsets, commits and
    positions of the raw topic."""

    def __init__(self, app: Any, timeout: float = 60.0) -> None:
        self._app = app
        self._timeout = timeout

    async def _call(self, function: Any, *args: Any) -> Any:
        thread = self._app.consumer._thread
        return await asyncio.wait_for(thread.call_thread(function, thread, *args), self._timeout)

    async def commit(self, offsets: Mapping[Any, int]) -> int:
        result: int = await self._call(_commit, dict(offsets))
        return result

    async def starts(self, partitions: set[Any]) -> dict[Any, int]:
        result: dict[Any, int] = await self._call(_starts, partitions)
        return result

    async def positions(self, partitions: set[Any]) -> dict[Any, int]:
        """The next offset the consumer will fetch, per assigned partition."""
        result: dict[Any, int] = await self._call(_positions, partitions)
        return result


def fetch_waiting_for_company(app: Any, wait_ms: int) -> None:
    """Make the worker's consumer wait `wait_ms` after a fetch that brought records before it
    fetches from that broker again, so a quiet cloud's records come a few per fetch instead of one
    each, while the first record after a quiet spell is fetched at once and an idle worker's fetch
    still waits at the broker (Faust's 1.5 s). Faust and aiokafka have no setting for it (a
    broker-side wait, fetch_min_bytes with fetch_max_wait_ms, would fetch every `wait_ms` even
    when idle): the consumer is built when Faust's consumer thread starts, so its fetcher is
    paced as it starts. 0 leaves Faust's consumer as it is."""
    if wait_ms <= 0:
        return
    thread = app.consumer._thread
    build = thread._create_worker_consumer

    def build_paced(transport: Any) -> Any:
        consumer = build(transport)
        start = consumer.start

        async def start_paced() -> None:
            await start()
            _pace_fetches(consumer._fetcher, wait_ms / 1000)

        consumer.start = start_paced
        return consumer

    thread._create_worker_consumer = build_paced


def _pace_fetches(fetcher: Any, pause: float) -> None:
    """The fetcher sends a broker's next fetch only when its last one is done: a fetch that
    brought records hands them over at once, then stays in flight for `pause`."""
    fetch = fetcher._proc_fetch_request

    async def fetch_then_pause(assignment: Any, node_id: Any, request: Any) -> bool:
        brought_records: bool = await fetch(assignment, node_id, request)
        if brought_records:
            # What the fetcher does when the fetch is done, done now: its readers wake.
            for waiter in list(fetcher._fetch_waiters):
                fetcher._notify(waiter)
            try:
                await asyncio.sleep(pause)
            except asyncio.CancelledError:
                # Unassigned or closing: as aiokafka's own fetch does, end without raising.
                return brought_records
        return brought_records

    fetcher._proc_fetch_request = fetch_then_pause


def in_recovery(app: Any) -> bool:
    """True while the tables are being rebuilt from their changelogs."""
    return bool(app.tables.recovery.in_recovery)
