"""A digest of every decision `streams.pipeline.Processor` makes over a fixed set of records, and
its cost per record: the check that a faster processor decides byte for byte as before.

    python -m bench.stream_digest [--records N] [--time] [--rounds R]

Prints one JSON object: a SHA-256 per scenario over every outcome (kind, reason, matched
subscriptions, state key, the event, the new state) and every output (topic, key, value bytes,
headers), in order. Nothing in it depends on the clock or the machine: the simulated cloud starts
at a fixed time, `now` advances with the records, message ids come from the seed.

Scenarios, over the same simulated lifecycles (bridge.simulator.novasim, legacy and versioned):
- ``example``: the example subscriptions (json, avro, ves), no registry, stuck timers short enough
  that actions raise and clear stuck alarms (a sweep every 200 records), plus records read again
  (replayed), the same notification again (duplicate), older copies under new message ids (stale),
  polled snapshots (same change, or news), malformed and empty records (dead);
- ``registry``: the same records with Schema Registry ids (Confluent framing), more subscriptions
  (a ves feed with its own reporting entity, filters on tenants, hosts and states), no timers.

``--time``: the "Processor.process alone" row of bench/stream.py: the example subscriptions, no
timers, records from bench.stream.make_records, a fresh processor and state per round; prints the
best and median µs per record over the rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.context import EXAMPLE_SUBSCRIPTIONS, VIM_ID
from bridge.simulator.novasim import SimulatedCloud, raw_record
from schemas.raw import POLLED_EVENT_TYPE
from streams import pipeline
from streams.subscriptions import Subscription, load_subscriptions

START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TOPICS = pipeline.Topics(events="events", dlq="dlq")
RAW_TOPIC = "raw"
# Short enough that the interleaved lifecycles leave actions without an end past their deadline.
STUCK_AFTER = {"default": 30.0, "DELETE": 1.0, "SHUT_DOWN": 0.3, "REBOOT": 0.6, "POWER_OFF": 2.0}
EXTRA_SUBSCRIPTIONS = """
  - name: ves-own-entity
    match: {events: ["*"], phases: [start, end, error, none]}
    sink: {type: kafka, topic: ves.entity, format: ves, ves: {reporting_entity_name: eventfed-bench}}
  - name: tenant-hosts
    match: {tenants: ["0*", "a*"], hosts: ["compute-[12]"], phases: [start, end]}
    sink: {type: kafka, topic: tenant.hosts, format: avro}
  - name: active-states
    match: {states: [ACTIVE, stopped], events: ["!UPDATE"], phases: [end, none]}
    sink: {type: kafka, topic: active.states, format: json}
