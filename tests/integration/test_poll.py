"""`eventfed poll` against real Nova 34's API (tests/real_nova), real Kafka, a real stream worker
and `eventfed api`: servers created, paused, stopped and deleted in Nova reach the canonical events
and the state table; Nova's API unreachable mid-run makes the poller unready, and once it is back
nothing changed meanwhile is missed; a refused token stops it with one error; beside a listener
that missed notifications, it repairs the state, and each change reaches a subscriber once."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from streams import codecs
from tests.integration.api.test_api_kafka import V1, ApiProcess
from tests.support.processes import Proc, clean_env, free_port, wait_http
from tests.support.real_nova import NovaClient, RabbitVhost, RealNova, VimListener
from tests.support.stream import StreamRun
from tests.support.tcp_gate import TcpGate
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

OWNER, REGION = "pollowner", "region-p"
VIM = f"{OWNER}_{REGION}"
TOKEN = "poll-test-token"
SUBSCRIPTIONS = """
subscriptions:
  - name: closed-loop
    match: {events: [PAUSE, POWER_OFF, DELETE]}
    sink: {type: kafka, topic: "test.poll.closed.{u}", format: json}
"""


def poller(
    tmp_path: Path, run: StreamRun, endpoint: str, token: str = TOKEN, name: str = "poll", **extra: str
):
    metrics_port = free_port()
    proc = Proc(
        ["poll"],
        clean_env(
            EVENTFED_VIM_ID=VIM,
            EVENTFED_NOVA_AUTH="token",
            EVENTFED_NOVA_ENDPOINT=endpoint,
            EVENTFED_NOVA_TOKEN=token,
            EVENTFED_POLL_INTERVAL="1",
            EVENTFED_POLL_OVERLAP_SECONDS="5",
            EVENTFED_POLL_REQUEST_TIMEOUT="5",
            EVENTFED_RETRY_BACKOFF_INITIAL="0.2",
            EVENTFED_RETRY_BACKOFF_MAX="1",
            EVENTFED_POLL_CHECKPOINT_TOPIC=f"test.poll.checkpoints.{run.unique}",
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=run.bootstrap,
            EVENTFED_RAW_TOPIC=run.raw_topic,
            EVENTFED_DLQ_TOPIC=run.dlq_topic,
            EVENTFED_PARTITIONS="4",
            EVENTFED_METRICS_PORT=str(metrics_port),
            **extra,
        ),
        tmp_path / f"{name}.log",
    )
    proc.readyz = f"http://127.0.0.1:{metrics_port}/readyz"  # type: ignore[attr-defined]
    return proc


def readiness(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def api_states(api: ApiProcess) -> dict[str, tuple[str, str]]:
    """check_vim_status over every vm_state, followed page by page: instance -> (state, status)."""
    states = ["active", "paused", "stopped", "deleted", "building", "soft-delete", "error"]
    found: dict[str, tuple[str, str]] = {}
    url: str | None = f"{V1}/{OWNER}/{REGION}/check_vim_status?limit=50"
    while url is not None:
        status, body, _ = api.request("POST", url, {"states": states})
        if status == 404:
            return found
        assert status == 200, body
        found.update({vm["instance_id"]: (vm["state"], vm["status"]) for vm in body["vms"]})
        url = body["links"].get("next")
        if url and url.startswith("http"):
            url = url[len(api.base) :]
    return found


def gate_for(api_url: str) -> tuple[TcpGate, str]:
    parts = urlsplit(api_url)
    gate = TcpGate(parts.hostname or "127.0.0.1", int(parts.port or 80)).open()
    return gate, f"http://127.0.0.1:{gate.port}{parts.path}"


@pytest.fixture
def vhost(unique):
    with RabbitVhost(f"poll-{unique}") as created:
        yield created


def test_poll_real_nova_lifecycles_outage_and_bad_token(tmp_path, unique, kafka_bootstrap, vhost):
    nova = RealNova(tmp_path / "nova.log", vhost.url, notification_format="versioned", token=TOKEN).start()
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS)
    api = ApiProcess(tmp_path, kafka_bootstrap, run.state_topic)
    gate, endpoint = gate_for(nova.api_url)
    procs: list[Proc] = []
    try:
        client: NovaClient = nova.client
        paused = client.create_server("poll-paused")["id"]
        stopped = client.create_server("poll-stopped")["id"]
        deleted = client.create_server("poll-deleted")["id"]
        kept = client.create_server("poll-kept")["id"]
        client.action(paused, {"pause": None}, "PAUSED")

        # A refused token: one clear error line and exit status 3, before anything else runs.
        bad = poller(tmp_path, run, endpoint, token="wrong", name="poll-bad")
        assert bad.popen.wait(60) == 3
        errors = [line for line in bad.log().splitlines() if "ERROR" in line]
        assert len(errors) == 1 and "HTTP 401" in errors[0] and "EVENTFED_NOVA_TOKEN" in errors[0], errors

        run.start()
        api.start()
        poll = poller(tmp_path, run, endpoint)
        procs.append(poll)
        wait_http(poll.readyz, 120, poll)  # type: ignore[attr-defined]
        client.action(stopped, {"os-stop": None}, "SHUTOFF")
        client.delete(deleted)
        want = {
            paused: ("paused", "PAUSE"),
            stopped: ("stopped", "POWER_OFF"),
            deleted: ("deleted", "DELETE"),
            kept: ("active", "UPDATE"),
        }
        wait_until(lambda: api_states(api) == want, 120, "the state table to show the lifecycles")

        # Nova's API unreachable: not ready, while servers keep changing behind it.
        gate.close()
        wait_until(lambda: readiness(poll.readyz)[0] == 503, 60, "readiness false")  # type: ignore[attr-defined]
        assert poll.alive()
        client.action(kept, {"pause": None}, "PAUSED")
        client.action(stopped, {"os-start": None}, "ACTIVE")
        time.sleep(3)  # several failed cycles
        assert readiness(poll.readyz)[0] == 503  # type: ignore[attr-defined]
        gate.open()
        wait_until(lambda: readiness(poll.readyz)[0] == 200, 60, "readiness back")  # type: ignore[attr-defined]
        want[kept] = ("paused", "PAUSE")
        want[stopped] = ("active", "UPDATE")
        wait_until(lambda: api_states(api) == want, 120, "the changes made during the outage")
        assert "retrying in" in poll.log()

        # The canonical events: polled, with the server's updated time, each change once.
        events = [codecs.decode(m.value(), "avro") for m in run.read(run.events_topic, idle=3)]
        assert events and all(e["format"] == "poll" and e["vim_id"] == VIM for e in events)
        assert {(e["instance_id"], e["status"], e["phase"]) for e in events} >= {
            (paused, "PAUSE", "end"),
            (stopped, "POWER_OFF", "end"),
            (deleted, "DELETE", "end"),
            (kept, "PAUSE", "end"),
        }
        assert all(e["updated_at"] == e["occurred_at"] for e in events)
        ids = Counter(e["message_id"] for e in events)
        assert max(ids.values()) == 1, "a snapshot read again reached the events topic twice"
        closed = [json.loads(m.value()) for m in run.read(f"test.poll.closed.{unique}", idle=2)]
        assert Counter((e["instance_id"], e["status"]) for e in closed if e["phase"] == "end") == Counter(
            {(paused, "PAUSE"): 1, (stopped, "POWER_OFF"): 1, (deleted, "DELETE"): 1, (kept, "PAUSE"): 1}
        )

        # A restart resumes from the checkpoint: an incremental cycle, not a full listing.
        assert poll.terminate(30) == 0
        again = poller(tmp_path, run, endpoint, name="poll-again")
        procs.append(again)
        wait_http(again.readyz, 120, again)  # type: ignore[attr-defined]
        log = again.log()
        assert "incremental cycle" in log and "full cycle" not in log
    finally:
        for proc in procs:
            if proc.alive():
                proc.terminate(30)
        gate.close()
        if api.proc is not None:
            api.stop()
        run.stop_all()
        nova.stop()


def test_poll_beside_a_listener_repairs_missed_notifications_and_delivers_each_change_once(
    tmp_path, unique, kafka_bootstrap, vhost
):
    nova = RealNova(tmp_path / "nova.log", vhost.url, notification_format="versioned").start()
    run = StreamRun(tmp_path, unique, kafka_bootstrap, SUBSCRIPTIONS)
    api = ApiProcess(tmp_path, kafka_bootstrap, run.state_topic)
    procs: list[Proc] = []
    try:
        client = nova.client
        # Before the listener's queue exists: these notifications never reach it.
        missed = client.create_server("missed")["id"]
        client.action(missed, {"pause": None}, "PAUSED")

        run.start()
        api.start()
        listener = VimListener(
            tmp_path / "listener.log",
            vhost,
            VIM,
            f"eventfed-poll-{unique}",
            run,
            EVENTFED_TOPICS="versioned_notifications",
        )
        procs.append(listener.proc)
        listener.wait_listening()

        seen = client.create_server("seen")["id"]
        # The listener alone: the missed VM is unknown to the state table.
        wait_until(lambda: api_states(api).get(seen) == ("active", "CREATE"), 120, "the listener's create")
        assert missed not in api_states(api)

        poll = poller(tmp_path, run, nova.api_url, token="any")
        procs.append(poll)
        wait_http(poll.readyz, 120, poll)  # type: ignore[attr-defined]
        # Both running: the same change is told by a notification and by a poll.
        client.action(seen, {"os-stop": None}, "SHUTOFF")
        client.delete(seen)
        want = {missed: ("paused", "PAUSE"), seen: ("deleted", "DELETE")}
        wait_until(lambda: api_states(api) == want, 120, "the repaired state")
        time.sleep(4)  # more cycles read the same changes again (overlap window)
        closed = [json.loads(m.value()) for m in run.read(f"test.poll.closed.{unique}", idle=3)]
        delivered = Counter((e["instance_id"], e["status"]) for e in closed if e["phase"] == "end")
        assert delivered == Counter({(missed, "PAUSE"): 1, (seen, "POWER_OFF"): 1, (seen, "DELETE"): 1})
        repaired = [e for e in closed if e["instance_id"] == missed]
        assert [e["format"] for e in repaired] == ["poll"]
        assert api.get(f"{V1}/{OWNER}/{REGION}/vms/{missed}")["state"] == "paused"
        # The deletion was told twice, by the listener and by the poller: one of the two was
        # recognised as the other's change (same_change) or as older (stale).
        port = run.procs[0].metrics_port  # type: ignore[attr-defined]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            metrics = response.read().decode()

        def total(prefix: str) -> float:
            return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix))

        assert (
            total('eventfed_stream_duplicates_total{reason="same_change"}')
            + total("eventfed_stream_stale_total{")
            >= 1
        )
    finally:
        for proc in procs:
            if proc.alive():
                proc.terminate(30)
        if api.proc is not None:
            api.stop()
        run.stop_all()
        nova.stop()
