"""Real Nova 34 drives the whole pipeline: its notifications go through a real RabbitMQ vhost,
`eventfed listen`, the raw Kafka topic and `eventfed stream`; `eventfed api` serves the result, and
a faults-only ves feed is read as ONAP's closed loop reads it (tests/support/holmes.py).

One stream worker and one API serve the module; each Nova configuration (notification_format,
notify_on_state_change) is one Nova process on a vhost of its own with its own listener and VIM
id. Every lifecycle the fixture supports runs once (format both); the other configurations run
one rich lifecycle each.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.api.test_api_kafka import V1, ApiProcess
from tests.support.holmes import HolmesShapedConsumer, check_closed_loop, expected_from_statuses
from tests.support.kafka import headers_of, read_topic
from tests.support.real_nova import ALL_ACTIONS, RabbitVhost, RealNova, VimListener, run_lifecycle
from tests.support.stream import StreamRun
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.real_nova]

SPEC_KINDS = ("DELETE", "PAUSE", "POWER_OFF")
SUBSCRIPTIONS = """
subscriptions:
  - name: spec
    match: {events: [DELETE, PAUSE, POWER_OFF]}
    sink: {type: kafka, topic: "test.rn.spec.{u}", format: json}
  - name: everything
    match: {events: ["*"], phases: [start, end, error, none]}
    sink: {type: kafka, topic: "test.rn.all.{u}", format: json}
  - name: faults
    sink: {type: kafka, topic: "test.rn.faults.{u}", format: ves, ves: {domains: [fault]}}
