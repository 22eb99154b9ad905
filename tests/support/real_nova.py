"""Real Nova for tests: a RabbitMQ vhost of its own, `tests/real_nova/server.py` as a process
(started and stopped by PID), and a small client of its REST API over plain HTTP.

    with RabbitVhost(f"realnova-{unique}") as vhost:
        nova = RealNova(tmp_path / "nova.log", vhost.url, notification_format="both").start()
        try:
            server = nova.client.create_server("vm-1")
            nova.client.action(server["id"], {"pause": None}, "PAUSED")
        finally:
            nova.stop()

The Nova venv is `.venv-nova` (`make nova-env`); EVENTFED_TEST_NOVA_PYTHON points elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.processes import ROOT, Proc, clean_env, free_port, wait_http
from tests.support.stream import StreamRun

NOVA_PYTHON = os.environ.get("EVENTFED_TEST_NOVA_PYTHON", str(ROOT / ".venv-nova" / "bin" / "python"))
SERVER = ROOT / "tests" / "real_nova" / "server.py"
READY = "REAL_NOVA_READY "
MICROVERSION = "compute latest"
RABBIT_AUTHORITY = "guest:guest@127.0.0.1:5672"


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(
        [str(ROOT / "scripts/rabbitmq"), "ctl", *args], capture_output=True, text=True, check=True
    ).stdout


class RabbitVhost:
    """A vhost on the shared RabbitMQ for one test's Nova and listener; deleted on exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"rabbit://{RABBIT_AUTHORITY}/{name}"

    def __enter__(self) -> RabbitVhost:
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def delete(self) -> None:
        subprocess.run(
            [str(ROOT / "scripts/rabbitmq"), "ctl", "delete_vhost", self.name],
            capture_output=True,
            check=False,
        )


class VimListener:
    """`eventfed listen` for one VIM on a test's vhost, into a stream run's raw and dead-letter
    topics; `settings` are more of its environment (EVENTFED_* names)."""

    def __init__(
        self, log_path: Path, vhost: RabbitVhost, vim_id: str, pool: str, run: StreamRun, **settings: str
    ) -> None:
        self.vhost = vhost
        self.pool = pool
        metrics_port = free_port()
        self.readyz = f"http://127.0.0.1:{metrics_port}/readyz"
        self.proc = Proc(
            ["listen"],
            clean_env(
                EVENTFED_TRANSPORT_URL=vhost.url,
                EVENTFED_VIM_ID=vim_id,
                EVENTFED_POOL=pool,
                EVENTFED_RAW_TOPIC=run.raw_topic,
                EVENTFED_DLQ_TOPIC=run.dlq_topic,
                EVENTFED_KAFKA_BOOTSTRAP_SERVERS=run.bootstrap,
                EVENTFED_METRICS_PORT=str(metrics_port),
                EVENTFED_PARTITIONS=run.base_env["EVENTFED_PARTITIONS"],
                **settings,
            ),
            log_path,
        )

    def wait_listening(self, timeout: float = 60) -> None:
        """Ready, and its pool queue is on the vhost: what Nova publishes from now on reaches it."""
        wait_http(self.readyz, timeout, self.proc)
        deadline = time.monotonic() + timeout
        while self.pool not in queues_in(self.vhost.name):
            if time.monotonic() > deadline:
                raise AssertionError(f"no queue {self.pool} in vhost {self.vhost.name} within {timeout} s")
            time.sleep(0.2)

    def stop_beside(self, nova: RealNova) -> None:
        """Stop the listener and Nova at once (each takes seconds to close its connections); both
        must exit cleanly."""
        self.proc.popen.send_signal(signal.SIGTERM)
        assert nova.stop() == 0, nova.log()[-3000:]
        assert self.proc.popen.wait(60) == 0, self.proc.log()[-3000:]


def queues_in(vhost: str) -> set[str]:
    out = rabbitmqctl("list_queues", "-p", vhost, "-q", "--no-table-headers", "name")
    return {line.strip() for line in out.splitlines() if line.strip()}


