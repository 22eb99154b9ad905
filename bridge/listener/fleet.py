"""`eventfed listen` for the VIMs of a VIMs file (bridge.vims): one Listener per VIM, one process.

Each VIM keeps what makes the single-VIM listener safe: its own oslo transport and connection to
its own RabbitMQ, its own connection attempts and backoff (bridge.listener.connect), one batch at
a time in arrival order, acked only once Kafka has every record of it (bridge.listener.endpoint).
What the VIMs share is the Kafka producer, through a lane each (bridge.shared_producer): a VIM's
batch waits only for its own delivery reports, and holds at most its share of the process's
in-flight bytes. So a VIM whose RabbitMQ is down, refuses the login, is slow or floods holds up
only its own threads and its own share.

The file is read again every VIMS_RELOAD_SECONDS (bridge.vim_fleet). A VIM added starts; a VIM
removed stops after its batch in hand is written and acked; a VIM whose entry changed is stopped
the same way before its new listener starts (two consumers of one pool queue would split a VM's
notifications between them, out of order); the others are not touched. A file that cannot be
used is rejected whole.

`/readyz` is ready while any VIM consumes (and Kafka answers), and names the VIMs that do not,
with why: those still connecting, and those whose connection was lost after they started
consuming (oslo reconnects those by itself, silently; their live connection state is read at
every probe, and one thread for the whole process finds out why with a login of its own).
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Producer

from bridge.deployable import CannotStart
from bridge.durability import DurabilityMismatch
from bridge.gc_thresholds import settle_after_start_up
from bridge.kafka_config import explain_tls_failure, last_transport_error, shared_producer_config
from bridge.listener import connect, endpoint, oslo_internals
from bridge.listener.service import Listener, StartupReadiness, check_topics
from bridge.log_context import bind_vim, unbind_vim, vim_bound
from bridge.settings import ListenerSettings, VimListenerSettings
from bridge.shared_producer import SharedProducer
from bridge.vim_fleet import VimFleet, VimFleetDeployable
from bridge.vims import listener_settings, readiness_of

LOG = logging.getLogger(__name__)

# The wait for a batch's first notification, per VIM (bridge.listener.service.IDLE_WAIT_SECONDS):
# each idle VIM's polling thread wakes once per wait, so a process of many VIMs waits longer. It
# bounds how long an idle VIM keeps a handled batch unacked and how long its stop takes, not the
# latency of a notification, which ends the wait at once.
FLEET_IDLE_WAIT_SECONDS = 1.0
# How often the process looks at its VIMs' connections (attribute reads, no I/O: about 1 us a VIM).
CONNECTION_CHECK_SECONDS = 2.0
# How often a VIM whose connection is lost logs in again to say why, off the probe's path.
WHY_LOST_SECONDS = 15.0
# oslo's transport defaults (the control exchange) are process-wide, read as a transport is made.
_BUILD_LOCK = threading.Lock()


class VimRun:
    """One VIM's listener in the process: built, connected and stopped in threads of its own."""

    def __init__(self, settings: VimListenerSettings, shared: SharedProducer, idle_wait: float) -> None:
        self.settings = settings
        self.vim = settings.vim_id
        self._shared = shared
        self._idle_wait = idle_wait
        self.listener: Listener | None = None
        self.fatal = ""
        # Why the connection is lost, once found out (None: not lost, or not found out yet).
        self.lost: str | None = None
        self._lost_checked_at = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, after: threading.Thread | None = None) -> None:
        """Build and connect, in a thread of its own; `after`: a stop to wait for first."""
        self._thread = threading.Thread(target=self._run, args=(after,), name=f"vim-{self.vim}", daemon=True)
        self._thread.start()

    def _run(self, after: threading.Thread | None) -> None:
        bind_vim(self.vim)
        try:
            if after is not None:
                after.join()
            if self._stopping.is_set():
                return
            try:
                with _BUILD_LOCK:
                    self.listener = Listener(self.settings, self._shared.lane(self.vim), self._idle_wait)
            except Exception as exc:
                self.fatal = f"cannot start: {exc}"
                LOG.error("vim %s: %s", self.vim, self.fatal)
                return
            if self._stopping.is_set():
                return
            try:
                if self.listener.connect():
                    # oslo's polling thread logs its reconnections: they are about this VIM.
                    oslo_internals.in_polling_thread(self.listener.server, lambda: bind_vim(self.vim))
            except DurabilityMismatch as exc:
                self.fatal = str(exc)
                LOG.error("vim %s stopped: %s", self.vim, exc)
        finally:
            unbind_vim()

    def stop(self, forget: bool) -> threading.Thread:
        """Stop after the batch in hand (written to Kafka, then acked); the thread doing it.
        `forget`: the VIM is no longer served, its metric series go too."""
        self._stopping.set()
        stopper = threading.Thread(
            target=self._stop, args=(forget,), name=f"vim-stop-{self.vim}", daemon=True
        )
        stopper.start()
        return stopper

    def _stop(self, forget: bool) -> None:
        bind_vim(self.vim)
        try:
            # A connection attempt ends at its next wait once the listener's stop is set. A thread
            # whose Python code has ended can stay "alive" while the interpreter tears its state
            # down (seen after refused connection attempts): off `enumerate()` it is done with us.
            while (
                self._thread is not None and self._thread.is_alive() and self._thread in threading.enumerate()
            ):
                if self.listener is not None:
                    self.listener.stop_event.set()
                self._thread.join(0.2)
            listener = self.listener
            if listener is not None:
                if listener.consuming:
                    listener.stop()
                else:
                    listener.stop_event.set()
                    listener.transport.cleanup()
            self._shared.close_lane(self.vim)
            if forget:
                endpoint.forget_vim(self.vim)
                connect.forget_vim(self.vim)
            LOG.info("stopped listening for vim %s", self.vim)
        except Exception:
            LOG.exception("stopping vim %s failed", self.vim)
        finally:
            unbind_vim()

    def state(self) -> tuple[bool, str]:
        """(consuming, why not)."""
        if self.fatal:
            return False, self.fatal
        listener = self.listener
        if listener is None:
            return False, "starting"
        if not listener.consuming:
            problem = listener.connector.problem
            return False, problem.reason if problem is not None else "connecting to RabbitMQ"
        if listener.connection_lost():
            return False, self.lost or "connection to RabbitMQ lost: reconnecting"
        return True, ""

    def check_connection(self, now: float) -> None:
        """Notes a lost connection with why (a login of our own, every WHY_LOST_SECONDS while it
        lasts), and its return."""
        listener = self.listener
        if listener is None or not listener.consuming or self._stopping.is_set():
            return
        with vim_bound(self.vim):
            if not listener.connection_lost():
                if self.lost is not None:
                    LOG.info("vim %s: connection to RabbitMQ back, consuming again", self.vim)
                    self.lost = None
                return
            if self.lost is not None and now - self._lost_checked_at < WHY_LOST_SECONDS:
                return
            self._lost_checked_at = now
            lost = f"connection to RabbitMQ lost: {listener.why_lost()}"
            if lost != self.lost:
                LOG.error("vim %s: %s; oslo reconnects meanwhile, not consuming", self.vim, lost)
            self.lost = lost


