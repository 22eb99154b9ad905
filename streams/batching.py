"""Batches of a stream's items that begin with their first item. Pure asyncio: no Faust here.

Faust's `take_events` closes a batch on a fixed beat: it waits `within` seconds, yields what came,
and waits again, whether anything came or not. At a 10 ms beat an idle worker wakes a hundred times
a second (each wake-up a few tasks and futures), and a quiet cloud's record waits for whatever is
left of the beat it fell into. Here nothing runs while nothing comes: a batch opens when its first
item arrives, gathers company for `window` seconds (or until it holds `size`), and is handed over.
The records of one fetch reach the stream together, so a window of a few milliseconds holds them all.

Items are pulled from the stream by a task of their own into a queue of `size`: while a batch is
being handled, at most `size` more wait, and the stream is not read further (as with Faust's take,
whose buffer blocks when full). An error raised by the stream is raised to the batches' reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def company_batches(items: AsyncIterator[T], size: int, window: float) -> AsyncIterator[list[T]]:
    """Lists of up to `size` items, each closed `window` seconds after its first item arrived or
    as soon as it is full; ends when the stream ends (after its last batch)."""
    if size < 1:
        raise ValueError("a batch holds at least one item")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[T] = asyncio.Queue(maxsize=size)
    # Set by the puller when the queue is full, so a batch waiting for company closes at once.
    full: list[asyncio.Future[None]] = []

    async def pull() -> None:
        async for item in items:
            await queue.put(item)
            if full and queue.full() and not full[0].done():
                full[0].set_result(None)

    puller = asyncio.ensure_future(pull())
    try:
        while True:
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait((getter, puller), return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    # The stream ended or failed with nothing waiting: raise its error, or end.
                    getter.cancel()
                    puller.result()
                    return
                batch = [getter.result()]
            else:
                batch = [queue.get_nowait()]
            if queue.qsize() + 1 < size and not puller.done():
                wake: asyncio.Future[None] = loop.create_future()
                full[:] = [wake]
                timer = loop.call_later(window, _settle, wake)
                try:
                    await asyncio.wait((wake, puller), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    timer.cancel()
                    full.clear()
            while len(batch) < size and not queue.empty():
                batch.append(queue.get_nowait())
            yield batch
            if puller.done() and queue.empty():
                puller.result()
                return
    finally:
        puller.cancel()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
