"""`eventfed_ready` on /metrics follows the same check as /readyz, at scrape time."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry

from bridge.health import HealthServer


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ready_gauge_follows_the_readiness_check() -> None:
    state = {"ready": False}

    def readiness() -> tuple[bool, str]:
        if state.get("boom"):
            raise RuntimeError("broken")
        return state["ready"], "ok" if state["ready"] else "waiting for Kafka"

    server = HealthServer("127.0.0.1", 0, readiness, registry=CollectorRegistry()).start()
    try:
        assert _get(server.port, "/readyz")[0] == 503
        assert "\neventfed_ready 0.0\n" in "\n" + _get(server.port, "/metrics")[1]
        state["ready"] = True
        assert _get(server.port, "/readyz")[0] == 200
        assert "\neventfed_ready 1.0\n" in "\n" + _get(server.port, "/metrics")[1]
        state["boom"] = True
        assert _get(server.port, "/readyz")[0] == 503
        assert "\neventfed_ready 0.0\n" in "\n" + _get(server.port, "/metrics")[1]
    finally:
        server.stop()