class NovaError(AssertionError):
    """Nova answered something a test did not expect, or a server never reached its status."""


class NovaClient:
    """Plain HTTP to Nova's compute API, as the admin user (the fixture's default identity)."""

    def __init__(
        self, api_url: str, images: list[str], token: str | None = None, timeout: float = 90
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.images = images
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        url = path if path.startswith("http") else self.api_url + path
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("OpenStack-API-Version", MICROVERSION)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token is not None:
            request.add_header("X-Auth-Token", self.token)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        return status, json.loads(raw) if raw else None

    def call(
        self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 202, 204)
    ) -> Any:
        status, answer = self.request(method, path, body)
        if status not in expect:
            raise NovaError(f"{method} {path} -> {status}: {answer}")
        return answer

    def server(self, server_id: str) -> dict[str, Any] | None:
        """The server, or None once Nova no longer shows it (deleted)."""
        status, answer = self.request("GET", f"/servers/{server_id}")
        if status == 404:
            return None
        if status != 200:
            raise NovaError(f"GET /servers/{server_id} -> {status}: {answer}")
        return dict(answer["server"])

    def wait_for(self, server_id: str, status: str | None) -> dict[str, Any] | None:
        """Until the server has `status` and no task in progress (None: until it is gone)."""
        deadline = time.monotonic() + self.timeout
        seen: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            seen = self.server(server_id)
            if seen is None and status is None:
                return None
            if seen is not None:
                if seen["status"] == "ERROR" and status != "ERROR":
                    raise NovaError(f"server {server_id} went to ERROR: {seen.get('fault')}")
                if seen["status"] == status and seen.get("OS-EXT-STS:task_state") is None:
                    return seen
            time.sleep(0.1)
        state = None if seen is None else (seen["status"], seen.get("OS-EXT-STS:task_state"))
        raise NovaError(f"server {server_id} not {status or 'deleted'} in {self.timeout}s (last {state})")

    def create_server(self, name: str, flavor: str = "1", status: str = "ACTIVE") -> dict[str, Any]:
        body = {"server": {"name": name, "imageRef": self.images[0], "flavorRef": flavor, "networks": "none"}}
        created = self.call("POST", "/servers", body)
        found = self.wait_for(created["server"]["id"], status)
        assert found is not None
        return found

    def action(self, server_id: str, body: dict[str, Any], status: str | None) -> dict[str, Any] | None:
        self.call("POST", f"/servers/{server_id}/action", body)
        return self.wait_for(server_id, status)

    def delete(self, server_id: str, status: str | None = None) -> dict[str, Any] | None:
        """DELETE the server; `status` SOFT_DELETED when reclaim_instance_interval is set."""
        self.call("DELETE", f"/servers/{server_id}")
        return self.wait_for(server_id, status)

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change Nova options at run time (the fixture's POST /fixture/config)."""
        base = self.api_url.rsplit("/", 1)[0]
        return dict(self.call("POST", f"{base}/fixture/config", options))


class RealNova:
    """`tests/real_nova/server.py` as a process: real Nova publishing to `transport_url`."""

    def __init__(
        self,
        log_path: Path,
        transport_url: str,
        notification_format: str = "both",
        notify_on_state_change: str = "none",
        token: str | None = None,
    ) -> None:
        self.log_path = log_path
        self.args = [
            NOVA_PYTHON,
            str(SERVER),
            "--transport-url",
            transport_url,
            "--notification-format",
            notification_format,
            "--notify-on-state-change",
            notify_on_state_change,
        ]
        if token is not None:
            self.args += ["--token", token]
        self.token = token
        self.popen: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    @property
    def api_url(self) -> str:
        return str(self.info["api_url"])

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def client(self) -> NovaClient:
        return NovaClient(self.api_url, list(self.info["images"]), token=self.token)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 180) -> RealNova:
        if not Path(NOVA_PYTHON).exists():
            raise AssertionError(f"{NOVA_PYTHON} is missing: run `make nova-env`")
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if line.startswith(READY):
                    self.info = json.loads(line[len(READY) :])
                    return self
            if self.popen.poll() is not None:
                raise AssertionError(f"real Nova exited with {self.popen.returncode}:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"real Nova not ready in {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then SIGKILL if it has not stopped within `timeout`; the exit code."""
        if self.popen is None:
            return 0
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.popen.returncode)

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(30)

    def __enter__(self) -> RealNova:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# Lifecycles: each step drives one user action on one server over the API and waits until Nova is
# done with it. `create` is implicit: run_lifecycle starts every lifecycle with it.
StepFn = Callable[[NovaClient, str], Any]


def _action(body: dict[str, Any], status: str | None) -> StepFn:
    return lambda client, server_id: client.action(server_id, body, status)


def _soft_delete(client: NovaClient, server_id: str) -> None:
    client.configure(reclaim_instance_interval=3600)
    try:
        client.delete(server_id, "SOFT_DELETED")
    finally:
        client.configure(reclaim_instance_interval=0)


STEPS: dict[str, StepFn] = {
    "pause": _action({"pause": None}, "PAUSED"),
    "unpause": _action({"unpause": None}, "ACTIVE"),
    "stop": _action({"os-stop": None}, "SHUTOFF"),
    "start": _action({"os-start": None}, "ACTIVE"),
    "reboot_soft": _action({"reboot": {"type": "SOFT"}}, "ACTIVE"),
    "reboot_hard": _action({"reboot": {"type": "HARD"}}, "ACTIVE"),
    "rebuild": lambda client, server_id: client.action(
        server_id, {"rebuild": {"imageRef": client.images[1]}}, "ACTIVE"
    ),
    "suspend": _action({"suspend": None}, "SUSPENDED"),
    "resume": _action({"resume": None}, "ACTIVE"),
    # shelved_offload_time is 0: the shelved server is offloaded at once.
    "shelve": _action({"shelve": None}, "SHELVED_OFFLOADED"),
    "unshelve": _action({"unshelve": None}, "ACTIVE"),
    "resize": _action({"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE"),
    "resize_confirm": _action({"confirmResize": None}, "ACTIVE"),
    "resize_back": _action({"resize": {"flavorRef": "1"}}, "VERIFY_RESIZE"),
    "resize_revert": _action({"revertResize": None}, "ACTIVE"),
    "rescue": _action({"rescue": None}, "RESCUE"),
    "unrescue": _action({"unrescue": None}, "ACTIVE"),
    "lock": _action({"lock": None}, "ACTIVE"),
    "unlock": _action({"unlock": None}, "ACTIVE"),
    "migrate": _action({"migrate": None}, "VERIFY_RESIZE"),
    "migrate_confirm": _action({"confirmResize": None}, "ACTIVE"),
    "soft_delete": _soft_delete,
    "restore": _action({"restore": None}, "ACTIVE"),
    "force_delete": _action({"forceDelete": None}, None),
    "delete": lambda client, server_id: client.delete(server_id),
}

# Every action the fixture supports, on one server (ends deleted by forceDelete after a soft
# delete), then a second server deleted plainly.
ALL_ACTIONS = [
    ["pause", "unpause", "stop", "start", "reboot_soft", "reboot_hard", "rebuild", "suspend", "resume",
     "shelve", "unshelve", "resize", "resize_confirm", "resize_back", "resize_revert", "rescue", "unrescue",
     "lock", "unlock", "migrate", "migrate_confirm", "soft_delete", "restore", "soft_delete", "force_delete"],
    ["delete"],
]  # fmt: skip


def run_lifecycle(
    client: NovaClient, name: str, steps: list[str], after: Callable[[str, str], None] | None = None
) -> str:
    """Create server `name`, then run `steps` on it; `after(step, server_id)` follows each step."""
    server_id = str(client.create_server(name)["id"])
    if after is not None:
        after("create", server_id)
    for step in steps:
        STEPS[step](client, server_id)
        if after is not None:
            after(step, server_id)
    return server_id