"""

S, E, N = "start", "end", "none"
_RESIZE = [("EXISTS", N), *[("RESIZE", p) for p in (S, E) * 3]]
_DELETE = [("DELETE", S), ("SHUT_DOWN", S), ("SHUT_DOWN", E), ("DELETE", E)]
# What Nova 34 sends per action, as (status, phase) in order: one event per action whatever the
# notification format (instance.update aside, which notify_on_state_change adds).
EXPECTED: dict[str, list[tuple[str, str]]] = {
    "create": [("CREATE", S), ("CREATE", E)],
    "pause": [("PAUSE", S), ("PAUSE", E)],
    "unpause": [("UNPAUSE", S), ("UNPAUSE", E)],
    "stop": [("POWER_OFF", S), ("POWER_OFF", E)],
    "start": [("POWER_ON", S), ("POWER_ON", E)],
    "reboot_soft": [("REBOOT", S), ("REBOOT", E)],
    "reboot_hard": [("REBOOT", S), ("REBOOT", E)],
    "rebuild": [("REBUILD", N), ("EXISTS", N), ("REBUILD", S), ("REBUILD", E)],
    "suspend": [("SUSPEND", S), ("SUSPEND", E)],
    "resume": [("RESUME", S), ("RESUME", E)],
    "shelve": [("EXISTS", N), ("SHELVE", S), ("SHELVE", E), ("SHELVE_OFFLOAD", S), ("SHELVE_OFFLOAD", E)],
    "unshelve": [("UNSHELVE", S), ("UNSHELVE", E)],
    "resize": _RESIZE,
    "resize_confirm": [("RESIZE_CONFIRM", S), ("RESIZE_CONFIRM", E)],
    "resize_back": _RESIZE,
    "resize_revert": [("EXISTS", N), ("RESIZE_REVERT", S), ("RESIZE_REVERT", E)],
    "rescue": [("RESCUE", S), ("EXISTS", N), ("RESCUE", E)],
    "unrescue": [("UNRESCUE", S), ("UNRESCUE", E)],
    "lock": [("LOCK", N)],
    "unlock": [("UNLOCK", N)],
    "migrate": _RESIZE,
    "migrate_confirm": [("RESIZE_CONFIRM", S), ("RESIZE_CONFIRM", E)],
    "soft_delete": [("SOFT_DELETE", S), ("SOFT_DELETE", E)],
    "restore": [("RESTORE", S), ("RESTORE", E)],
    "force_delete": _DELETE,
    "delete": _DELETE,
}
# The API status each step leaves the server in (None: unchanged), as Nova's API reports it.
STATUS_AFTER: dict[str, str | None] = {
    "create": "ACTIVE",
    "pause": "PAUSED",
    "unpause": "ACTIVE",
    "stop": "SHUTOFF",
    "start": "ACTIVE",
    "reboot_soft": "ACTIVE",
    "reboot_hard": "ACTIVE",
    "rebuild": "ACTIVE",
    "suspend": "SUSPENDED",
    "resume": "ACTIVE",
    "shelve": "SHELVED_OFFLOADED",
    "unshelve": "ACTIVE",
    "resize": "VERIFY_RESIZE",
    "resize_confirm": "ACTIVE",
    "resize_back": "VERIFY_RESIZE",
    "resize_revert": "ACTIVE",
    "rescue": "RESCUE",
    "unrescue": "ACTIVE",
    "lock": None,
    "unlock": None,
    "migrate": "VERIFY_RESIZE",
    "migrate_confirm": "ACTIVE",
    "soft_delete": "SOFT_DELETED",
    "restore": "ACTIVE",
    "force_delete": "DELETED",
    "delete": "DELETED",
}
# Nova has no legacy notification for these.
VERSIONED_ONLY = {"LOCK", "UNLOCK"}

RICH = [
    "pause",
    "unpause",
    "stop",
    "start",
    "reboot_soft",
    "rebuild",
    "soft_delete",
    "restore",
    "lock",
    "unlock",
]
# Left behind by every configuration, for the final state the API reports.
KEPT = {"kept-paused": (["pause"], "paused", "PAUSE"), "kept-stopped": (["stop"], "stopped", "POWER_OFF")}


class Pipeline:
    def __init__(self, tmp: Path, unique: str, bootstrap: str, rabbit_url: str) -> None:
        self.tmp = tmp
        self.unique = unique
        self.bootstrap = bootstrap
        self.rabbit_url = rabbit_url
        self.run = StreamRun(tmp, unique, bootstrap, SUBSCRIPTIONS)
        self.api = ApiProcess(tmp, bootstrap, self.run.state_topic)
        self.spec_topic = f"test.rn.spec.{unique}"
        self.all_topic = f"test.rn.all.{unique}"
        self.faults_topic = f"test.rn.faults.{unique}"

    @contextlib.contextmanager
    def cloud(self, name: str, notification_format: str, state_change: str) -> Iterator[tuple[str, RealNova]]:
        """Real Nova on a vhost of its own, and a listener for it; yields (vim_id, nova)."""
        vim_id = f"realnova_{name}"
        with RabbitVhost(f"eventfed-realnova-{name}-{self.unique}") as vhost:
            pool = f"eventfed-realnova-{self.unique}"
            listener = VimListener(self.tmp / f"listener-{name}.log", vhost, vim_id, pool, self.run)
            nova = RealNova(self.tmp / f"nova-{name}.log", vhost.url, notification_format, state_change)
            try:
                listener.wait_listening()
                nova.start()
                yield vim_id, nova
            finally:
                listener.stop_beside(nova)

    def events(
        self, topic: str, vim_id: str, expected: int, idle: float = 3
    ) -> dict[str, list[dict[str, Any]]]:
        """Records of one VIM on a topic, per instance in topic order; stale ones marked."""
        by_vm: dict[str, list[dict[str, Any]]] = {}

        def mine(records: list[Any]) -> int:
            return sum(1 for r in records if headers_of(r).get("vim_id") == vim_id.encode())

        for record in read_topic(self.bootstrap, topic, expected=expected, timeout=90, idle=idle, count=mine):
            headers = headers_of(record)
            if headers.get("vim_id") != vim_id.encode():
                continue
            value = record.value()
            if topic == self.run.events_topic:
                from streams import codecs

                body = dict(codecs.decode(value, "avro"))
            else:
                body = json.loads(value)
            body["stale"] = "eventfed.stale" in headers
            by_vm.setdefault(body["instance_id"], []).append(body)
        return by_vm

    def vms_in(self, vim_id: str, state: str) -> set[str]:
        owner, region = vim_id.split("_", 1)
        status, body, _ = self.api.request(
            "POST", f"{V1}/{owner}/{region}/check_vim_status", {"states": [state]}
        )
        if status != 200:
            return set()
        return {vm["instance_id"] for vm in body["vms"]}


@pytest.fixture(scope="module")
def pipeline(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, rabbit_url: str
) -> Iterator[Pipeline]:
    import uuid

    tmp = tmp_path_factory.mktemp("real-nova")
    line = Pipeline(tmp, uuid.uuid4().hex[:10], kafka_bootstrap, rabbit_url)
    try:
        line.run.start()
        line.api.start(wait_ready=False)
        yield line
    finally:
        if line.api.proc is not None:
            line.api.stop()
        line.run.stop_all()


def expected_for(steps: list[str], notification_format: str) -> list[tuple[str, str]]:
    sequence = [pair for step in ["create", *steps] for pair in EXPECTED[step]]
    if notification_format == "unversioned":
        sequence = [pair for pair in sequence if pair[0] not in VERSIONED_ONLY]
    return sequence


def drive(
    pipeline: Pipeline, name: str, notification_format: str, state_change: str, lifecycles: list[list[str]]
) -> None:
    with pipeline.cloud(name, notification_format, state_change) as (vim_id, nova):
        client = nova.client
        servers = {
            run_lifecycle(client, f"{name}-{number}", steps): steps for number, steps in enumerate(lifecycles)
        }
        kept = {run_lifecycle(client, vm, steps): (state, kind) for vm, (steps, state, kind) in KEPT.items()}
        want = {server_id: expected_for(steps, notification_format) for server_id, steps in servers.items()}
        want.update(
            {
                server_id: expected_for(KEPT[vm][0], notification_format)
                for vm, server_id in zip(KEPT, kept, strict=True)
            }
        )
        check(pipeline, vim_id, notification_format, state_change, want, kept)
        lives = {**servers, **{server_id: KEPT[vm][0] for vm, server_id in zip(KEPT, kept, strict=True)}}
        check_faults(pipeline, vim_id, lives)


def check_faults(pipeline: Pipeline, vim_id: str, lives: dict[str, list[str]]) -> None:
    """ONAP's closed loop over the faults-only feed: ONSET for every episode a server settled
    down (paused, stopped, suspended, shelved, rescued, soft-deleted), ABATED for each it came
    back from or was deleted in, nothing for rebuilds, resizes, migrations and reboots."""
    expected = {
        server_id: expected_from_statuses([STATUS_AFTER[step] for step in ["create", *steps]])
        for server_id, steps in lives.items()
    }
    count = sum(e.onsets + e.abated for e in expected.values())

    def mine(records: list[Any]) -> int:
        return sum(1 for r in records if headers_of(r).get("vim_id") == vim_id.encode())

    records = read_topic(
        pipeline.bootstrap, pipeline.faults_topic, expected=count, timeout=90, idle=1, count=mine
    )
    consumer = HolmesShapedConsumer().consume_all(
        r.value() for r in records if headers_of(r).get("vim_id") == vim_id.encode()
    )
    check_closed_loop(consumer, expected)
    assert count > 0


def check(
    pipeline: Pipeline,
    vim_id: str,
    notification_format: str,
    state_change: str,
    want: dict[str, list[tuple[str, str]]],
    kept: dict[str, tuple[str, str]],
) -> None:
    total = sum(len(sequence) for sequence in want.values())
    events = pipeline.events(pipeline.run.events_topic, vim_id, expected=total)
    # The stream writes a record's outputs together and confirms them before it goes on: once
    # the events topic has all and has been quiet, the feeds have theirs too.
    feed = pipeline.events(pipeline.all_topic, vim_id, expected=total, idle=0.5)
    spec = pipeline.events(pipeline.spec_topic, vim_id, expected=1, idle=0.5)
    assert set(events) == set(feed) == set(want)
    for server_id, sequence in want.items():
        applied = [(e["status"], e["phase"]) for e in events[server_id] if not e["stale"]]
        received = [(e["status"], e["phase"]) for e in feed[server_id]]
        updates = [e for e in feed[server_id] if e["status"] == "UPDATE"]
        if state_change == "none":
            assert not updates
        else:
            assert updates, "notify_on_state_change sends instance.update"
            applied = [pair for pair in applied if pair[0] != "UPDATE"]
            received = [pair for pair in received if pair[0] != "UPDATE"]
            # A legacy update and its versioned twin are one event: never both in the feed.
            for one, two in itertools.pairwise(updates):
                twin = (one["format"], two["format"]) == ("legacy", "versioned")
                assert not (twin and (one["state"], one["task_state"]) == (two["state"], two["task_state"]))
        # Each event once on the events topic and once per subscriber, whatever the format.
        assert applied == sequence
        assert received == sequence
        spec_sequence = [(e["status"], e["phase"]) for e in spec.get(server_id, [])]
        assert spec_sequence == [p for p in sequence if p[0] in SPEC_KINDS and p[1] in ("end", "error")]
        formats = {e["format"] for e in events[server_id]}
        if notification_format == "both":
            assert formats <= {"legacy", "versioned"}
        else:
            assert formats == {"versioned" if notification_format == "versioned" else "legacy"}
        # A twin is dropped as a duplicate of the state its other half made; one that comes after a
        # later event is stale instead: on the events topic, marked, and seen by no subscriber.
        stale = [e for e in events[server_id] if e["stale"]]
        assert notification_format == "both" or not stale
        assert {e["format"] for e in stale} <= formats
    for server_id, (state, kind) in kept.items():
        wait_until(lambda s=server_id, st=state: s in pipeline.vms_in(vim_id, st), 30, f"{server_id} {state}")
        assert server_id in pipeline.vms_in(vim_id, kind)
    deleted = {server_id for server_id, sequence in want.items() if sequence[-1] == ("DELETE", "end")}
    wait_until(lambda: deleted <= pipeline.vms_in(vim_id, "deleted"), 30, "deleted VMs")
    assert not deleted & pipeline.vms_in(vim_id, "active")


def test_every_lifecycle_with_both_formats(pipeline: Pipeline) -> None:
    drive(pipeline, "both", "both", "none", ALL_ACTIONS)


@pytest.mark.parametrize(
    ("notification_format", "state_change"),
    # With the test above: each format, state changes off and on (both kinds), twins of updates.
    [
        ("unversioned", "none"),
        ("both", "vm_and_task_state"),
        ("versioned", "vm_state"),
    ],
)
def test_rich_lifecycle(pipeline: Pipeline, notification_format: str, state_change: str) -> None:
    name = f"{notification_format}-{state_change.replace('_', '-')}"
    drive(pipeline, name, notification_format, state_change, [RICH, ["delete"]])