"""


def lifecycles(vms: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """(instance id, notification) of `vms` interleaved lifecycles, on a fixed clock."""
    cloud = SimulatedCloud(seed=seed, start=START)
    per_vm = []
    for index in range(vms):
        fmt = "legacy" if index % 2 else "versioned"
        per_vm.append(list(cloud.varied_lifecycle(cloud.new_vm(index), index, fmt, False)))
    ordered = []
    position = 0
    while any(position < len(notes) for notes in per_vm):
        for notes in per_vm:
            if position < len(notes):
                ordered.append(notes[position])
        position += 1
    records = []
    for number, note in enumerate(ordered):
        message_id = str(uuid.UUID(int=(seed << 64) + number))
        value = raw_record(note, VIM_ID, START + timedelta(milliseconds=3 * number), message_id)
        records.append((note.instance_id, value))
    return records


def _vm_state_of(document: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    payload = document.get("payload") or {}
    data = payload.get("nova_object.data", payload)
    return (
        data.get("state"),
        data.get("task_state") or data.get("state_description") or None,
        data.get("host"),
    )


def _polled(
    instance_id: str, document: Mapping[str, Any], updated: datetime, vm_state: str
) -> dict[str, Any]:
    _, task_state, host = _vm_state_of(document)
    stamp = updated.strftime("%Y-%m-%dT%H:%M:%SZ")
    server = {
        "id": instance_id,
        "name": "vm",
        "tenant_id": "6f70656e737461636b20342065766572",
        "user_id": "admin",
        "metadata": {"role": "web"},
        "image": {"id": "155d900f-4e14-4e4c-a73d-069cbf4541e6", "links": []},
        "flavor": {"id": "1", "links": []},
        "created": stamp,
        "updated": stamp,
        "accessIPv4": "",
        "accessIPv6": "",
        "progress": 0,
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:power_state": 1,
        "OS-EXT-SRV-ATTR:host": host,
    }
    return {
        "event_type": POLLED_EVENT_TYPE,
        "publisher_id": f"eventfed-poll:{VIM_ID}",
        "payload": server,
        "message_id": f"poll-{instance_id}-{stamp}-{vm_state}",
        "timestamp": stamp,
        "priority": "INFO",
        "vim_id": VIM_ID,
        "received_at": updated.isoformat(),
    }


def feed(records: list[tuple[str, dict[str, Any]]]) -> Iterator[tuple[bytes | None, bytes | None, int]]:
    """(key, value, offset to read it at) of the records and their variations, in order."""
    offset = 0
    for number, (instance_id, document) in enumerate(records):
        key = instance_id.encode()
        value = json.dumps(document).encode()
        yield key, value, offset
        if number % 97 == 5:
            yield key, value, offset  # read again at its own offset: replayed
        if number % 89 == 7:
            offset += 1
            yield key, value, offset  # the same notification again: duplicate
        if number % 83 == 11 and number >= 300:
            late_id, late = records[number - 300]
            offset += 1
            yield late_id.encode(), json.dumps({**late, "message_id": f"late-{number}"}).encode(), offset
        if number % 61 == 13:
            vm_state = _vm_state_of(document)[0] or "active"
            moment = START + timedelta(milliseconds=3 * number)
            for polled_state in (vm_state, "active" if vm_state != "active" else "stopped"):
                offset += 1
                yield key, json.dumps(_polled(instance_id, document, moment, polled_state)).encode(), offset
        if number % 501 == 17:
            offset += 1
            yield key, value[: len(value) // 2], offset  # truncated: dead
        if number % 733 == 19:
            offset += 1
            yield key, None, offset
        if number % 409 == 23:
            offset += 1
            yield key, json.dumps({**document, "payload": {"instance_id": 5}}).encode(), offset
        offset += 1


def _outcome_text(outcome: pipeline.Outcome) -> bytes:
    parts: list[Any] = [
        outcome.kind,
        outcome.reason,
        outcome.matched,
        outcome.state_key,
        sorted(outcome.event.items()) if outcome.event is not None else None,
        outcome.new_state,
        [(o.topic, o.key, o.value, o.headers, o.partition) for o in outcome.outputs],
    ]
    return repr(parts).encode()


def run_scenario(
    records: list[tuple[str, dict[str, Any]]],
    subscriptions: list[Subscription],
    schema_ids: Mapping[str, int] | None,
    stuck_after: Mapping[str, float],
) -> dict[str, Any]:
    processor = pipeline.Processor(TOPICS, lambda: subscriptions, 600.0, schema_ids, stuck_after)
    state: dict[bytes, Mapping[str, Any]] = {}
    digest = hashlib.sha256()
    kinds: Counter[str] = Counter()
    outputs = 0
    base = START.timestamp()
    for count, (key, value, offset) in enumerate(feed(records)):
        now = base + count * 0.003
        outcome = processor.process(key, value, pipeline.Source(RAW_TOPIC, 0, offset), state.get, now)
        digest.update(_outcome_text(outcome))
        kinds[f"{outcome.kind} {outcome.reason}".strip()] += 1
        outputs += len(outcome.outputs)
        if outcome.new_state is not None and outcome.state_key is not None:
            state[outcome.state_key] = outcome.new_state
        if stuck_after and count % 200 == 199:
            for skey in sorted(state):
                while (expired := processor.expire(skey, state[skey], now)) is not None:
                    digest.update(_outcome_text(expired))
                    kinds[f"{expired.kind} {expired.reason}"] += 1
                    outputs += len(expired.outputs)
                    assert expired.new_state is not None
                    state[skey] = expired.new_state
    return {"sha256": digest.hexdigest(), "outcomes": dict(sorted(kinds.items())), "outputs": outputs}


def digests(vms: int, seed: int) -> dict[str, Any]:
    records = lifecycles(vms, seed)
    example_text = EXAMPLE_SUBSCRIPTIONS.read_text()
    example = load_subscriptions(example_text)
    more = load_subscriptions(example_text + EXTRA_SUBSCRIPTIONS)
    avro_topics = [TOPICS.events, *(s.sink.topic for s in more if s.sink.format == "avro")]
    schema_ids = {topic: 100 + i for i, topic in enumerate(avro_topics)}
    return {
        "records": len(records),
        "example": run_scenario(records, example, None, STUCK_AFTER),
        "registry": run_scenario(records, more, schema_ids, {}),
    }


def time_process(n: int, rounds: int) -> dict[str, Any]:
    """µs per record of bench/stream.py's one_pass (Processor.process alone)."""
    from bench.stream import make_records

    records = make_records(n, seed=202)
    subscriptions = load_subscriptions(EXAMPLE_SUBSCRIPTIONS.read_text())
    samples = []
    cpu_samples = []
    for _ in range(rounds):
        processor = pipeline.Processor(TOPICS, lambda: subscriptions, 600.0)
        state: dict[bytes, Mapping[str, Any]] = {}
        outputs: Counter[str] = Counter()
        now = time.time()
        started = time.perf_counter()
        cpu_started = time.process_time()
        for offset, (key, value, _, _) in enumerate(records):
            outcome = processor.process(key, value, pipeline.Source(RAW_TOPIC, 0, offset), state.get, now)
            for output in outcome.outputs:
                outputs[output.topic] += 1
            if outcome.new_state is not None and outcome.state_key is not None:
                state[outcome.state_key] = outcome.new_state
        samples.append((time.perf_counter() - started) / n * 1e6)
        # CPU time too: on a shared machine the wall clock also counts the time others held the core.
        cpu_samples.append((time.process_time() - cpu_started) / n * 1e6)
    return {
        "records": n,
        "best_us": round(min(samples), 2),
        "median_us": round(statistics.median(samples), 2),
        "rounds_us": [round(s, 2) for s in samples],
        "cpu_best_us": round(min(cpu_samples), 2),
        "cpu_median_us": round(statistics.median(cpu_samples), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--vms", type=int, default=1500, help="simulated VMs (about 13.5 records each)")
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--time", action="store_true", help="time Processor.process instead")
    parser.add_argument("--records", type=int, default=50_000, help="records timed")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = time_process(args.records, args.rounds) if args.time else digests(args.vms, args.seed)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
