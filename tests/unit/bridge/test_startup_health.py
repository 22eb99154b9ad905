"""Liveness first: with Kafka unreachable, `listen` and `stream` answer /healthz while topic
creation is still waiting on Kafka, and /readyz says why they are not ready.

What is asserted is the order (health before the wait on Kafka), not a time: this machine is shared
and a time limit would measure its load."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.support.processes import ROOT, clean_env, free_port

# Only how long to look before calling it a hang.
LOOK_SECONDS = 60.0


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    ("command", "starting_reason"),
    [("listen", "checking the raw and dead-letter topics"), ("stream", "creating topics")],
)
def test_health_answers_while_start_up_still_waits_for_kafka(tmp_path, command, starting_reason):
    port = free_port()
    env = clean_env(
        EVENTFED_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        EVENTFED_METRICS_PORT=str(port),
        # Never contacted: the listener connects to RabbitMQ only after the topic check.
        EVENTFED_TRANSPORT_URL=f"rabbit://guest:guest@127.0.0.1:{free_port()}/",
        EVENTFED_VIM_ID="owner_region",
        EVENTFED_DATA_DIR=str(tmp_path / "data"),
        EVENTFED_WEB_PORT=str(free_port()),
        PYTHONPATH=str(ROOT),
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        answered_after = None
        while time.monotonic() - started < LOOK_SECONDS:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                time.sleep(0.05)
                continue
            answered_after = time.monotonic() - started
            break
        assert answered_after is not None, "no health endpoint"
        assert (status, body) == (200, {"status": "alive"})
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503
        assert body["ready"] is False
        assert body["reason"].startswith(starting_reason)
    finally:
        process.kill()
        process.wait(10)