class ListenerFleet(VimFleet[VimListenerSettings, VimRun]):
    """The running VIMs' listeners, on one shared producer."""

    def __init__(self, shared: SharedProducer, idle_wait: float = FLEET_IDLE_WAIT_SECONDS) -> None:
        super().__init__(lambda settings: VimRun(settings, shared, idle_wait))

    def check_connections(self) -> None:
        now = time.monotonic()
        for run in list(self.runs.values()):
            run.check_connection(now)


class ListenerFleetDeployable(VimFleetDeployable[ListenerSettings, VimListenerSettings]):
    """`eventfed listen` with a VIMs file, in the deployable skeleton (bridge.deployable)."""

    name = "listener"
    work_in_hand = "batch"

    def __init__(self, settings: ListenerSettings) -> None:
        missing = oslo_internals.missing_dispatcher_internals()
        if missing:
            LOG.error(
                "cannot start: this oslo.messaging lacks what eventfed relies on: %s", ", ".join(missing)
            )
            raise CannotStart(2)
        super().__init__(settings, lambda entries: listener_settings(settings, entries))
        self.readiness = StartupReadiness()
        self.shared: SharedProducer | None = None
        self.fleet: ListenerFleet | None = None
        self._kafka_checked_at = 0.0
        self._kafka_ok: tuple[bool, str] = (False, "not checked yet")

    def start(self) -> None:
        self.readiness.stage = "checking the raw and dead-letter topics"
        check_topics(self.settings)
        settings = self.settings
        producer = Producer(
            shared_producer_config(
                settings, "listen", settings.delivery_timeout, settings.vims_inflight_bytes
            )
        )
        self.shared = SharedProducer(producer, settings.vims_inflight_bytes // 2).start()
        self.fleet = ListenerFleet(self.shared)
        LOG.info(
            "listening for %d VIMs of %s -> kafka %s topic %s",
            len(self.source.current),
            settings.vims_file,
            settings.kafka_bootstrap_servers,
            settings.raw_topic,
        )
        self.fleet.apply(self.source.current)
        self.readiness.check = self._readiness

    def _readiness(self) -> tuple[bool, str]:
        assert self.fleet is not None
        kafka_ok, kafka_reason = self._kafka()
        ready, reason = readiness_of(self.fleet.states(), "consuming")
        if not kafka_ok:
            return False, f"{kafka_reason}; {reason}"
        return ready, reason

    def _kafka(self) -> tuple[bool, str]:
        assert self.shared is not None
        now = time.monotonic()
        if now - self._kafka_checked_at > 5:
            self._kafka_checked_at = now
            try:
                self.shared.producer.list_topics(self.settings.raw_topic, timeout=3)
                self._kafka_ok = (True, "")
            except Exception as exc:
                refused = explain_tls_failure(last_transport_error(), self.settings)
                self._kafka_ok = (False, f"kafka unreachable: {refused or exc}")
        return self._kafka_ok

    def work(self) -> int:
        """Serve the VIMs until SIGTERM or SIGINT, reloading the VIMs file."""
        assert self.fleet is not None
        settle_after_start_up()
        watch = threading.Thread(target=self._watch, name="vims-watch", daemon=True)
        watch.start()
        return self.reload_until_stopped(self.fleet)

    def _watch(self) -> None:
        assert self.fleet is not None
        while not self.stop_requested.wait(CONNECTION_CHECK_SECONDS):
            self.fleet.check_connections()

    def drain(self) -> None:
        if self.fleet is not None:
            self.fleet.stop_all()
        if self.shared is not None:
            left = self.shared.stop(self.settings.delivery_timeout)
            if left:
                LOG.warning(
                    "%d records left unconfirmed by Kafka at exit (their notifications stay in RabbitMQ)",
                    left,
                )
