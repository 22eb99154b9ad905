"""The stream worker's timers, each a named function: offsets committed, stalled partitions read,
health observed, deleted VMs expired, stuck actions raised, measurement intervals closed, the
fleet merge ticked, subscriptions reloaded."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException

from bridge.gc_thresholds import WORKER_THRESHOLDS, settle_after_start_up
from bridge.settings import StreamSettings
from streams.codecs import RegistrationError
from streams.faust_internals import in_recovery
from streams.fleet_merge import TICK_KEY, FleetMerger, tick
from streams.registration import Registrar, registry_backoff
from streams.routing import Output
from streams.runner import COMMIT_INTERVAL_SECONDS, BatchRunner
from streams.subscription_source import SubscriptionSource

if TYPE_CHECKING:
    from streams.app import StreamHealth

LOG = logging.getLogger(__name__)


def subscription_reloader(
    settings: StreamSettings,
    subscriptions: SubscriptionSource,
    health: StreamHealth,
    registrar: Registrar | None,
) -> Callable[[], Awaitable[None]]:
    """The timer that puts a changed subscriptions file in force, once its topics are ready;
    retried with backoff while they cannot be made ready, the previous rules staying in force."""
    from streams.app import prepare_sinks

    backoff = registry_backoff()
    retry_at = 0.0

    async def reload_subscriptions() -> None:
        nonlocal retry_at
        if time.monotonic() < retry_at:
            return
        pending = subscriptions.read_if_changed()
        if pending is None:
            # The file is what is in force (or a version that does not validate, which is logged).
            health.problem = None
            return
        # A new subscription's topic must exist, and with a registry have its subject, before
        # the first event is sent to it: the new rules go in force only once they do.
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, prepare_sinks, settings, pending.subscriptions, registrar
            )
        except (KafkaException, TimeoutError, RegistrationError) as exc:
            reason = exc.args[0] if isinstance(exc, KafkaException) else str(exc) or "no answer in time"
            health.problem = f"new subscriptions not in force: {reason}"
            delay = backoff.next_delay()
            LOG.error(
                "new subscriptions not in force, the previous ones stay; retrying in %.1fs: %s",
                delay,
                reason,
            )
            retry_at = time.monotonic() + delay
            return
        retry_at = 0.0
        backoff.reset()
        health.problem = None
        subscriptions.apply(pending)

    return reload_subscriptions


class WorkerTimers:
    """What the worker does on a clock, against its Faust app and batch runner."""

    def __init__(
        self,
        app: Any,
        settings: StreamSettings,
        runner: BatchRunner,
        health: StreamHealth,
        reload_subscriptions: Callable[[], Awaitable[None]],
        merger: FleetMerger | None = None,
    ) -> None:
        self._app = app
        self._merger = merger
        self.settings = settings
        self._runner = runner
        self._health = health
        self.reload_subscriptions = reload_subscriptions
        self._settled = False

    def assigned_raw(self) -> set[Any]:
        """The raw topic's partitions this worker owns as their active (not standby) reader."""
        return {tp for tp in self._app.assignor.assigned_actives() if tp.topic == self.settings.raw_topic}

    async def commit_written(self) -> None:
        await self._runner.commit_written()

    async def fill_stalled_partitions(self) -> None:
        # Not while recovering: the raw partitions are paused, and their positions are reset after.
        if in_recovery(self._app):
            return
        await self._runner.fill_stalled_partitions(self.assigned_raw(), time.monotonic())

    async def observe_health(self) -> None:
        # Read Faust's state here, on its own event loop; the probe thread only reads the result.
        if in_recovery(self._app):
            self._health.observed = (False, "recovering state", time.monotonic())
            return
        if not self._settled:
            # Once, when the table is first recovered: later recoveries (after a rebalance) only
            # add their partitions' share.
            self._settled = True
            settle_after_start_up(WORKER_THRESHOLDS)
        actives = self._app.assignor.assigned_actives()
        self._health.observed = (True, f"{len(actives)} partitions active", time.monotonic())

    async def expire_deleted(self) -> None:
        await self._runner.remove_expired_deletes(
            {tp.partition for tp in self.assigned_raw()}, time.time(), self.settings.tombstone_seconds
        )

    async def raise_stuck_actions(self) -> None:
        # Not while the table is recovering: a start whose end is not yet read back from the
        # changelog would look stuck.
        if in_recovery(self._app):
            return
        raised = await self._runner.raise_stuck_actions(
            {tp.partition for tp in self.assigned_raw()}, time.time()
        )
        if raised:
            LOG.info("raised %d stuck-action alarms", raised)

    async def close_measurements(self) -> None:
        # Not while recovering: an interval's samples may still be on their way back.
        if in_recovery(self._app):
            return
        await self._runner.sweeps.close_measurements(self.assigned_raw(), time.time())

    async def tick_fleet_merge(self) -> None:
        """A tick to each fleet-parts partition this worker merges whose books are due: the merge
        acts on them when it reads the tick (a Faust table is written by its agent)."""
        if self._merger is None or in_recovery(self._app):
            return
        topic = self.settings.fleet_parts_topic
        owned = {tp.partition for tp in self._app.assignor.assigned_actives() if tp.topic == topic}
        now = time.time()
        due = self._merger.due(owned, now)
        if due:
            ticks = [Output(topic, TICK_KEY, tick(now), [], partition) for partition in sorted(due)]
            await self._runner.writer.write_all(ticks)


def register_timers(app: Any, timers: WorkerTimers) -> None:
    settings = timers.settings
    app.timer(interval=settings.subscriptions_reload_seconds)(timers.reload_subscriptions)
    app.timer(interval=COMMIT_INTERVAL_SECONDS)(timers.commit_written)
    app.timer(interval=1.0)(timers.fill_stalled_partitions)
    app.timer(interval=1.0)(timers.observe_health)
    app.timer(interval=max(1.0, min(60.0, settings.tombstone_seconds / 4)))(timers.expire_deleted)
    app.timer(interval=settings.stuck_check_seconds)(timers.raise_stuck_actions)
    app.timer(interval=settings.measurement_check_seconds)(timers.close_measurements)
    app.timer(interval=settings.measurement_check_seconds)(timers.tick_fleet_merge)
