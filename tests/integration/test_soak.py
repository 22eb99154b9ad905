"""`make soak` for two minutes: faults while two clouds publish, then every notification accounted for."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.soak]

SOAK_SECONDS_BOUND = 1500


@pytest.mark.timeout(SOAK_SECONDS_BOUND + 300)
def test_two_minutes_under_faults_account_for_every_notification(tmp_path):
    report = tmp_path / "soak.md"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SOAK_MINUTES": "2",
        "SOAK_REPORT": str(report),
        "SOAK_WORKDIR": str(tmp_path / "work"),
    }
    soak = subprocess.Popen(
        [sys.executable, "-m", "bench.soak"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = soak.communicate(timeout=SOAK_SECONDS_BOUND)
    except subprocess.TimeoutExpired:
        # SIGTERM lets the soak stop its brokers and processes.
        soak.send_signal(signal.SIGTERM)
        output, _ = soak.communicate(timeout=300)
        pytest.fail(f"the soak did not finish in {SOAK_SECONDS_BOUND} s:\n{output[-3000:]}")
    text = report.read_text() if report.exists() else ""
    assert soak.returncode == 0, f"{output[-3000:]}\n{text}"
    assert "**Verdict: PASS**" in text
    confirmed = int(re.search(r"\| confirmed by RabbitMQ \(published\) \| (\d+) \|", text).group(1))
    on_events = int(re.search(r"\| on the events topic \| (\d+) \|", text).group(1))
    missing = int(re.search(r"\| on neither \(missing\) \| (\d+) \|", text).group(1))
    assert confirmed > 1000 and missing == 0 and on_events > 0
    # Every fault of the plan happened while the clouds published.
    for fault in (
        "SIGKILL listen-soakowner_region-one",
        "SIGKILL listen-soakowner_region-two",
        "SIGKILL stream-",
    ):
        assert fault in text
    assert "SIGKILL api" in text and "kafka started again" in text and "rabbitmq started again" in text
