"""A small HTTP endpoint for probes and Prometheus: /healthz, /readyz, /metrics.

Liveness answers as long as the process serves HTTP; readiness asks the deployable's own check
(brokers reachable, state caught up), which returns (ready, reason).
"""

from __future__ import annotations

import json
import logging
import platform
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Info, generate_latest

from bridge import __version__

LOG = logging.getLogger(__name__)

ReadinessCheck = Callable[[], tuple[bool, str]]

_REGISTRIES_WITH_BUILD_INFO: set[int] = set()


def register_build_info(component: str, registry: CollectorRegistry = REGISTRY) -> None:
    """`eventfed_build_info{version, component, python}`: which build answers, once per registry."""
    if id(registry) in _REGISTRIES_WITH_BUILD_INFO:
        return
    _REGISTRIES_WITH_BUILD_INFO.add(id(registry))
    info = Info("eventfed_build", "The eventfed build serving these metrics", registry=registry)
    info.info({"version": __version__, "component": component, "python": platform.python_version()})


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        readiness: ReadinessCheck,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._readiness = readiness
        self._registry = registry
        handler = self._handler_class()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        LOG.info("health and metrics on http://%s:%s", *self._server.server_address[:2])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def check_ready(self) -> tuple[bool, str]:
        try:
            return self._readiness()
        except Exception as exc:  # a failing check means not ready, never a crash
            return False, f"readiness check failed: {exc}"

    def readiness_metric(self) -> bytes:
        """`eventfed_ready`: the /readyz answer at scrape time, so an alert sees what the probe sees."""
        ready, _ = self.check_ready()
        return (
            b"# HELP eventfed_ready 1 while /readyz answers ready, 0 otherwise\n"
            b"# TYPE eventfed_ready gauge\n"
            b"eventfed_ready " + (b"1.0" if ready else b"0.0") + b"\n"
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(200, "application/json", b'{"status": "alive"}')
                elif path == "/readyz":
                    ready, reason = outer.check_ready()
                    body = json.dumps({"ready": ready, "reason": reason}).encode()
                    self._send(200 if ready else 503, "application/json", body)
                elif path == "/metrics":
                    body = generate_latest(outer._registry) + outer.readiness_metric()
                    self._send(200, CONTENT_TYPE_LATEST, body)
                else:
                    self._send(404, "application/json", b'{"error": "not found"}')

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                LOG.debug("health http: %s", format % args)

        return Handler
