"""Periodic passes over the stream worker's state table: the stuck alarms now due, and the
deleted VMs whose retention passed. Each pass goes SWEEP_SLICE VMs at a time, each slice decided
under the runner's write lock and written like a batch (outputs, then states), with batches running
in between: a sweep of 100,000 VMs in one go held the worker for about half a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.state import is_flow_key, source_partition
from streams import metrics, pipeline
from streams.batch_decisions import BatchDecisions
from streams.fleet import count_statuses, partition_parts
from streams.metering import interval_start

if TYPE_CHECKING:
    from streams.runner import BatchRunner

LOG = logging.getLogger(__name__)
# Fleet intervals a worker emits at most in one go, catching up.
FLEET_CATCH_UP = 2


@dataclass(frozen=True, slots=True)
class FleetTopic:
    """The fleet-parts topic, its partitions, and the raw topic's partitions."""

    topic: str
    partitions: int
    raw_partitions: int


def _statuses_by_partition(
    states: Mapping[bytes, Any], partitions: set[int]
) -> dict[int, dict[str, dict[str, int]]]:
    grouped: dict[int, list[Mapping[str, Any]]] = {}
    for value in states.values():
        partition = source_partition(value) if value is not None else None
        if partition in partitions:
            grouped.setdefault(partition, []).append(value)
    return {partition: count_statuses(values) for partition, values in grouped.items()}


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# State records looked at per hold of the write lock by a sweep: about 10 ms of the event loop.
SWEEP_SLICE = 2_000


