"""`eventfed api` as a real process over a real compacted state topic."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from bridge.kafka_config import producer_config
from bridge.settings import ApiSettings
from tests.support.processes import Proc, clean_env, free_port, wait_http
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

VIM_1 = "itowner_region-one"
VIM_2 = "itowner_region-two"
V1 = "/api/eventfed/v1"


def state_value(vim_id: str, instance_id: str, **fields: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "instance_id": instance_id,
        "vim_id": vim_id,
        "display_name": f"name-{instance_id}",
        "state": "active",
        "state_description": "",
        "status": "CREATE",
        "phase": "end",
        "launched_at": "2024-05-01T10:00:00+00:00",
        "occurred_at": "2024-05-01T10:00:00+00:00",
        "received_at": "2024-05-01T10:00:01+00:00",
        "updated_at": None,
        "tenant_id": "tenant-1",
        "host": "compute-1",
        "power_state": "running",
        "task_state": None,
        "event_type": "instance.create.end",
        "format": "versioned",
        "message_id": f"m-{instance_id}",
        "publisher_id": "nova-compute:compute-1",
        "priority": "INFO",
        "memory_mb": 512,
        "vcpus": 1,
        "metadata": {},
        "image_meta": {},
        "fault": None,
    }
    value.update(fields)
    return value


class StateWriter:
    """Writes state records as the stream stage does: key "{vim_id}/{instance_id}", JSON value."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer(producer_config(ApiSettings(kafka_bootstrap_servers=bootstrap), "it-writer"))

    def put(self, vim_id: str, instance_id: str, **fields: Any) -> None:
        value = json.dumps(state_value(vim_id, instance_id, **fields)).encode()
        self.producer.produce(self.topic, key=f"{vim_id}/{instance_id}".encode(), value=value)

    def delete(self, vim_id: str, instance_id: str) -> None:
        self.producer.produce(self.topic, key=f"{vim_id}/{instance_id}".encode(), value=None)

    def raw(self, key: bytes | None, value: bytes | None) -> None:
        self.producer.produce(self.topic, key=key, value=value)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


class ApiProcess:
    def __init__(self, tmp_path: Path, bootstrap: str, topic: str, **settings: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = clean_env(
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            EVENTFED_STATE_TOPIC=topic,
            EVENTFED_API_HOST="127.0.0.1",
            EVENTFED_API_PORT=str(self.port),
            EVENTFED_API_THREADS="4",
            **settings,
        )
        self.log_path = tmp_path / f"api-{self.port}.log"
        self.proc: Proc | None = None

    def start(self, wait_ready: bool = True) -> ApiProcess:
        self.proc = Proc(["api"], self.env, self.log_path)
        if wait_ready:
            wait_http(f"{self.base}/readyz", 60, self.proc)
        else:
            wait_http(f"{self.base}/healthz", 60, self.proc)
        return self

    def stop(self) -> int:
        assert self.proc is not None
        return self.proc.terminate(30)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, Message]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                status, response_headers = response.status, response.headers
        except urllib.error.HTTPError as error:
            raw, status, response_headers = error.read(), error.code, error.headers
        content_type = response_headers.get("Content-Type") or ""
        return (
            status,
            json.loads(raw) if content_type.startswith("application/json") else raw.decode(),
            response_headers,
        )

    def get(self, path: str, **kwargs: Any) -> Any:
        status, body, _ = self.request("GET", path, **kwargs)
        assert status == 200, body
        return body

    def all_vms(self, vim_id: str, limit: int = 7) -> list[dict[str, Any]]:
        owner, region = vim_id.split("_", 1)
        vms: list[dict[str, Any]] = []
        marker = ""
        while True:
            page = self.get(f"{V1}/{owner}/{region}/vms?limit={limit}{'&marker=' + marker if marker else ''}")
            vms += page["vms"]
            if page["next_marker"] is None:
                return vms
            marker = page["next_marker"]


@pytest.fixture
def state_topic(kafka_topic_factory: Callable[..., str], unique: str) -> str:
    return kafka_topic_factory(f"test.state.{unique}", partitions=4, config={"cleanup.policy": "compact"})


