"""The listener's adaptive batch window: the policy, the endpoint applying it, and the one
oslo.messaging attribute it is applied through (over oslo's in-process fake:// bus)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from bridge.listener import oslo_internals
from bridge.listener.endpoint import NotificationEndpoint, ordered_batch_listener
from bridge.listener.window import BatchWindow
from bridge.raw_writer import KafkaBatchWriter
from tests.unit.bridge.listener.test_raw_and_listener import FakeProducer, message, settings

ROOT = Path(__file__).resolve().parents[4]


def test_the_window_is_short_when_quiet_long_when_busy_and_linear_between():
    window = BatchWindow(0.01, 0.05, busy_rate=1000)
    assert window.for_rate(0) == 0.01
    assert window.for_rate(200) == 0.01
    assert window.for_rate(600) == pytest.approx(0.03)
    assert window.for_rate(1000) == 0.05
    assert window.for_rate(50_000) == 0.05


def test_the_window_follows_how_fast_the_batches_of_the_last_second_filled():
    window = BatchWindow(0.01, 0.05, busy_rate=1000)
    now, current = 100.0, 0.01
    for _ in range(40):  # 1,200/s arriving: a batch holds what came during its window
        now += current + 0.002
        current = window.observe(round(1200 * current), current, now)
    assert current == pytest.approx(0.05)
    # The load stops; the next notification, two seconds later, is alone in its window.
    assert window.observe(1, current, now + 2.0) == 0.01


def test_a_listener_behind_a_backlog_gets_the_long_window():
    # Starved of CPU, it handles 300 notifications a second, but each 10 ms poll comes back
    # with 30 of them, waiting in RabbitMQ: counted per second it would look quiet.
    window = BatchWindow(0.01, 0.05, busy_rate=1000)
    now = 0.0
    for _ in range(10):
        now += 0.1
        current = window.observe(30, 0.01, now)
    assert current == 0.05


def test_a_quiet_cloud_keeps_the_short_window():
    window = BatchWindow(0.01, 0.05, busy_rate=1000)
    now = 0.0
    for _ in range(100):  # 100/s: mostly one notification a window, sometimes two
        now += 0.01
        current = window.observe(1 if int(now * 100) % 3 else 2, 0.01, now)
    assert current == 0.01


def test_a_quiet_cloud_keeps_a_window_shorter_than_its_gaps():
    # 100/s with a 2 ms window: most polls come back empty and are never handed over, so each
    # batch holds one notification; counted per window polled that would read 500/s.
    window = BatchWindow(0.002, 0.05, busy_rate=1000)
    now = 0.0
    for _ in range(300):
        now += 0.01
        current = window.observe(1, 0.002, now)
    assert current == 0.002


def test_a_busy_cloud_widens_a_short_window_to_the_longest():
    window = BatchWindow(0.002, 0.05, busy_rate=1000)
    now, current = 100.0, 0.002
    for _ in range(400):  # 1,200/s arriving; half a millisecond handling each batch
        now += current + 0.0005
        current = window.observe(max(1, round(1200 * current)), current, now)
    assert current == pytest.approx(0.05)


def test_a_maximum_no_larger_than_the_minimum_is_a_fixed_window():
    window = BatchWindow(0.05, 0.01, busy_rate=1000)
    assert not window.adaptive
    assert window.observe(5000, 0.05, 1.0) == 0.05


def _endpoint(applied: list[float], **overrides: object) -> NotificationEndpoint:
    writer = KafkaBatchWriter(FakeProducer(), "raw", "dlq", 1.0)  # type: ignore[arg-type]
    return NotificationEndpoint(settings(**overrides), writer, threading.Event(), applied.append)


def test_the_endpoint_widens_the_window_under_load_and_narrows_it_when_quiet():
    applied: list[float] = []
    endpoint = _endpoint(applied, batch_timeout=0.01, batch_timeout_max=0.05, batch_busy_rate=1000)
    busy = [("info", message({"instance_id": f"vm-{i}"}, message_id=f"m{i}")) for i in range(1000)]
    endpoint.handle(busy)
    assert applied == [0.05]
    time.sleep(1.05)  # the busy batch leaves the last second
    endpoint.handle(busy[:1])
    assert applied == [0.05, 0.01]


def test_the_endpoint_leaves_a_fixed_window_alone():
    applied: list[float] = []
    endpoint = _endpoint(applied, batch_timeout=0.05, batch_timeout_max=0.05)
    endpoint.handle([("info", message({"instance_id": f"vm-{i}"}, message_id=f"m{i}")) for i in range(1000)])
    assert applied == []


def test_every_oslo_attribute_used_is_present():
    assert oslo_internals.missing_internals() == []
    assert oslo_internals.missing_dispatcher_internals() == []


def test_a_moved_dispatcher_attribute_is_reported(monkeypatch):
    from oslo_messaging.notify import dispatcher

    monkeypatch.delattr(dispatcher.NotificationDispatcher, "_extract_user_message")
    assert oslo_internals.missing_dispatcher_internals() == ["NotificationDispatcher._extract_user_message"]


def test_no_other_module_reads_oslo_messages_itself():
    found = subprocess.run(
        ["grep", "-rlE", r"_extract_user_message|BatchNotificationDispatcher", "bridge", "streams"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert [path for path in found if path.endswith(".py")] == ["bridge/listener/oslo_internals.py"]


def test_the_installed_version_is_the_one_checked():
    # An upgrade must re-check the attributes and then update CHECKED_VERSIONS.
    installed = {name: metadata.version(name) for name in oslo_internals.CHECKED_VERSIONS}
    assert installed == oslo_internals.CHECKED_VERSIONS


def test_a_moved_attribute_is_reported(monkeypatch):
    from oslo_messaging._drivers import base

    def runner_without_the_attribute(self):  # what a version that fixed the window would look like
        return None

    monkeypatch.setattr(base.PollStyleListenerAdapter, "_runner", runner_without_the_attribute)
    assert oslo_internals.missing_internals() == [
        "PollStyleListenerAdapter._runner reads batch_timeout",
        "PollStyleListenerAdapter._runner polls with batch_size",
    ]


def test_no_other_module_sets_the_window():
    found = subprocess.run(
        ["grep", "-rlE", r"\.batch_timeout = |server\.listener\b", "bridge", "streams", "--include=*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert found == ["bridge/listener/oslo_internals.py"]


@contextlib.contextmanager
def fake_server(monkeypatch, endpoint, pool: str, window: float) -> Iterator[tuple[Any, Any, list]]:
    """An ordered batch listener on oslo's in-process fake:// transport (batches of 10), with every
    poll of its driver listener recorded as (batch_size, batch_timeout); stopped on the way out."""
    import oslo_messaging
    from oslo_config import cfg
    from oslo_messaging._drivers import impl_fake

    polls: list[tuple[int, float | None]] = []
    original = impl_fake.FakeListener.poll

    def recording_poll(self, timeout=None, batch_size=1, batch_timeout=None):
        polls.append((batch_size, batch_timeout))
        return original(self, timeout=timeout, batch_size=batch_size, batch_timeout=batch_timeout)

    monkeypatch.setattr(impl_fake.FakeListener, "poll", recording_poll)
    conf = cfg.ConfigOpts()
    conf([], project="eventfed-unit", default_config_files=[], default_config_dirs=[])
    oslo_messaging.set_transport_defaults(control_exchange="nova")
    transport = oslo_messaging.get_notification_transport(conf, url="fake://")
    target = oslo_messaging.Target(topic="notifications", exchange="nova")
    server = ordered_batch_listener(transport, [target], endpoint, pool, 10, window)
    try:
        yield server, transport, polls
    finally:
        if server.listener is not None:  # started
            server.stop()
            server.wait()
        transport.cleanup()


@pytest.mark.filterwarnings("ignore")
def test_a_running_server_polls_with_the_window_set(monkeypatch):
    with fake_server(monkeypatch, object(), "pool-w", 0.02) as (server, _transport, polls):
        assert not oslo_internals.set_batch_timeout(server, 0.03)  # not started: nothing to set
        server.start()
        assert oslo_internals.set_batch_timeout(server, 0.03)
        deadline = time.monotonic() + 10
        while (10, 0.03) not in polls and time.monotonic() < deadline:
            time.sleep(0.01)
    assert polls[0] == (10, 0.02)
    assert (10, 0.03) in polls


class ScriptedPoll:
    """A driver listener's batch poll: hands out what each call is scripted to find."""

    def __init__(self, *found: list[str]) -> None:
        self.found = list(found)
        self.calls: list[tuple[int, float | None]] = []

    def __call__(self, timeout=None, batch_size=1, batch_timeout=None):
        self.calls.append((batch_size, batch_timeout))
        return self.found.pop(0)[:batch_size] if self.found else []


