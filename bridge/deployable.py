"""The one start-up and shut-down skeleton of every deployable: listen, poll, stream and api.

`run_deployable` takes a deployable from settings to exit status, the same way for each:

1. Settings, read once from the environment and the settings file. A bad value raises
   SettingsError, which the CLI turns into one line and exit status 2.
2. Logging (JSON lines) and `eventfed_build_info`.
3. `build(settings)`: the deployable's objects, without waiting on any broker. One that cannot
   start at all (a library without the internals it relies on, an unreadable subscriptions file)
   says why and raises CannotStart with its exit status.
4. Liveness before readiness: the health server (/healthz, /readyz, /metrics on the metrics port)
   starts before anything waits on a broker. Checking topics can wait on an unreachable Kafka for
   the admin timeout, and a probe that finds no endpoint meanwhile would restart a process that
   is fine; /readyz says what start-up is doing.
5. `start()`: what must be done before working (topics checked or created, schemas registered);
   an exit status returned here ends the process.
6. Signals: from here on SIGTERM and SIGINT call `request_stop`, which asks the work to end after
   what is in hand. Before, nothing is in hand, and the default action ends the process at once.
   A deployable whose own loop handles them (Faust's worker) says so with `handles_signals`.
7. `work()`: until stopped; its exit status is the process's.
8. `drain()`, however start or work ended: finish what is in hand (the last batch written to
   Kafka and acknowledged), flush and close the clients. Then the health server stops, and the
   log says the deployable stopped (unless it never got to work: it has said why, in one line).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Protocol, TypeVar

from bridge.health import HealthServer, ReadinessCheck, register_build_info
from bridge.logs import setup_logging
from bridge.settings import CommonSettings, load

LOG = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

SettingsT = TypeVar("SettingsT", bound=CommonSettings)


class CannotStart(Exception):
    """The deployable cannot start; it has logged why. `status`: the process's exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Deployable(Protocol):
    # What the log calls it when it stops ("listener stopped").
    name: str
    # True when the deployable's own loop handles SIGTERM and SIGINT.
    handles_signals: bool

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for /readyz: from the first second, saying what start-up is doing."""
        ...

    def start(self) -> int | None:
        """Prepare to work; an exit status to stop here, None to go on."""
        ...

    def work(self) -> int:
        """Work until stopped; the exit status."""
        ...

    def request_stop(self, signum: int) -> None:
        """Called from the signal handler: end the work after what is in hand."""
        ...

    def drain(self) -> None:
        """Finish what is in hand, flush and close; called however start or work ended."""
        ...


def run_deployable(
    command: str,
    settings_class: type[SettingsT],
    build: Callable[[SettingsT], Deployable],
    serve_health: bool = True,
) -> int:
    """Run the deployable `build` makes from the settings, in the order above; its exit status.

    serve_health: False for a deployable that serves its own health endpoints (the API, on its
    own port and registry)."""
    settings = load(settings_class)
    setup_logging(settings, command)
    if serve_health:
        register_build_info(command)
    try:
        deployable = build(settings)
    except CannotStart as refused:
        return refused.status
    health = None
    if serve_health and settings.metrics_port:
        health = _start_health(settings, deployable.readiness)
    worked = False
    try:
        status = deployable.start()
        if status is not None:
            return status
        if not deployable.handles_signals:
            _stop_on_signals(deployable)
        worked = True
        return deployable.work()
    finally:
        try:
            deployable.drain()
        finally:
            if health is not None:
                health.stop()
        # A deployable that could not start has said why, in one line.
        if worked:
            LOG.info("%s stopped", deployable.name)


def _start_health(settings: CommonSettings, readiness: ReadinessCheck) -> HealthServer:
    return HealthServer(settings.metrics_host, settings.metrics_port, readiness).start()


def _stop_on_signals(deployable: Deployable) -> None:
    def request_stop(signum: int, _frame: FrameType | None) -> None:
        deployable.request_stop(signum)

    for handled in STOP_SIGNALS:
        signal.signal(handled, request_stop)