class TableSweeps:
    """The sweeps of one batch runner's table, on the partitions the worker owns."""

    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner
        # Where the fleet parts go (None: no fleet figures).
        self.fleet: FleetTopic | None = None
        self._started_at = time.time()
        # The raw partitions' ends when the worker took them (per consumer generation), and the
        # generation whose records up to those ends are handled.
        self._ends: dict[Any, int] = {}
        self._ends_generation: int | None = None
        self._caught_up_generation: int | None = None

    async def remove_expired_deletes(self, active_partitions: set[int], now: float, retention: float) -> int:
        """Tombstone deleted VMs whose retention passed, on the partitions this worker owns."""

        def decide(keys: Sequence[bytes], job: BatchDecisions) -> None:
            for key in keys:
                value = self._runner.state.get(key)
                if (
                    value is None
                    or key in self._runner.pending_states
                    or not pipeline.tombstone_due(value, now, retention)
                ):
                    continue
                partition = source_partition(value)
                if partition is None or partition in active_partitions:
                    job.states[key] = (partition, None)

        removed = await self._sweep(decide)
        metrics.TOMBSTONES.inc(removed)
        metrics.STATE_SIZE.set(len(self._runner.state))
        return removed

    async def raise_stuck_actions(self, active_partitions: set[int], now: float) -> int:
        """Raise the stuck alarms now due, on the partitions this worker owns; how many.

        Each is decided against the state the VM will have once the batches in flight are
        written, and goes through the same ordered writes as a batch: its outputs, then its state.
        """
        processor = self._runner.processor

        def expire(key: bytes, value: Mapping[str, Any], partition: int | None) -> pipeline.Outcome | None:
            if partition is not None and not processor.fleet_flow.loaded(partition):
                self._runner.load_flow(partition)
            return processor.expire(key, value, now)

        return await self._sweep(self._each_owned_vm(active_partitions, expire, stage_flow=True))

    async def close_measurements(self, assigned: set[Any], now: float) -> int:
        """Emit the measurement intervals now due of the VMs on the raw partitions this worker
        owns (`assigned`, topic-partitions), then the fleet figures of each interval closed since
        the last call; how many VMs had intervals closed. Each VM goes through the same ordered
        writes as a batch: its measurement events, then its state without the intervals.

        Not before the worker has handled what its partitions held when it took them: a worker
        starting (or taking partitions over) after an interval's grace period would otherwise
        close it before reading the samples still waiting for it, and drop them as late."""
        if not await self._caught_up(assigned):
            return 0
        active_partitions = {tp.partition for tp in assigned}
        processor = self._runner.processor

        def close(key: bytes, value: Mapping[str, Any], partition: int | None) -> pipeline.Outcome | None:
            return processor.close_measurements(key, value, now)

        started = time.monotonic()
        # Without a measurement feed no sample is kept: no VM has an interval to close.
        decide = self._each_owned_vm(active_partitions, close, stage_flow=False)
        closed = await self._sweep(decide) if processor.measuring() else 0
        await self._emit_fleet(active_partitions, now)
        metrics.MEASUREMENT_SECONDS.observe(time.monotonic() - started)
        return closed

    def _each_owned_vm(
        self,
        active_partitions: set[int],
        outcome_of: Callable[[bytes, Mapping[str, Any], int | None], pipeline.Outcome | None],
        stage_flow: bool,
    ) -> Callable[[Sequence[bytes], BatchDecisions], None]:
        """A sweep's decision (see _sweep) for each VM on the partitions this worker owns:
        `outcome_of(key, state, raw partition)`, given the state the VM will have once the batches
        in flight are written; an outcome with a new state is written with its outputs.
        `stage_flow`: the outcomes count in the fleet flow, whose records are written with them."""
        pending = self._runner.pending_states

        def decide(keys: Sequence[bytes], job: BatchDecisions) -> None:
            for key in keys:
                value = pending.get(key, self._runner.state.get(key))
                if value is None:
                    continue
                partition = source_partition(value)
                if partition is not None and partition not in active_partitions:
                    continue
                outcome = outcome_of(key, value, partition)
                if outcome is None or outcome.new_state is None:
                    continue
                job.outputs.extend(outcome.outputs)
                job.outcomes.append(outcome)
                pending[key] = outcome.new_state
                job.states[key] = (partition, outcome.new_state)
            if stage_flow:
                self._runner.stage_flow(job)

        return decide

    async def _caught_up(self, assigned: set[Any]) -> bool:
        """Whether every raw record of `assigned` written before this assignment was handled."""
        runner = self._runner
        generation = runner.current_generation()
        if self._caught_up_generation == generation or not assigned:
            return self._caught_up_generation == generation
        if self._ends_generation != generation:
            try:
                self._ends = await runner.reader.log_ends(assigned)
            except Exception as exc:
                LOG.warning("cannot read the raw partitions' ends; intervals close later: %r", exc)
                return False
            self._ends_generation = generation
        ledger = runner.ledger
        if ledger.unknown(assigned) or any(ledger.expected(tp) < self._ends.get(tp, 0) for tp in assigned):
            return False
        self._caught_up_generation = generation
        return True

    async def _emit_fleet(self, active_partitions: set[int], now: float) -> None:
        """Each owned raw partition's parts of every fleet interval closed since it last sent
        one (streams.fleet, step 2): its parts and manifests, then its flow record with the
        interval closed, written like a batch (outputs, then states). A crash between the two
        sends them again, which the merge takes as it took them the first time."""
        runner, fleet = self._runner, self.fleet
        processor = runner.processor
        if fleet is None or not processor.measuring():
            return
        interval, grace = processor.measurement_interval, processor.measurement_grace
        last_due = interval_start(now - grace, interval) - interval
        # A partition that never sent a part: from the interval in progress when this worker
        # started (events before it were counted by no one this worker can ask).
        never_sent = interval_start(self._started_at, interval) - interval
        # After a pause (the event loop held, the clock stepped), the last few intervals only.
        oldest = last_due - FLEET_CATCH_UP * interval
        flow = processor.fleet_flow
        generation = runner.current_generation()
        async with runner.write_lock:
            if not runner.accepts(generation):
                return
            for partition in active_partitions:
                if not flow.loaded(partition):
                    runner.load_flow(partition)
            starts = {
                partition: range(
                    max(oldest, (flow.through(partition) or never_sent) + interval), last_due + 1, interval
                )
                for partition in sorted(active_partitions)
            }
            if not any(starts.values()):
                return
            statuses = _statuses_by_partition({**runner.state, **runner.pending_states}, set(starts))
            job = BatchDecisions(started=time.monotonic())
            parts: list[pipeline.Output] = []
            manifests: list[pipeline.Output] = []
            for partition, due in starts.items():
                for start in due:
                    flows = flow.take(partition, start)
                    made, manifest = partition_parts(
                        start, interval, partition, fleet.raw_partitions, statuses.get(partition, {}), flows
                    )
                    parts.extend(
                        pipeline.Output(fleet.topic, part["vim_id"].encode(), _json(part), [])
                        for part in made
                    )
                    # To every partition of the merge: each learns that this raw partition is in.
                    manifests.extend(
                        pipeline.Output(fleet.topic, b"manifest", _json(manifest), [], merge_partition)
                        for merge_partition in range(fleet.partitions)
                    )
            # The parts confirmed before the manifests are written, so that a merge that has the
            # manifest of a raw partition has its parts too.
            parts_job = BatchDecisions(started=time.monotonic())
            parts_job.outputs.extend(parts)
            tasks = [runner.send(parts_job)]
            job.outputs.extend(manifests)
            runner.stage_flow(job)
            tasks.append(runner.send(job))
        await asyncio.wait(tasks)
        for task in tasks:
            task.result()
        metrics.FLEET_PARTS.inc(len(parts))

    async def _sweep(self, decide: Callable[[Sequence[bytes], BatchDecisions], None]) -> int:
        """Goes over the state table SWEEP_SLICE keys at a time, each slice decided under the
        write lock and written like a batch; how many states it wrote.

        The batches run between the slices: a sweep of 100,000 VMs in one go held the worker for
        about half a second. A VM added meanwhile waits for the next sweep; a rebalance ends this
        one (the partitions it was given may no longer be this worker's). The count leaves out
        the fleet flow records written with the VMs' states.
        """
        generation = self._runner.current_generation()
        keys = list(self._runner.state.keys())
        written = 0
        for start in range(0, len(keys), SWEEP_SLICE):
            async with self._runner.write_lock:
                if not self._runner.accepts(generation):
                    break
                job = BatchDecisions(started=time.monotonic())
                decide(keys[start : start + SWEEP_SLICE], job)
                task = self._runner.send(job) if job.states else None
            if task is None:
                await asyncio.sleep(0)
                continue
            await asyncio.wait([task])
            task.result()
            written += sum(not is_flow_key(key) for key in job.states)
        return written
