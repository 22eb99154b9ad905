"""The one place eventfed touches oslo.messaging's undocumented attributes.

Three things oslo has no public way to do:
- Change a running server's `batch_timeout`: the listener's batch window adapts to the load
  (bridge.listener.window). The server keeps its poll-style listener adapter in `listener` once
  started, and the adapter reads `self.batch_timeout` afresh on every poll, so setting the
  attribute changes the window from the next poll on.
- Start the window at a batch's first notification. oslo's batch poll runs its window from the
  moment it starts polling, so a listener polls every window even when nothing comes (about
  0.4 ms of CPU a poll here: 4% of a core at a 10 ms window, 12% at 2 ms), and a notification
  waits for whatever is left of the window it fell into. `linger` wraps the driver listener's
  `poll` so that a batch begins with a wait for its first notification (in `idle_wait` slices, so
  acknowledgements and a stop are still seen) and then gathers company for the window.
- Hand a batch over in arrival order. oslo's batch dispatcher sorts a batch by priority before
  calling the endpoints, so an instance's ERROR notification would overtake the INFO ones
  received before it (a pooled listener reads every priority from one queue, in order).
  `ordered_batch_dispatcher` subclasses it, reading each message with the dispatcher's own
  private `_extract_user_message` so that the context and payload are deserialised as oslo does.
Checked against oslo.messaging 18.3.1; `missing_internals()` and `missing_dispatcher_internals()`
say whether the installed version still works this way, and a unit test fails when an upgrade
moves it. Without the first two the listener keeps oslo's own fixed window; without the third it
does not start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bridge.private_api import has_source, missing

LOG = logging.getLogger(__name__)

CHECKED_VERSIONS = {"oslo.messaging": "18.3.1"}


def _checks() -> dict[str, Callable[[], bool]]:
    from oslo_messaging import server
    from oslo_messaging._drivers import base

    return {
        # The server keeps the driver's listener it created at start() in `listener`.
        "MessageHandlingServer.listener": lambda: has_source(
            server.MessageHandlingServer.start, "self.listener = self._create_listener()"
        ),
        # The listener stores the window in a plain attribute...
        "Listener.batch_timeout": lambda: has_source(
            base.Listener.__init__, "self.batch_timeout = batch_timeout"
        ),
        # ...that the polling thread reads again for every batch.
        "PollStyleListenerAdapter._runner reads batch_timeout": lambda: has_source(
            base.PollStyleListenerAdapter._runner, "batch_timeout=self.batch_timeout"
        ),
        # The adapter polls the driver's listener, kept in `_poll_style_listener`...
        "PollStyleListenerAdapter._poll_style_listener": lambda: has_source(
            base.PollStyleListenerAdapter.__init__, "self._poll_style_listener = poll_style_listener"
        ),
        # ...by calling its `poll` with these keywords, each time it polls...
        "PollStyleListenerAdapter._runner polls with batch_size": lambda: (
            has_source(base.PollStyleListenerAdapter._runner, "._poll_style_listener.poll(")
            and has_source(base.PollStyleListenerAdapter._runner, "batch_size=self.batch_size")
        ),
        # ...and the driver's batch poll takes them, returning a list once a poll comes back empty
        # or the batch is full.
        "batch_poll_helper signature": lambda: has_source(
            base.batch_poll_helper, "def wrapper(in_self, timeout=None, batch_size=1, batch_timeout=None)"
        ),
    }


def _dispatcher_checks() -> dict[str, Callable[[], bool]]:
    from oslo_messaging.notify import dispatcher

    return {
        # The dispatcher reads a message into (priority, incoming, user message)...
        "NotificationDispatcher._extract_user_message": lambda: has_source(
            getattr(dispatcher.NotificationDispatcher, "_extract_user_message", None),
            "return priority, incoming, dict(ctxt=ctxt",
        ),
        # ...and the batch server calls `dispatch` with the batch, expecting the messages to
        # requeue back.
        "BatchNotificationDispatcher.dispatch": lambda: has_source(
            getattr(dispatcher.BatchNotificationDispatcher, "dispatch", None), "return requeues"
        ),
    }


def missing_internals() -> list[str]:
    """What the batch window relies on that the installed oslo.messaging lacks."""
    return missing(_checks())


def missing_dispatcher_internals() -> list[str]:
    """What the ordered batch dispatcher relies on that the installed oslo.messaging lacks."""
    return missing(_dispatcher_checks())


BatchHandler = Callable[[list[tuple[str, dict[str, Any]]]], Any]


def user_messages(dispatcher: Any, incoming: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(priority, message dict) of each incoming notification, in order, as `dispatcher` (an oslo
    notification dispatcher) reads them; a message without a priority is "info"."""
    messages = []
    for raw in incoming:
        priority, _, message = dispatcher._extract_user_message(raw)
        messages.append((priority or "info", message))
    return messages


