"""The one place eventfed touches oslo.messaging's undocumented attributes.

Four things oslo has no public way to do:
- Change a running server's `batch_timeout`: the listener's batch window adapts to the load
  (bridge.listener.window). The server keeps its poll-style listener adapter in `listener` once
  started, and the adapter reads `self.batch_timeout` afresh on every poll, so setting the
  attribute changes the window from the next poll on.
- Start the window at a batch's first notification. oslo's batch poll runs its window from the
  moment it starts polling, so a listener polls every window even when nothing comes (about
  0.4 ms of CPU a poll here: 4% of a core at a 10 ms window, 12% at 2 ms), and a notification
  waits for whatever is left of the window it fell into. `linger` wraps the driver listener's
  `poll` so that a batch begins with a wait for its first notification (in `idle_wait` slices, so
  acknowledgements and a stop are still seen) and then gathers company for the window. Each
  wait, for a first notification or for company, is spent on the connection's socket
  (`arrival_wait`: `select`, acknowledgements sent between slices as oslo sends them), and oslo
  polls only once something came: oslo's own waits end in socket timeouts raised through kombu,
  several per notification at a quiet cloud's rates, each dearer than the notification itself.
- Hand a batch over in arrival order. oslo's batch dispatcher sorts a batch by priority before
  calling the endpoints, so an instance's ERROR notification would overtake the INFO ones
  received before it (a pooled listener reads every priority from one queue, in order).
  `ordered_batch_dispatcher` subclasses it, reading each message with the dispatcher's own
  private `_extract_user_message` so that the context and payload are deserialised as oslo does.
- Tell whether a consuming server's connection is open now (`connection_open`): oslo reconnects a
  lost one by itself without a word to its caller, so a listener's readiness reads it.
Checked against oslo.messaging 18.3.1 (kombu 5, py-amqp 5 for the connection's socket);
`missing_internals()`, `missing_arrival_internals()` and `missing_dispatcher_internals()` say
whether the installed versions still work this way, and a unit test fails when an upgrade moves
them. Without the first two the listener keeps oslo's own fixed window; without the arrival
internals oslo's own poll waits (the same batches, more CPU); without the third it does not start.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bridge.private_api import has_source, missing

LOG = logging.getLogger(__name__)

CHECKED_VERSIONS = {"oslo.messaging": "18.3.1"}

# oslo's own first wait for a message (amqpdriver.ACK_REQUEUE_EVERY_SECONDS_MIN), doubled per wait.
FIRST_ARRIVAL_SLICE = 0.001


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


def _arrival_checks() -> dict[str, Callable[[], bool]]:
    import amqp.connection
    import amqp.transport
    import kombu.connection
    from oslo_messaging._drivers import amqpdriver, common, impl_rabbit

    return {
        "AMQPListener incoming, _message_operations_handler, _shutdown": lambda: (
            all(
                has_source(amqpdriver.AMQPListener.__init__, text)
                for text in (
                    "self.incoming = []",
                    "self._shutdown = ",
                    "self._message_operations_handler = MessageOperationsHandler(",
                )
            )
            and has_source(amqpdriver.MessageOperationsHandler.process, "def process(self)")
        ),
        "ConnectionContext.connection": lambda: has_source(
            common.ConnectionContext.__init__, "self.connection = "
        ),
        "impl_rabbit.Connection.connection": lambda: has_source(
            impl_rabbit.Connection.__init__, "self.connection = kombu.connection.Connection("
        ),
        "kombu Connection._connection": lambda: has_source(
            kombu.connection.Connection._connection_factory, "self._connection = "
        ),
        "py-amqp Connection._transport": lambda: has_source(
            amqp.connection.Connection.connect, "self.transport = self.Transport("
        ),
        "py-amqp transport sock and _read_buffer": lambda: (
            has_source(amqp.transport._AbstractTransport.__init__, "self._read_buffer = EMPTY_BUFFER")
            and has_source(amqp.transport._AbstractTransport.__init__, "self.sock = None")
        ),
    }


def missing_arrival_internals() -> list[str]:
    """What the arrival wait relies on that the installed libraries lack (without it, oslo's own
    poll waits each window: the same batches, more CPU)."""
    return missing(_arrival_checks())


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
    driver_listener.poll = lingering_poll(driver_listener.poll, idle_wait, arrival_wait(driver_listener))
    return True


def arrival_wait(driver_listener: Any) -> Callable[[float], bool]:
    """Waits up to `seconds` for something to read on an AMQP listener's connection: True as
    soon as there is (or when it cannot tell, or the listener is stopping: oslo's own poll then
    takes over), False when the time passed with nothing.

    oslo's poll waits in socket reads of 1, 2, 4, ... ms, each ending in a timeout raised
    through kombu, so that the acknowledgements other threads queue go out between them; at a
    quiet cloud's rates that is several timeouts per notification, each costing more CPU than
    the notification itself. This waits in `select` slices of the same lengths and sends the
    queued acknowledgements between them as oslo does. Called only from the polling thread,
    which alone uses that connection."""
    operations = getattr(driver_listener, "_message_operations_handler", None)
    shutdown = getattr(driver_listener, "_shutdown", None)

    def arrived(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        wait = FIRST_ARRIVAL_SLICE
        while True:
            if operations is not None:
                operations.process()
            if getattr(driver_listener, "incoming", None) or (shutdown is not None and shutdown.is_set()):
                return True
            try:
                # oslo's connection context, its rabbit Connection, kombu's Connection (whose
                # `connection` property would reconnect; its attribute does not), py-amqp's.
                transport = driver_listener.conn.connection.connection._connection._transport
                sock = transport.sock
                if transport._read_buffer:
                    return True
            except AttributeError:
                return True
            if sock is None:
                return True
            pending = getattr(sock, "pending", None)
            if pending is not None and pending():
                # Bytes TLS has decrypted already: the socket itself may have nothing more.
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                readable, _, _ = select.select([sock], [], [], min(wait, left))
            except (OSError, ValueError):
                return True
            if readable:
                return True
            wait = min(wait * 2, seconds)

    return arrived


def lingering_poll(
    poll: Callable[..., list[Any]],
    idle_wait: float,
    arrived: Callable[[float], bool] | None = None,
) -> Callable[..., list[Any]]:
    """oslo's batch poll, with the batch window starting at the first notification. `arrived`
    (see arrival_wait) waits out a window cheaply; oslo polls for company only if it says so."""

    def lingering(
        timeout: float | None = None, batch_size: int = 1, batch_timeout: float | None = None
    ) -> list[Any]:
        if arrived is not None and not arrived(idle_wait):
            return []
        first = poll(batch_size=1, batch_timeout=idle_wait)
        if not first or batch_size <= 1:
            return first
        # oslo's helper reads a window of 0 as none at all (it would wait to fill the batch).
        window = batch_timeout or timeout or idle_wait
        if arrived is not None:
            started = time.monotonic()
            if not arrived(window):
                return first
            # What came is read within what is left of the window (at least a millisecond's read).
            window = max(window - (time.monotonic() - started), 0.001)
        return first + poll(batch_size=batch_size - 1, batch_timeout=window)

    return lingering


def connection_open(server: Any) -> bool | None:
    """Whether a started server's connection to RabbitMQ is open at this moment (kombu's public
    `connected`, reached through oslo's listener and connection objects); None when it cannot tell
    (not started yet, another transport, or the arrival internals are missing).

    oslo reconnects a lost connection by itself, in its polling thread, for ever and without
    telling its caller: a virtual host deleted or permissions revoked under a consuming listener
    show only as this being False (and oslo's log lines) until it is back. Attribute reads only,
    no I/O: cheap enough to call for every VIM at every readiness probe."""
    adapter = getattr(server, "listener", None)
    driver_listener = getattr(adapter, "_poll_style_listener", None)
    try:
        kombu_connection = driver_listener.conn.connection.connection  # type: ignore[union-attr]
    except AttributeError:
        return None
    if kombu_connection is None or not hasattr(type(kombu_connection), "connected"):
        return None
    # py-amqp's own `connected` is None rather than False once its transport is gone.
    return bool(kombu_connection.connected)


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
