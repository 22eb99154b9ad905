"""streams.batches.linger_batches on a real Faust stream over an in-process channel (no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import pytest

from streams.batches import linger_batches

LONG = 60.0  # a window no test waits for: a batch it closes would fail the test by its timeout


class Harness:
    """A Faust stream on an app channel, its batches collected by a task, its acks and timed
    waits recorded."""

    def __init__(self, batching: Callable[[Any], Any]) -> None:
        self.app = faust.App("batches-test", broker="kafka://127.0.0.1:1", store="memory://")
        self.app.flow_control.resume()  # a started worker's state; the app itself never starts
        self.channel = self.app.channel()
        self.stream = self.app.stream(self.channel)
        self.batches: list[list[int]] = []
        self.acked: list[int] = []
        self.acked_when_yielded: list[list[int]] = []
        self.arrived = asyncio.Event()
        ack = self.stream.ack

        async def recording_ack(event: Any) -> bool:
            self.acked.append(event.value)
            return bool(await ack(event))

        self.stream.ack = recording_ack
        self.task = asyncio.ensure_future(self._collect(batching(self.stream)))

    async def _collect(self, batches: Any) -> None:
        async for batch in batches:
            self.acked_when_yielded.append(list(self.acked))
            self.batches.append([event.value for event in batch])
            self.arrived.set()
            # The caller handles the batch: nothing of it may be acked yet.
            await asyncio.sleep(0)

    async def send(self, *values: int) -> None:
        for value in values:
            await self.channel.send(value=value)

    async def next_batches(self, count: int) -> None:
        while len(self.batches) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), LONG / 4)

    async def idle(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def timers_while_idle(self, seconds: float) -> int:
        """How many timers the event loop was asked for while nothing arrived (one is the
        sleep that measures the idle time)."""
        loop = asyncio.get_running_loop()
        call_at = loop.call_at
        timers = []

        def counting_call_at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            timers.append(callback)
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = counting_call_at  # type: ignore[method-assign]
        try:
            await asyncio.sleep(seconds)
        finally:
            del loop.call_at
        return len(timers) - 1

    async def stop(self) -> None:
        await self.stream.stop()
        await asyncio.wait_for(self.task, 10)


def run(batching: Callable[[Any], Any], scenario: Callable[[Harness], Awaitable[None]]) -> Harness:
    async def main() -> Harness:
        harness = Harness(batching)
        await asyncio.sleep(0.05)  # the stream starts draining
        await scenario(harness)
        return harness

    return asyncio.run(main())


def linger(max_size: int, within: float) -> Callable[[Any], Any]:
    return lambda stream: linger_batches(stream, max_size, within)


def take(max_size: int, within: float) -> Callable[[Any], Any]:
    return lambda stream: stream.take_events(max_size, within=within)


def test_a_lone_record_is_yielded_after_the_window_without_a_second_one():
    async def scenario(h: Harness) -> None:
        await h.send(1)
        await h.next_batches(1)
        await h.send(2)
        await h.next_batches(2)
        await h.stop()

    assert run(linger(10, 0.05), scenario).batches == [[1], [2]]


def test_records_arriving_within_the_window_share_a_batch():
    async def scenario(h: Harness) -> None:
        await h.send(1)
        await h.idle(0.2)
        await h.send(2)
        await h.idle(0.2)
        assert h.batches == []  # the window (60 s) is still open
        await h.send(3)  # fills the batch
        await h.next_batches(1)
        await h.stop()

    assert run(linger(3, LONG), scenario).batches == [[1, 2, 3]]


def test_batch_size_caps_a_batch():
    async def scenario(h: Harness) -> None:
        await h.send(*range(1, 8))
        await h.next_batches(2)
        await h.stop()

    harness = run(linger(3, LONG), scenario)
    # Full batches close at once; the seventh record waits for its (long) window and is not yielded.
    assert harness.batches == [[1, 2, 3], [4, 5, 6]]


def test_every_event_is_acked_once_its_batch_is_handled():
    async def scenario(h: Harness) -> None:
        await h.send(1, 2, 3, 4)
        await h.next_batches(2)
        await h.send(5)
        await h.next_batches(3)
        await h.idle(0.05)  # the caller asks for the next batch
        await h.stop()

    harness = run(linger(2, 0.02), scenario)
    assert harness.batches == [[1, 2], [3, 4], [5]]
    # When a batch is handed out, only the batches before it are acked ...
    assert harness.acked_when_yielded == [[], [1, 2], [1, 2, 3, 4]]
    # ... and the last one is acked when the caller asks for the next batch.
    assert harness.acked == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("batching", "timer_while_idle"), [(linger, False), (take, True)])
def test_an_idle_stream_yields_nothing_and_only_faust_take_runs_a_timer(batching, timer_while_idle):
    async def scenario(h: Harness) -> None:
        timers = await h.timers_while_idle(0.3)
        assert (timers > 0) is timer_while_idle
        assert h.batches == []
        await h.send(1)
        await h.next_batches(1)
        await h.stop()

    assert run(batching(10, 0.01), scenario).batches == [[1]]


@pytest.mark.parametrize("busy", [False, True])
def test_stopping_the_stream_ends_the_batches_and_restores_the_stream(busy):
    async def scenario(h: Harness) -> None:
        if busy:
            await h.send(1, 2)  # a window is open, and the buffer full, when the stream stops
            await h.idle(0.05)
        await h.stop()

    harness = run(linger(2 if busy else 10, LONG), scenario)
    assert harness.task.done() and harness.task.exception() is None
    assert harness.stream.enable_acks
    assert not harness.stream.info()["processors"]


def test_nonsense_sizes_are_refused():
    async def scenario(h: Harness) -> None:
        with pytest.raises(ValueError):
            await h.task

    run(linger(0, 0.01), scenario)


def test_a_value_without_its_event_crashes_the_stream_instead_of_stalling_it(caplog):
    async def scenario(h: Harness) -> None:
        await h.channel.put(1)  # a bare value, as no Kafka record ever arrives
        await asyncio.wait_for(h.task, 10)

    harness = run(linger(10, LONG), scenario)  # the batches end (no timeout waiting for them)
    assert harness.batches == []
    assert "Crashed reason=RuntimeError('linger_batches: a value reached the buffer" in caplog.text


def test_records_that_keep_coming_grow_a_batch_past_one_window():
    async def scenario(h: Harness) -> None:
        for value in range(1, 6):  # 80 ms apart: closer together than the window
            await h.send(value)
            await h.idle(0.08)
        await h.next_batches(1)
        await h.stop()

    # A fixed 0.2 s window from the first record would have closed after three of them.
    assert run(lambda stream: linger_batches(stream, 100, 0.2, LONG), scenario).batches == [[1, 2, 3, 4, 5]]


def test_a_growing_batch_closes_at_the_longest_wait():
    async def scenario(h: Harness) -> None:
        for value in range(1, 61):  # a record every 20 ms for more than a second
            await h.send(value)
            await h.idle(0.02)
        await h.next_batches(2)
        await h.stop()

    batches = run(lambda stream: linger_batches(stream, 100, 0.2, 0.3), scenario).batches
    # Without the cap the records, never 0.2 s apart, would all wait in one batch.
    assert len(batches[0]) < 60
    assert [value for batch in batches for value in batch] == list(range(1, sum(map(len, batches)) + 1))