@pytest.fixture
def writer(kafka_bootstrap: str, state_topic: str) -> StateWriter:
    return StateWriter(kafka_bootstrap, state_topic)


@pytest.fixture
def api_processes() -> Iterator[list[ApiProcess]]:
    started: list[ApiProcess] = []
    yield started
    for api in started:
        if api.proc is not None and api.proc.alive():
            api.proc.kill()


def start_api(
    started: list[ApiProcess],
    tmp_path: Path,
    bootstrap: str,
    topic: str,
    wait_ready: bool = True,
    **settings: str,
) -> ApiProcess:
    api = ApiProcess(tmp_path, bootstrap, topic, **settings)
    started.append(api)
    return api.start(wait_ready)


def test_serves_the_topic_follows_it_and_rebuilds_after_restart(
    tmp_path: Path,
    kafka_bootstrap: str,
    state_topic: str,
    writer: StateWriter,
    api_processes: list[ApiProcess],
) -> None:
    for number in range(60):
        writer.put(VIM_1, f"vm-{number:03d}", tenant_id=f"tenant-{number % 3}")
    for number in range(15):
        writer.put(VIM_2, f"vm-{number:03d}")
    # Later records for the same VM win; a tombstone removes one.
    writer.put(VIM_1, "vm-005", state="stopped", status="POWER_OFF", occurred_at="2024-05-02T09:00:00+00:00")
    writer.put(VIM_1, "vm-006", state="paused", status="PAUSE")
    writer.delete(VIM_1, "vm-007")
    writer.raw(b"not-a-state-key", b"{}")
    writer.raw(f"{VIM_1}/vm-bad".encode(), b"{broken json")
    writer.flush()

    api = start_api(api_processes, tmp_path, kafka_bootstrap, state_topic)
    vims = {vim["vim_id"]: vim for vim in api.get(f"{V1}/vims")["vims"]}
    assert vims[VIM_1]["vm_count"] == 59 and vims[VIM_2]["vm_count"] == 15
    assert vims[VIM_1]["states"] == {"active": 57, "stopped": 1, "paused": 1}
    assert vims[VIM_1]["last_event_at"] == "2024-05-02T09:00:00+00:00"
    listed = api.all_vms(VIM_1)
    assert [vm["instance_id"] for vm in listed] == sorted(f"vm-{n:03d}" for n in range(60) if n != 7)
    record = api.get(f"{V1}/itowner/region-one/vms/vm-005")
    assert record == state_value(
        VIM_1, "vm-005", state="stopped", status="POWER_OFF", occurred_at="2024-05-02T09:00:00+00:00"
    )
    status, body, _ = api.request("GET", f"{V1}/itowner/region-one/vms/vm-007")
    assert status == 404 and body["error"]["status"] == 404
    status, body, _ = api.request(
        "POST", f"{V1}/itowner/region-one/check_vim_status", {"states": ["power_off", "PAUSED"]}
    )
    assert status == 200
    assert [(vm["instance_id"], vm["status"], vm["state"]) for vm in body["vms"]] == [
        ("vm-005", "POWER_OFF", "stopped"),
        ("vm-006", "PAUSE", "paused"),
    ]
    status, body, _ = api.request(
        "POST", f"/api/eventfed/v0/{VIM_1}/check_vim_status", {"states": ["stopped"]}
    )
    assert status == 200 and body["count"] == 1
    # check_vim_status pages as the list does: POST the same body to each links.next.
    walked: list[str] = []
    url: str | None = f"/api/eventfed/v0/{VIM_1}/check_vim_status?limit=7"
    while url is not None:
        status, body, _ = api.request("POST", url, {"states": ["active"]})
        assert status == 200 and body["total"] == 57 and body["count"] <= 7
        walked += [vm["instance_id"] for vm in body["vms"]]
        url = body["links"]["next"]
    assert walked == [vm["instance_id"] for vm in listed if vm["state"] == "active"]
    metrics = api.get("/metrics")
    assert 'eventfed_api_state_records_total{outcome="malformed"} 2.0' in metrics
    assert f'eventfed_api_state_vms{{vim_id="{VIM_1}"}} 59.0' in metrics

    # It keeps following the topic: a new VM appears, a tombstone removes one.
    writer.put(VIM_1, "vm-new", state="building", status="CREATE", phase="start")
    writer.delete(VIM_1, "vm-000")
    writer.flush()

    def followed() -> bool:
        ids = {vm["instance_id"] for vm in api.all_vms(VIM_1, limit=100)}
        return "vm-new" in ids and "vm-000" not in ids

    wait_until(followed, what="the new VM and the tombstone reach the API")
    before_restart = {vim_id: api.all_vms(vim_id, limit=100) for vim_id in (VIM_1, VIM_2)}
    vims_before = api.get(f"{V1}/vims")
    assert api.stop() == 0
    assert "state API stopped" in api.log_path.read_text()

    restarted = start_api(api_processes, tmp_path, kafka_bootstrap, state_topic)
    assert {vim_id: restarted.all_vms(vim_id, limit=100) for vim_id in (VIM_1, VIM_2)} == before_restart
    assert restarted.get(f"{V1}/vims") == vims_before
    assert restarted.stop() == 0