def ordered_batch_dispatcher(handle: BatchHandler, priorities: Iterable[str]) -> Any:
    """A batch dispatcher that calls `handle` with each whole batch in arrival order, as
    (priority, message dict) pairs, and requeues the whole batch when it returns
    NotificationResult.REQUEUE (or raises). `priorities`: the ones the queue binds to."""
    from oslo_messaging.notify import dispatcher as notify_dispatcher

    requeue = notify_dispatcher.NotificationResult.REQUEUE

    class OrderedBatchDispatcher(notify_dispatcher.BatchNotificationDispatcher):
        def dispatch(self, incoming: list[Any]) -> set[Any]:
            messages = user_messages(self, incoming)
            try:
                outcome = handle(messages)
            except Exception:
                LOG.exception("batch handling failed; requeueing it")
                outcome = requeue
            return set(incoming) if outcome == requeue else set()

    # oslo binds the queue to the priorities the endpoints have a method for; the endpoint object
    # only declares them, `handle` does the work.
    class Priorities:
        pass

    for priority in priorities:
        setattr(Priorities, priority, lambda *_args: None)
    return OrderedBatchDispatcher([Priorities()], None)


def set_batch_timeout(server: Any, seconds: float) -> bool:
    """Sets a started server's batch window for its next poll; False before it has a listener."""
    listener = getattr(server, "listener", None)
    if listener is None or not hasattr(listener, "batch_timeout"):
        return False
    listener.batch_timeout = seconds
    return True


def linger(server: Any, idle_wait: float) -> bool:
    """Makes a started server's batches begin at their first notification; False before it has a
    listener. `idle_wait`: how long one wait for a first notification lasts before the polling
    thread looks at acknowledgements to send and at a stop, and waits again."""
    adapter = getattr(server, "listener", None)
    driver_listener = getattr(adapter, "_poll_style_listener", None)
    if driver_listener is None:
        return False
    driver_listener.poll = lingering_poll(driver_listener.poll, idle_wait)
    return True


def lingering_poll(poll: Callable[..., list[Any]], idle_wait: float) -> Callable[..., list[Any]]:
    """oslo's batch poll, with the batch window starting at the first notification."""

    def lingering(
        timeout: float | None = None, batch_size: int = 1, batch_timeout: float | None = None
    ) -> list[Any]:
        first = poll(batch_size=1, batch_timeout=idle_wait)
        if not first or batch_size <= 1:
            return first
        # oslo's helper reads a window of 0 as none at all (it would wait to fill the batch).
        window = batch_timeout or timeout or idle_wait
        return first + poll(batch_size=batch_size - 1, batch_timeout=window)

    return lingering


def in_polling_thread(server: Any, call: Callable[[], object]) -> bool:
    """Runs `call` once in a started server's polling thread, at its next poll (to bind what that
    thread logs to its VIM); False before it has a listener."""
    adapter = getattr(server, "listener", None)
    driver_listener = getattr(adapter, "_poll_style_listener", None)
    if driver_listener is None:
        return False
    poll = driver_listener.poll

    def first_poll(*args: Any, **kwargs: Any) -> Any:
        driver_listener.poll = poll
        call()
        return poll(*args, **kwargs)

    driver_listener.poll = first_poll
    return True
