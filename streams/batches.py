"""Batches of a Faust stream's events whose window opens at the first record ("linger").

Faust's `Stream.take_events(n, within)` wakes every `within` seconds whether or not anything has
arrived (each wake is a `wait_for_stopped` with a timeout, three tasks), so an idle worker spends
CPU on its timer and a record waits for the rest of the window it happened to land in. Here, while
nothing is buffered the stream waits with no timer for the first record; once one is buffered it
waits up to `within` seconds (or until `max_size` are buffered) for company, then yields the
batch. An idle worker costs nothing, a lone record waits one window at most, so a small window is
affordable.

The events are gathered the way `take_events` gathers them, because that is what Faust's
rebalances are built around: a processor on the stream appends each event to the buffer while the
stream is drained in the background (Faust's passive mode), the stream's own acks are off, and
each event of a batch is acked once the caller has handled the batch and asked for the next, so
Faust's count of unacked messages (which it waits on at a rebalance) covers the batch being
handled. Iterating `stream.events()` instead acks each event as the next one is read, before its
batch is handled: batches built that way once left a worker without the rest of some partitions
after a rebalance (one run in four, see commit 5ea2893), likely for that reason.

While a batch is out with the caller, and while the buffer is full, the processor holds the
stream back, so a batch never exceeds `max_size` and the caller never sees the buffer change.
Every wait ends when the stream stops, so a stopping worker is not held by an open window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from streams.faust_internals import drain_in_background, remove_processor

LOG = logging.getLogger(__name__)


async def linger_batches(
    stream: Any, max_size: int, within: float, longest: float | None = None
) -> AsyncIterator[list[Any]]:
    """Batches of `stream`'s events (Faust `EventT`s): a batch opens at its first event and closes
    once no event has come for `within` seconds, at `max_size` events, or `longest` seconds after
    it opened (None: `within`, a fixed window). Each event is acked once its batch has been
    handled, that is, when the next batch is asked for or the iteration ends.

    Closing on a quiet gap rather than a fixed window lets a batch grow while records keep coming:
    after a long batch the records that waited meanwhile come in a stream, faster than a short
    window gathers them, and a worker taking small batches from a backlog pays its per-batch
    writes more often than it can afford."""
    if max_size < 1 or within < 0:
        raise ValueError(f"max_size must be at least 1 and within not negative: {max_size}, {within}")
    longest = within if longest is None else max(within, longest)
    loop = asyncio.get_running_loop()
    events: list[Any] = []
    first = asyncio.Event()  # something is buffered: the window is open
    full = asyncio.Event()  # max_size are buffered: the window closes early
    # Set while the processor may add to the buffer; clear while a batch is out with the caller
    # or the buffer is full, which holds the stream back (back-pressure).
    room = asyncio.Event()
    room.set()

    # Every wait also ends when the stream is told to stop. Watched by one task for the whole
    # iteration, because the stream's own stop flag may be reset again (a stream started by its
    # background drain is reset when the drain ends) before a waiter gets to read it.
    stopping = asyncio.ensure_future(stream.wait_until_stopped())

    async def until(event: asyncio.Event, timeout: float | None = None) -> None:
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait((waiter, stopping), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    async def buffer_event(value: Any) -> Any:
        while not room.is_set():
            if stopping.done():
                # The event is neither buffered nor acked; its record is read again by whoever
                # owns the partition next (the runner commits only what it has written).
                return value
            await until(room)
        event = stream.current_event
        if event is None:
            # Only events of the stream's channel (Kafka records) reach here; a bare value has no
            # message to ack. Crash the stream, as Faust's take does: its drain would otherwise end
            # quietly and leave the batches waiting for records that no longer come.
            exc = RuntimeError("linger_batches: a value reached the buffer without its event")
            LOG.error("%s", exc)
            await stream.crash(exc)
            return value
        events.append(event)
        first.set()
        if len(events) >= max_size:
            full.set()
            room.clear()
        return value

    acks_were_enabled = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(buffer_event)
    drain_in_background(stream)
    try:
        while not stopping.done():
            # No timer while nothing is buffered: an idle worker sleeps here.
            if not first.is_set():
                await until(first)
            opened = loop.time()
            while not full.is_set() and within > 0 and not stopping.done():
                gathered = len(events)
                left = opened + longest - loop.time()
                if left <= 0:
                    break
                await until(full, min(within, left))
                if len(events) == gathered:
                    break  # a quiet gap: nothing more is on its way

            if stopping.done():
                break
            batch = events[:max_size]
            room.clear()
            try:
                yield batch
            finally:
                del events[: len(batch)]
                for event in batch:
                    await stream.ack(event)
                if not events:
                    first.clear()
                if len(events) < max_size:
                    full.clear()
                    room.set()
    finally:
        stopping.cancel()
        stream.enable_acks = acks_were_enabled
        remove_processor(stream, buffer_event)
