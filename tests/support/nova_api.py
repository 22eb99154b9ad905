"""An in-process HTTP server shaped like Nova's `GET /servers/detail`, for unit tests and the bench.

Not Nova: integration tests run against real Nova's API (tests/support/real_nova.py). It answers
what `eventfed poll` asks, as Nova 34 does (nova/api/openstack/compute/servers.py and
nova/db/main/api.py): servers sorted by created_at then id, newest first; `changes-since` keeps
servers whose updated_at >= it, deleted ones included, and without it deleted servers are left
out; `limit` is capped at max_limit and a full page has a `servers_links` "next" link with the
marker; `updated` in whole seconds; a wrong X-Auth-Token is a 401. `POST /identity/v3/auth/tokens`
plays Keystone v3 (password auth, a catalog with this compute endpoint) for `password`.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

# The task_state and API status Nova shows for a vm_state (nova/api/openstack/common.py).
STATUS = {
    "active": "ACTIVE",
    "building": "BUILD",
    "paused": "PAUSED",
    "suspended": "SUSPENDED",
    "stopped": "SHUTOFF",
    "rescued": "RESCUE",
    "resized": "VERIFY_RESIZE",
    "soft-delete": "SOFT_DELETED",
    "deleted": "DELETED",
    "error": "ERROR",
    "shelved": "SHELVED",
    "shelved_offloaded": "SHELVED_OFFLOADED",
}
POWER = {"active": 1, "paused": 3, "stopped": 4, "suspended": 7, "deleted": 0, "building": 0}


def api_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def server(
    server_id: str,
    vm_state: str,
    updated: datetime,
    task_state: str | None = None,
    host: str = "compute-1",
    tenant_id: str = "6f70656e737461636b20342065766572",
    created: datetime | None = None,
    name: str = "vm",
) -> dict[str, Any]:
    """One server as microversion 2.1 shows it to an admin."""
    created = created or updated
    return {
        "id": server_id,
        "name": name,
        "status": STATUS.get(vm_state, "UNKNOWN"),
        "tenant_id": tenant_id,
        "user_id": "admin",
        "metadata": {"role": "web"},
        "hostId": "f3c9fd9a1de1c5d1d0e0f8f6f2d1c6b3e5a7c9d1e3f5a7b9c1d3e5f7",
        "image": {"id": "155d900f-4e14-4e4c-a73d-069cbf4541e6", "links": []},
        "flavor": {"id": "1", "links": []},
        "created": api_time(created),
        "updated": api_time(updated),
        "addresses": {"private": [{"addr": "192.168.1.30", "version": 4}]},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": [],
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": "nova",
        "config_drive": "",
        "key_name": None,
        "OS-SRV-USG:launched_at": api_time(created).replace("Z", ".000000"),
        "OS-SRV-USG:terminated_at": None,
        "OS-EXT-SRV-ATTR:host": host,
        "OS-EXT-SRV-ATTR:instance_name": "instance-00000001",
        "OS-EXT-SRV-ATTR:hypervisor_hostname": "fake-mini",
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:power_state": POWER.get(vm_state, 0),
        "os-extended-volumes:volumes_attached": [],
        "security_groups": [{"name": "default"}],
    }


class FakeNovaApi:
    """Servers in memory behind `/v2.1/servers/detail`; thread-safe changes from the test."""

    def __init__(
        self,
        token: str = "admin:admin",
        max_limit: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.token = token
        self.password = "secret"
        # Regions of the catalog's compute endpoints (each with a public, internal and admin URL).
        self.regions = ["RegionOne"]
        self.max_limit = max_limit
        self.clock = clock
        self.servers: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self.down = False  # answer 503, as a Nova API behind a load balancer with no backend
        self._lock = threading.Lock()
        self._ordered: list[dict[str, Any]] | None = None
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v2.1"

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/identity/v3"

    def _keystone_token(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Keystone v3's answer to a password authentication, or None for a wrong password."""
        try:
            password = body["auth"]["identity"]["password"]["user"]["password"]
        except (KeyError, TypeError):
            return None
        if password != self.password:
            return None
        endpoints = [
            {"interface": interface, "region": region, "region_id": region, "url": self.endpoint}
            for region in self.regions
            for interface in ("public", "internal", "admin")
        ]
        return {
            "token": {
                "methods": ["password"],
                "expires_at": api_time(datetime.now(UTC) + timedelta(hours=1)),
                "issued_at": api_time(datetime.now(UTC)),
                "user": {"id": "u1", "name": "admin", "domain": {"id": "default", "name": "Default"}},
                "project": {"id": "p1", "name": "admin", "domain": {"id": "default", "name": "Default"}},
                "roles": [{"id": "r1", "name": "admin"}],
                "catalog": [{"type": "compute", "name": "nova", "id": "c1", "endpoints": endpoints}],
            }
        }

    def start(self) -> FakeNovaApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def put(self, item: dict[str, Any]) -> None:
        with self._lock:
            self.servers[item["id"]] = item
            self._ordered = None

    def change(self, server_id: str, vm_state: str, task_state: str | None = None, **extra: Any) -> None:
        """A state change as Nova's API shows it afterwards, `updated` on the fake's clock."""
        with self._lock:
            current = self.servers[server_id]
            now = self.clock()
            current.update(
                {
                    "OS-EXT-STS:vm_state": vm_state,
                    "OS-EXT-STS:task_state": task_state,
                    "status": STATUS.get(vm_state, "UNKNOWN"),
                    "OS-EXT-STS:power_state": POWER.get(vm_state, 0),
                    "updated": api_time(now),
                    **extra,
                }
            )
            self._ordered = None

    def add_many(self, count: int, updated: datetime) -> list[str]:
        ids = []
        with self._lock:
            for n in range(count):
                server_id = str(uuid.UUID(int=n + 1))
                created = updated - timedelta(seconds=count - n)
                self.servers[server_id] = server(
                    server_id, "active", updated, created=created, name=f"vm-{n}"
                )
                ids.append(server_id)
            self._ordered = None
        return ids

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        with self._lock:
            if self._ordered is None:
                self._ordered = sorted(
                    self.servers.values(), key=lambda s: (s["created"], s["id"]), reverse=True
                )
            ordered = self._ordered
        since = query.get("changes-since", [None])[0]
        if since is not None:
            floor = datetime.fromisoformat(since.replace("Z", "+00:00"))
            chosen = [
                s for s in ordered if datetime.fromisoformat(s["updated"].replace("Z", "+00:00")) >= floor
            ]
        else:
            chosen = [s for s in ordered if s["OS-EXT-STS:vm_state"] != "deleted"]
        marker = query.get("marker", [None])[0]
        if marker is not None:
            positions = [i for i, s in enumerate(chosen) if s["id"] == marker]
            if not positions:
                raise LookupError(marker)
            chosen = chosen[positions[0] + 1 :]
        limit = min(int(query.get("limit", [self.max_limit])[0]), self.max_limit)
        page = chosen[:limit]
        body: dict[str, Any] = {"servers": page}
        if len(page) == limit and page:
            params = {k: v[0] for k, v in query.items() if k != "marker"}
            params["marker"] = page[-1]["id"]
            body["servers_links"] = [
                {"rel": "next", "href": f"{self.endpoint}/servers/detail?{urlencode(sorted(params.items()))}"}
            ]
        return body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def date_time_string(self, timestamp: float | None = None) -> str:
                return format_datetime(outer.clock().astimezone(UTC), usegmt=True)

            def do_POST(self) -> None:
                outer.requests.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if urlsplit(self.path).path != "/identity/v3/auth/tokens":
                    return self._send(404, {"error": {"code": 404, "message": "not found"}})
                answer = outer._keystone_token(body)
                if answer is None:
                    return self._send(
                        401,
                        {
                            "error": {
                                "code": 401,
                                "message": "The request you have made requires authentication.",
                                "title": "Unauthorized",
                            }
                        },
                    )
                self._send(201, answer, {"X-Subject-Token": outer.token})

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                parts = urlsplit(self.path)
                if outer.down:
                    return self._send(503, {"message": "Service Unavailable"})
                if self.headers.get("X-Auth-Token") != outer.token:
                    return self._send(401, {"error": {"code": 401, "message": "Unauthorized"}})
                if parts.path.rstrip("/") != "/v2.1/servers/detail":
                    return self._send(404, {"itemNotFound": {"code": 404, "message": "not found"}})
                try:
                    body = outer._list(parse_qs(parts.query))
                except LookupError as exc:
                    return self._send(
                        400, {"badRequest": {"code": 400, "message": f"marker [{exc}] not found"}}
                    )
                self._send(200, body)

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