def test_an_idle_lingering_poll_waits_for_a_first_notification_only():
    poll = ScriptedPoll([])
    assert oslo_internals.lingering_poll(poll, 0.2)(batch_size=500, batch_timeout=0.002) == []
    # One wait of idle_wait for a first notification, no window polled after nothing came.
    assert poll.calls == [(1, 0.2)]


def test_a_lingering_poll_gathers_company_for_the_window_after_the_first_notification():
    poll = ScriptedPoll(["m1"], ["m2", "m3"])
    assert oslo_internals.lingering_poll(poll, 0.2)(batch_size=500, batch_timeout=0.05) == ["m1", "m2", "m3"]
    assert poll.calls == [(1, 0.2), (499, 0.05)]


def test_a_lingering_poll_keeps_the_batch_size_and_a_window_oslo_would_read_as_none():
    poll = ScriptedPoll(["m1"], ["m2", "m3", "m4"])
    assert oslo_internals.lingering_poll(poll, 0.2)(batch_size=3, batch_timeout=0) == ["m1", "m2", "m3"]
    # A window of 0 would make oslo's helper wait until the batch is full.
    assert poll.calls == [(1, 0.2), (2, 0.2)]
    single = ScriptedPoll(["m1"], ["m2"])
    assert oslo_internals.lingering_poll(single, 0.2)(batch_size=1, batch_timeout=0.05) == ["m1"]
    assert single.calls == [(1, 0.2)]