def test_not_ready_until_the_topic_exists(
    tmp_path: Path,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[..., str],
    unique: str,
    api_processes: list[ApiProcess],
) -> None:
    topic = f"test.state.late.{unique}"
    api = start_api(api_processes, tmp_path, kafka_bootstrap, topic, wait_ready=False)

    def says_missing() -> bool:
        status, body, _ = api.request("GET", "/readyz")
        return status == 503 and "does not exist" in (body["reason"] or "")

    wait_until(says_missing, what="/readyz names the missing topic")
    status, _body, headers = api.request("GET", f"{V1}/vims")
    assert status == 503 and headers.get("Retry-After") == "5"
    kafka_topic_factory(topic, partitions=2, config={"cleanup.policy": "compact"})
    # The API looks for the topic again every few seconds.
    wait_until(lambda: api.request("GET", "/readyz")[0] == 200, 60, "ready once the topic exists")
    assert api.get(f"{V1}/vims") == {"vims": []}
    assert api.stop() == 0


def test_not_ready_when_kafka_is_unreachable(
    tmp_path: Path, unique: str, api_processes: list[ApiProcess]
) -> None:
    closed_port = free_port()
    api = start_api(
        api_processes, tmp_path, f"127.0.0.1:{closed_port}", f"test.state.{unique}", wait_ready=False
    )
    assert api.get("/healthz") == {"status": "ok"}

    def unreachable() -> bool:
        status, body, _ = api.request("GET", "/readyz")
        return status == 503 and "Kafka is not reachable" in (body["reason"] or "")

    wait_until(unreachable, what="/readyz says Kafka is not reachable")
    assert api.stop() == 0


def test_bearer_token_on_the_real_server(
    tmp_path: Path,
    kafka_bootstrap: str,
    state_topic: str,
    writer: StateWriter,
    api_processes: list[ApiProcess],
) -> None:
    writer.put(VIM_1, "vm-1")
    writer.flush()
    api = start_api(api_processes, tmp_path, kafka_bootstrap, state_topic, EVENTFED_API_AUTH_TOKEN="it-token")
    status, body, headers = api.request("GET", f"{V1}/vims")
    assert status == 401 and (headers.get("WWW-Authenticate") or "").startswith("Bearer")
    assert body == {"error": {"status": 401, "message": "authentication required"}}
    vims = api.get(f"{V1}/vims", headers={"Authorization": "Bearer it-token"})
    assert [vim["vim_id"] for vim in vims["vims"]] == [VIM_1]
    assert api.request("GET", "/metrics")[0] == 200
    assert api.stop() == 0


def test_sigint_stops_cleanly(
    tmp_path: Path, kafka_bootstrap: str, state_topic: str, api_processes: list[ApiProcess]
) -> None:
    api = start_api(api_processes, tmp_path, kafka_bootstrap, state_topic)
    assert api.proc is not None
    api.proc.popen.send_signal(signal.SIGINT)
    assert api.proc.popen.wait(30) == 0
