"""`eventfed stream` against the real Kafka: routing, formats, ordering, reloads, crashes, scale-out."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest

from bridge.simulator.novasim import SimulatedCloud, raw_record
from streams import codecs
from tests.support.kafka import headers_of
from tests.support.processes import EVENTFED
from tests.support.stream import StreamRun

pytestmark = pytest.mark.integration

VIM = "owner_region-a"

SUBSCRIPTIONS = """
subscriptions:
  - name: closed-loop
    match:
      events: [DELETE, PAUSE, POWER_OFF, REBUILD, SHUT_DOWN, SOFT_DELETE]
    sink: {type: kafka, topic: "test.sub.closed.{u}", format: json}
  - name: power-avro
    match:
      events: ["POWER_*"]
      phases: [start, end]
    sink: {type: kafka, topic: "test.sub.power.{u}", format: avro}
"""


@pytest.fixture
def stream_run(tmp_path, unique, kafka_bootstrap):
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS)
    yield run
    run.stop_all()


def lifecycle_records(cloud: SimulatedCloud, vms: int, fmt: str = "both") -> list[tuple[str, dict]]:
    records: list[tuple[str, dict]] = []
    streams = []
    for i in range(vms):
        vm = cloud.new_vm(i)
        vm_fmt = fmt if fmt != "both" else ("legacy" if i % 2 else "versioned")
        streams.append(list(cloud.lifecycle(vm, vm_fmt)))
    # Interleave the VMs' notifications the way a busy cloud does; each VM keeps its own order.
    while any(streams):
        for notes in streams:
            if notes:
                note = notes.pop(0)
                records.append((note.instance_id, raw_record(note, VIM, cloud.tick())))
    return records


def expected_routing(records: list[tuple[str, dict]]) -> dict[str, Counter]:
    """Which (instance, event_type) pairs each subscription should receive, from the spec."""
    closed = {"delete", "pause", "power_off", "rebuild", "shutdown", "soft_delete"}
    out: dict[str, Counter] = {"closed": Counter(), "power": Counter()}
    for key, record in records:
        parts = record["event_type"].split(".")
        action, phase = parts[-2], parts[-1]
        if action in closed and phase in ("end", "error"):
            out["closed"][(key, record["event_type"])] += 1
        if action in ("power_on", "power_off") and phase in ("start", "end"):
            out["power"][(key, record["event_type"])] += 1
    return out


def test_health_and_metrics_are_on_the_metrics_port_not_faust_s_web_port(stream_run):
    import urllib.error
    import urllib.request

    proc = stream_run.start()
    for path in ("/healthz", "/readyz", "/metrics"):
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}{path}", timeout=5) as response:
            assert response.status == 200, path
    # EVENTFED_WEB_PORT is Faust's own web server: it has no /readyz of eventfed's.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{proc.web_port}/readyz", timeout=5)
    assert refused.value.code == 404


def test_samples_flow_to_the_subscriptions_they_match_in_their_format(stream_run):
    u = stream_run.unique
    cloud = SimulatedCloud(seed=1)
    records = lifecycle_records(cloud, 6)
    stream_run.start()
    stream_run.send(records)
    expected = expected_routing(records)
    closed = stream_run.read(f"test.sub.closed.{u}", expected=sum(expected["closed"].values()))
    power = stream_run.read(f"test.sub.power.{u}", expected=sum(expected["power"].values()))
    got_closed = Counter()
    for msg in closed:
        body = json.loads(msg.value())  # JSON in the spec's flat shape
        assert body["vim_id"] == VIM
        assert "state_description" in body and "launched_at" in body
        got_closed[(body["instance_id"], body["event_type"])] += 1
        assert headers_of(msg)["content-type"] == b"application/json"
        assert msg.key().decode() == body["instance_id"]
    assert got_closed == expected["closed"]
    got_power = Counter()
    for msg in power:
        event = codecs.decode(msg.value(), "avro")
        got_power[(event["instance_id"], event["event_type"])] += 1
    assert got_power == expected["power"]
    events = stream_run.read(stream_run.events_topic, expected=len(records))
    assert len(events) == len(records)
    state = stream_run.latest_state()
    assert len(state) == 6
    assert all(v is not None and v["state"] == "deleted" and v["status"] == "DELETE" for v in state.values())


def test_real_nova_samples_route_and_malformed_records_are_dead_lettered(stream_run):
    from pathlib import Path

    u = stream_run.unique
    root = Path(__file__).resolve().parents[1] / "fixtures" / "nova"
    wanted = {
        "legacy-templates/compute.instance.power_off.end__notigen-compute.instance.power_off.start_4-04.json": True,
        "versioned/instance-pause-end.json": True,
        "versioned/instance-power_on-end.json": False,
        "legacy/compute.instance.create.end__ceilometer.json": False,
    }
    records = []
    for n, (name, _) in enumerate(wanted.items()):
        text = (root / name).read_text()
        # Fill the anonymised production template's markers with plausible values.
        text = text.replace("[[[[UUID_0]]]]", f"5e1c0000-0000-4000-8000-{n:012d}")
        for marker in set(__import__("re").findall(r"\[\[\[\[[^\]]+\]\]\]\]", text)):
            value = "2026-11-25 10:00:00.000000" if "DT_" in marker else f"x{n}"
            text = text.replace(marker, value)
        sample = json.loads(text)
        payload = sample["payload"]
        if "nova_object.data" in payload:
            payload["nova_object.data"]["uuid"] = f"5e1c0000-0000-4000-8000-{n:012d}"
        else:
            payload["instance_id"] = f"5e1c0000-0000-4000-8000-{n:012d}"
        record = {
            "vim_id": VIM,
            "received_at": "2026-11-25T10:00:01+00:00",
            "message_id": f"m-{n}",
            "timestamp": f"2026-11-25 10:00:00.{n:06d}",
            "context": {},
            **sample,
        }
        records.append((f"5e1c0000-0000-4000-8000-{n:012d}", record))
    records.append(("bad-1", b"{not json"))
    records.append(
        ("bad-2", {"vim_id": VIM, "event_type": "compute.instance.update", "payload": {"state": 3}})
    )
    stream_run.start()
    stream_run.send(records)
    closed = stream_run.read(f"test.sub.closed.{u}", expected=2)
    kinds = sorted(json.loads(m.value())["status"] for m in closed)
    assert kinds == ["PAUSE", "POWER_OFF"]
    dead = stream_run.read(stream_run.dlq_topic, expected=2)
    reasons = sorted(headers_of(m)["eventfed.reason"].decode() for m in dead)
    assert reasons[0] == "bad_json" and len(reasons) == 2
    for m in dead:
        h = headers_of(m)
        assert h["eventfed.source.topic"].decode() == stream_run.raw_topic
        assert int(h["eventfed.source.offset"]) >= 0


def test_duplicates_out_of_order_and_late_updates_after_delete(stream_run):
    u = stream_run.unique
    cloud = SimulatedCloud(seed=2)
    vm = cloud.new_vm(0)
    timed = []
    for action, phase in (("create", "start"), ("create", "end"), ("power_off", "end"), ("power_on", "end")):
        note = cloud.action(vm, action, phase, "versioned")
        timed.append((note, cloud.tick()))
    (c1, t1), (c2, t2), (power_off_end, t_off), (power_on_end, t_on) = timed
    records = [(vm.uuid, raw_record(c1, VIM, t1)), (vm.uuid, raw_record(c2, VIM, t2))]
    on = raw_record(power_on_end, VIM, t_on, message_id="m-on")
    off = raw_record(power_off_end, VIM, t_off, message_id="m-off")
    # The newer event first, then the older one; then both again (requeues).
    records += [(vm.uuid, on), (vm.uuid, off), (vm.uuid, on), (vm.uuid, off)]
    stream_run.start()
    stream_run.send(records)
    events = stream_run.read(stream_run.events_topic, expected=4)
    assert len(events) == 4  # create x2, power_on, power_off (stale but recorded); the repeats dropped
    state = stream_run.latest_state()
    assert state[f"{VIM}/{vm.uuid}"]["status"] == "POWER_ON"
    assert state[f"{VIM}/{vm.uuid}"]["state"] == "active"
    power = stream_run.read(f"test.sub.power.{u}", expected=1)
    assert [codecs.decode(m.value(), "avro")["status"] for m in power] == ["POWER_ON"]

    # Delete, then a late update about the same VM: the VM stays deleted.
    delete_end = cloud.action(vm, "delete", "end", "versioned")
    t_delete = cloud.tick()
    late = cloud.action(vm, "power_on", "end", "versioned")
    stream_run.send(
        [
            (vm.uuid, raw_record(delete_end, VIM, t_delete)),
            (vm.uuid, raw_record(late, VIM, cloud.tick() + timedelta(seconds=5))),
        ]
    )
    stream_run.read(stream_run.events_topic, expected=6)
    state = stream_run.latest_state()
    assert state[f"{VIM}/{vm.uuid}"]["state"] == "deleted"
    metrics = _metrics(stream_run.procs[0])
    assert 'eventfed_stream_duplicates_total{reason="window"} 1.0' in metrics
    assert 'eventfed_stream_duplicates_total{reason="same_as_state"} 1.0' in metrics
    assert 'eventfed_stream_stale_total{reason="older"} 1.0' in metrics
    assert 'eventfed_stream_stale_total{reason="after_delete"} 1.0' in metrics


def _metrics(proc) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_subscriptions_reload_and_a_broken_file_keeps_the_old_rules(stream_run):
    u = stream_run.unique
    cloud = SimulatedCloud(seed=3)
    stream_run.start()
    vm = cloud.new_vm(0)
    stream_run.send([(vm.uuid, raw_record(cloud.action(vm, "pause", "end", "legacy"), VIM, cloud.tick()))])
    assert len(stream_run.read(f"test.sub.closed.{u}", expected=1)) == 1

    # A broken file: rejected with the line and field named, the old rules keep working.
    stream_run.subscriptions_file.write_text(
        "subscriptions:\n  - name: broken\n    sink: {type: kafka, topic: 'a b'}\n"
    )
    time.sleep(3)
    stream_run.send(
        [
            (vm.uuid, raw_record(cloud.action(vm, "unpause", "end", "legacy"), VIM, cloud.tick())),
            (vm.uuid, raw_record(cloud.action(vm, "pause", "end", "legacy"), VIM, cloud.tick())),
        ]
    )
    assert len(stream_run.read(f"test.sub.closed.{u}", expected=2)) == 2
    log = stream_run.procs[0].log()
    assert "rejected new subscriptions" in log and ":3: subscriptions/0/sink/topic" in log

    # A valid new file: the new rules apply without a restart.
    stream_run.subscriptions_file.write_text(
        "subscriptions:\n  - name: unpause-only\n    match: {events: [UNPAUSE]}\n"
        f"    sink: {{type: kafka, topic: test.sub.unpause.{u}}}\n"
    )
    stream_run.send([])
    deadline = time.monotonic() + 30
    while "subscriptions reloaded: unpause-only" not in stream_run.procs[0].log():
        assert time.monotonic() < deadline, stream_run.procs[0].log()[-2000:]
        time.sleep(0.5)
    stream_run.send(
        [
            (vm.uuid, raw_record(cloud.action(vm, "unpause", "end", "legacy"), VIM, cloud.tick())),
            (vm.uuid, raw_record(cloud.action(vm, "pause", "end", "legacy"), VIM, cloud.tick())),
        ]
    )
    from tests.support.processes import EVENTFED  # noqa: F401  (the topic is created by the worker)

    unpause = stream_run.read(f"test.sub.unpause.{u}", expected=1)
    assert [json.loads(m.value())["status"] for m in unpause] == ["UNPAUSE"]
    assert len(stream_run.read(f"test.sub.closed.{u}", expected=2)) == 2


def _check_complete(stream_run, records, u):
    """Every expected event on every expected topic. Reads until all of them are there (a
    rebalance or a restart pauses the flow for seconds, so a count or an idle gap proves nothing),
    or the timeout: what is still missing then is lost."""
    from tests.support.kafka import read_topic

    expected = expected_routing(records)

    def closed_pairs(msgs):
        return Counter(
            (json.loads(m.value())["instance_id"], json.loads(m.value())["event_type"]) for m in msgs
        )

    closed = read_topic(
        stream_run.bootstrap,
        f"test.sub.closed.{u}",
        timeout=240,
        until=lambda msgs: not (expected["closed"] - closed_pairs(msgs)),
    )
    got = closed_pairs(closed)
    missing = expected["closed"] - got
    assert not missing, f"lost {sum(missing.values())} closed-loop events, e.g. {list(missing)[:3]}"
    duplicates = sum((got - expected["closed"]).values())
    want_events = Counter((k, r["message_id"]) for k, r in records)

    def event_pairs(msgs):
        return Counter((m.key().decode(), headers_of(m)["message_id"].decode()) for m in msgs)

    events = read_topic(
        stream_run.bootstrap,
        stream_run.events_topic,
        timeout=240,
        until=lambda msgs: not (want_events - event_pairs(msgs)),
    )
    assert not (want_events - event_pairs(events)), "events missing from the canonical topic"
    vm_ids = {k for k, _ in records}
    deadline = time.monotonic() + 120
    while True:
        state = stream_run.latest_state()
        done = {k.split("/", 1)[1] for k in state} == vm_ids and all(
            v is not None and v["state"] == "deleted" for v in state.values()
        )
        if done or time.monotonic() > deadline:
            break
    assert {k.split("/", 1)[1] for k in state} == vm_ids
    assert all(v is not None and v["state"] == "deleted" for v in state.values())
    return duplicates


def test_sigkill_at_random_moments_loses_nothing(stream_run):
    u = stream_run.unique
    cloud = SimulatedCloud(seed=4)
    records = lifecycle_records(cloud, 150)  # 150 VMs x 26 notifications = 3,900 records
    rng = random.Random(4)
    proc = stream_run.start("w1", EVENTFED_BATCH_SIZE="50")
    # The records keep coming while the worker is killed, so kills land mid-batch.
    sender = threading.Thread(target=stream_run.send_paced, args=(records, 250.0), daemon=True)
    sender.start()
    kills = 0
    for i in range(4):
        time.sleep(rng.uniform(0.5, 3.0))
        proc.kill()
        kills += 1
        proc = stream_run.start(f"w1-{i}", wait_ready=i == 3, EVENTFED_BATCH_SIZE="50")
    sender.join(120)
    assert not sender.is_alive()
    duplicates = _check_complete(stream_run, records, u)
    print(f"{len(records)} records, {kills} SIGKILLs, {duplicates} duplicates forced by the crashes")


def test_two_workers_one_stopped_mid_run_loses_nothing(stream_run):
    u = stream_run.unique
    cloud = SimulatedCloud(seed=5)
    records = lifecycle_records(cloud, 100)
    first = stream_run.start("a")
    second = stream_run.start("b")
    half = len(records) // 2
    stream_run.send(records[:half])
    time.sleep(2)
    assert second.terminate(60) == 0
    stream_run.send(records[half:])
    _check_complete(stream_run, records, u)
    assert first.alive()


def test_records_deleted_by_retention_before_the_worker_returns_are_counted_and_the_rest_flow(stream_run):
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    cloud = SimulatedCloud(seed=6)
    records = lifecycle_records(cloud, 8)  # 208 records
    first, rest = records[:40], records[40:]
    proc = stream_run.start("w1")
    stream_run.send(first)
    assert len(stream_run.read(stream_run.events_topic, expected=40)) == 40
    assert proc.terminate(60) == 0
    stream_run.send(rest)

    group = Consumer(
        {"bootstrap.servers": stream_run.bootstrap, "group.id": stream_run.base_env["EVENTFED_APP_ID"]}
    )
    committed = group.committed([TopicPartition(stream_run.raw_topic, p) for p in range(4)], timeout=10)
    group.close()
    # Retention takes the three oldest unhandled records of every partition while no worker runs
    # (of those that have records: the keys need not cover every partition).
    cut = [TopicPartition(tp.topic, tp.partition, tp.offset + 3) for tp in committed if tp.offset >= 0]
    assert cut, committed
    admin = AdminClient({"bootstrap.servers": stream_run.bootstrap})
    for future in admin.delete_records(cut).values():
        future.result(timeout=30)
    proc = stream_run.start("w2")
    lost = 3 * len(cut)
    survivors = len(records) - lost
    events = stream_run.read(stream_run.events_topic, expected=survivors, timeout=120)
    assert len(events) == survivors
    assert len({headers_of(m)["message_id"] for m in events}) == survivors
    assert f"eventfed_stream_lost_to_retention_total {lost}.0" in _metrics(proc)


def test_a_worker_that_saw_its_raw_topic_missing_takes_it_up_again_once_it_is_back(stream_run):
    """The group leader assigns no partition of a subscribed topic missing from its metadata (as
    right after a broker restart, or when an operator re-creates the topic); the worker must take the
    topic's partitions up again within seconds of their return, not at the next routine refresh of
    its metadata, minutes later."""
    from confluent_kafka.admin import AdminClient

    cloud = SimulatedCloud(seed=7)
    records = lifecycle_records(cloud, 4)  # 104 records
    first, rest = records[:30], records[30:]
    stream_run.start("w1")
    stream_run.send(first)
    assert len(stream_run.read(stream_run.events_topic, expected=30)) == 30

    admin = AdminClient({"bootstrap.servers": stream_run.bootstrap})
    for future in admin.delete_topics([stream_run.raw_topic], request_timeout=30).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 60
    while stream_run.raw_topic in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "the raw topic was not deleted"
        time.sleep(0.5)
    # Long enough for the worker's consumer to see the topic gone and its group to rebalance.
    time.sleep(8)
    subprocess.run([EVENTFED, "topics"], env=stream_run.base_env, check=True, capture_output=True)
    stream_run.send(rest)
    events = stream_run.read(stream_run.events_topic, expected=len(records), timeout=90)
    assert len(events) == len(records)


def test_an_idle_worker_stops_on_sigterm(stream_run):
    """A worker waiting for its next record must still stop when told to, with a clean exit."""
    records = lifecycle_records(SimulatedCloud(seed=8), 1)
    worker = stream_run.start("w1")
    stream_run.send(records)
    assert len(stream_run.read(stream_run.events_topic, expected=len(records))) == len(records)
    time.sleep(3)  # idle, waiting for the next record
    assert worker.terminate(30) == 0
    assert "Traceback" not in worker.log()


def test_the_range_reader_reads_offsets_straight_from_kafka_from_what_retention_left(
    kafka_bootstrap, kafka_topic_factory, unique
):
    """What the worker reads over a hole: the records asked for, in order, starting where
    retention left the log, with the log start to count what it took."""
    from collections import namedtuple

    from confluent_kafka import Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    from streams.range_reader import KafkaRangeReader

    topic = kafka_topic_factory(f"test.range.{unique}", partitions=2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=1, headers=[("h", b"%d" % i)])
    assert producer.flush(30) == 0
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 1, 3)]).values():
        future.result(timeout=30)
    TP = namedtuple("TP", "topic partition")
    tp = TP(topic, 1)
    reader = KafkaRangeReader({"bootstrap.servers": kafka_bootstrap, "group.id": f"test-range-{unique}"})

    async def reads():
        return (
            await reader.read(tp, 0, 8, 100),
            await reader.read(tp, 5, 9, 2),
            await reader.read(tp, 0, 2, 100),
            await reader.log_ends({tp, TP(topic, 0)}),
        )

    try:
        from_start, limited, all_deleted, ends = asyncio.run(reads())
    finally:
        reader.close()
    assert [r.offset for r in from_start.records] == [3, 4, 5, 6, 7] and from_start.log_start == 3
    first = from_start.records[0]
    assert (first.tp, first.key, first.value, first.headers) == (tp, b"k3", b"v3", [("h", b"3")])
    assert (first.topic, first.partition) == (topic, 1)
    assert [r.offset for r in limited.records] == [5, 6]
    assert all_deleted.records == [] and all_deleted.log_start == 3
    assert ends == {tp: 10, TP(topic, 0): 0}