class ScriptedArrivals:
    """An arrival wait: says whether each wait is scripted to see something arrive."""

    def __init__(self, *arrivals: bool) -> None:
        self.arrivals = list(arrivals)
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.arrivals.pop(0)


def test_a_quiet_wait_for_a_first_notification_never_polls_oslo():
    poll = ScriptedPoll(["m1"])
    arrivals = ScriptedArrivals(False)
    assert oslo_internals.lingering_poll(poll, 0.2, arrivals)(batch_size=500, batch_timeout=0.002) == []
    assert poll.calls == [] and arrivals.waits == [0.2]


def test_a_window_with_nothing_arriving_is_waited_out_without_polling_oslo_again():
    poll = ScriptedPoll(["m1"], ["m2"])
    arrivals = ScriptedArrivals(True, False)
    lingering = oslo_internals.lingering_poll(poll, 0.2, arrivals)
    assert lingering(batch_size=500, batch_timeout=0.002) == ["m1"]
    assert poll.calls == [(1, 0.2)] and arrivals.waits == [0.2, 0.002]


def test_a_window_in_which_something_arrives_polls_oslo_for_what_is_left_of_it():
    poll = ScriptedPoll(["m1"], ["m2", "m3"])
    lingering = oslo_internals.lingering_poll(poll, 0.2, lambda _seconds: True)
    assert lingering(batch_size=500, batch_timeout=0.05) == ["m1", "m2", "m3"]
    assert poll.calls[0] == (1, 0.2)
    assert poll.calls[1][0] == 499 and 0.001 <= poll.calls[1][1] <= 0.05


class _Nested:
    """An object with the given attributes (the AMQP listener's connection chain)."""

    def __init__(self, **attributes: object) -> None:
        self.__dict__.update(attributes)


def _amqp_listener(
    sock: object, read_buffer: bytes = b"", incoming: list | None = None, **listener: object
) -> _Nested:
    """A driver listener shaped as oslo.messaging 18.3 (ConnectionContext, rabbit Connection),
    kombu and py-amqp chain them: conn.connection.connection._connection._transport."""
    transport = _Nested(sock=sock, _read_buffer=read_buffer)
    amqp_connection = _Nested(_transport=transport)
    kombu_connection = _Nested(_connection=amqp_connection)
    rabbit_connection = _Nested(connection=kombu_connection)
    return _Nested(incoming=incoming or [], conn=_Nested(connection=rabbit_connection), **listener)


def test_the_arrival_wait_watches_the_connection_socket_and_what_was_read_already():
    import socket

    ours, rabbit = socket.socketpair()
    try:
        arrived = oslo_internals.arrival_wait(_amqp_listener(ours))
        started = time.monotonic()
        assert not arrived(0.05)
        assert time.monotonic() - started >= 0.04
        rabbit.sendall(b"frame")
        assert arrived(0.05)
        # Bytes py-amqp read already, and messages oslo parsed already, count as arrived.
        assert oslo_internals.arrival_wait(_amqp_listener(None, read_buffer=b"x"))(0.05)
        assert oslo_internals.arrival_wait(_amqp_listener(None, incoming=["m"]))(0.05)
    finally:
        ours.close()
        rabbit.close()


