"""streams.batching: batches begin with their first item, close after the window or when full."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from streams.batching import company_batches


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """The scenario as a test, on an event loop of its own."""

    @functools.wraps(scenario)
    def test() -> None:
        asyncio.run(scenario())

    return test


class Feed:
    """An async stream fed by the test; `end()` ends it, `fail(exc)` raises from it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.read = 0

    def put(self, *items: object) -> None:
        for item in items:
            self.queue.put_nowait(item)

    def end(self) -> None:
        self.queue.put_nowait(StopAsyncIteration)

    def fail(self, exc: Exception) -> None:
        self.queue.put_nowait(exc)

    async def items(self) -> AsyncIterator[object]:
        while True:
            item = await self.queue.get()
            if item is StopAsyncIteration:
                return
            if isinstance(item, Exception):
                raise item
            self.read += 1
            yield item


async def _next(batches: AsyncIterator[list[object]], timeout: float = 2.0) -> list[object]:
    return await asyncio.wait_for(batches.__anext__(), timeout)


@run
async def test_a_batch_holds_what_arrives_within_its_window() -> None:
    feed = Feed()
    batches = company_batches(feed.items(), 10, 0.05)
    feed.put(1, 2)
    asyncio.get_running_loop().call_later(0.01, feed.put, 3)
    assert await _next(batches) == [1, 2, 3]
    # Arriving after the window closed: the next batch.
    feed.put(4)
    assert await _next(batches) == [4]
    await batches.aclose()  # type: ignore[attr-defined]


@run
async def test_the_window_starts_at_the_first_item_not_on_a_beat() -> None:
    feed = Feed()
    batches = company_batches(feed.items(), 10, 0.1)
    waiting = asyncio.ensure_future(_next(batches))
    # Nothing comes for longer than a window: no empty batch, no batch at all.
    await asyncio.sleep(0.25)
    assert not waiting.done()
    started = time.monotonic()
    feed.put("a")
    assert await waiting == ["a"]
    assert 0.09 <= time.monotonic() - started < 0.5
    await batches.aclose()  # type: ignore[attr-defined]


@run
async def test_a_full_batch_closes_without_waiting_for_the_window() -> None:
    feed = Feed()
    batches = company_batches(feed.items(), 3, 30.0)
    feed.put(1, 2, 3, 4, 5)
    started = time.monotonic()
    assert await _next(batches) == [1, 2, 3]
    assert time.monotonic() - started < 1.0
    feed.put(6)
    assert await _next(batches) == [4, 5, 6]
    await batches.aclose()  # type: ignore[attr-defined]


@run
async def test_the_stream_is_not_read_past_a_full_queue_while_a_batch_is_handled() -> None:
    feed = Feed()
    batches = company_batches(feed.items(), 2, 0.01)
    feed.put(*range(10))
    assert await _next(batches) == [0, 1]
    await asyncio.sleep(0.05)
    # The batch in hand, two waiting in the queue and one held by the puller's put.
    assert feed.read <= 5
    assert await _next(batches) == [2, 3]
    await batches.aclose()  # type: ignore[attr-defined]


@run
async def test_the_last_items_are_handed_over_when_the_stream_ends() -> None:
    feed = Feed()
    batches = company_batches(feed.items(), 10, 30.0)
    feed.put(1, 2)
    feed.end()
    assert await _next(batches) == [1, 2]
    with pytest.raises(StopAsyncIteration):
        await _next(batches)


@run
async def test_an_error_of_the_stream_reaches_the_reader() -> None:
    feed = Feed()
    batches = company_batches(feed.items(), 10, 0.01)
    feed.put(1)
    assert await _next(batches) == [1]
    feed.fail(RuntimeError("consumer gone"))
    with pytest.raises(RuntimeError, match="consumer gone"):
        await _next(batches)


@run
async def test_closing_the_batches_stops_reading_the_stream() -> None:
    feed = Feed()
    batches = company_batches(feed.items(), 10, 0.01)
    feed.put(1)
    assert await _next(batches) == [1]
    await batches.aclose()  # type: ignore[attr-defined]
    feed.put(2, 3)
    await asyncio.sleep(0.05)
    assert feed.read == 1


def test_a_batch_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        company_batches(Feed().items(), 0, 0.01).__anext__().send(None)  # type: ignore[attr-defined]