def test_an_arrival_wait_sends_the_queued_acknowledgements_between_its_slices_and_sees_a_stop():
    import socket

    class Operations:
        def __init__(self) -> None:
            self.processed = 0

        def process(self) -> None:
            self.processed += 1

    ours, rabbit = socket.socketpair()
    try:
        operations, stopping = Operations(), threading.Event()
        arrived = oslo_internals.arrival_wait(
            _amqp_listener(ours, _message_operations_handler=operations, _shutdown=stopping)
        )
        assert not arrived(0.03)
        # Slices of 1, 2, 4, 8, 16 ms, as oslo's own poll waits: the acknowledgements go out
        # between them, not once the wait is over.
        assert operations.processed >= 4
        stopping.set()
        started = time.monotonic()
        assert arrived(5.0) and time.monotonic() - started < 1.0
    finally:
        ours.close()
        rabbit.close()


def test_an_arrival_wait_that_cannot_find_the_socket_lets_oslo_poll():
    # A connection being re-established (no socket) or a library that moved it: oslo's own poll
    # waits the window, as it would without the arrival wait.
    assert oslo_internals.arrival_wait(_amqp_listener(None))(0.05)
    assert oslo_internals.arrival_wait(_Nested(incoming=[], conn=None))(0.05)


def test_the_arrival_wait_finds_the_socket_where_the_installed_libraries_keep_it():
    assert oslo_internals.missing_arrival_internals() == []


@pytest.mark.filterwarnings("ignore")
def test_a_lingering_server_hands_over_a_first_notification_and_its_company_together(monkeypatch):
    import oslo_messaging

    batches: list[list[int]] = []
    done = threading.Event()

    class Recorder:
        def handle(self, messages):
            batches.append([m["payload"]["seq"] for _, m in messages])
            if sum(map(len, batches)) >= 3:
                done.set()
            return oslo_messaging.NotificationResult.HANDLED

    # A window long enough that the three sends below fall in one batch once it starts at the first.
    with fake_server(monkeypatch, Recorder(), "pool-l", 0.5) as (server, transport, polls):
        assert not oslo_internals.linger(server, 0.05)  # not started: nothing to wrap
        server.start()
        assert oslo_internals.linger(server, 0.05)
        # The poll oslo began at start (its own window) ends first; the next ones linger.
        time.sleep(0.7)
        notifier = oslo_messaging.Notifier(
            transport, publisher_id="compute.h", driver="messagingv2", topics=["notifications"]
        )
        for seq in range(3):
            notifier.info({}, "compute.instance.update", {"seq": seq})
            time.sleep(0.05)
        assert done.wait(10)
    assert batches == [[0, 1, 2]]
    # While idle it waited in slices of idle_wait for a first notification, never for a window.
    assert (1, 0.05) in polls
    # One window after the first notification (what is left of it once the arrival wait, which
    # cannot see fake://'s socket, lets oslo poll).
    assert [p for p in polls if p[0] == 9 and 0.45 < p[1] <= 0.5] == [p for p in polls if p[0] == 9]
    assert len([p for p in polls if p[0] == 9]) == 1


def _steady(window: BatchWindow, rate: float, seconds: float = 3.0) -> float:
    """Notifications `1/rate` apart; each batch holds those arriving within its window."""
    now, current = 0.0, window.current
    while now < seconds:
        received = 1 + int(current * rate)
        now += received / rate
        current = window.observe(received, current, now)
    return current


def test_where_company_is_due_a_quiet_cloud_batch_waits_for_about_two_more():
    window = BatchWindow(0.002, 0.05, busy_rate=2000, company_wait=0.02)
    assert _steady(window, 100) == pytest.approx(0.02, rel=0.05)
    assert _steady(BatchWindow(0.002, 0.05, busy_rate=2000, company_wait=0.02), 300) == pytest.approx(
        2 / 300, rel=0.05
    )


def test_a_cloud_too_quiet_for_company_in_time_keeps_the_shortest_window():
    assert _steady(BatchWindow(0.002, 0.05, busy_rate=2000, company_wait=0.02), 10) == 0.002
    assert _steady(BatchWindow(0.002, 0.05, busy_rate=2000, company_wait=0.02), 40) == 0.002


def test_the_company_wait_never_shortens_a_busy_clouds_window():
    window = BatchWindow(0.002, 0.05, busy_rate=2000, company_wait=0.02)
    assert window.for_rate(1999) > window.for_rate(1000) > 0.02 >= window.for_rate(500)
    assert window.for_rate(5000) == 0.05


def test_a_company_wait_alone_makes_the_window_adaptive():
    assert BatchWindow(0.002, 0.002, busy_rate=2000, company_wait=0.02).adaptive
    assert not BatchWindow(0.002, 0.002, busy_rate=2000).adaptive
