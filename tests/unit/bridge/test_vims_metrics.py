"""A VIM removed from the VIMs file takes its metric series with it, in the listener and the
poller: the `vim` label stays bounded by the file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bridge.listener.fleet import ListenerFleet
from bridge.poller import fleet as poller_fleet
from bridge.poller.service import API_CALLS, CYCLE_SECONDS, CYCLES, HIGH_WATER, WRITTEN
from bridge.settings import PollerSettings, VimListenerSettings
from bridge.shared_producer import SharedProducer
from bridge.vims import parse_vims, poller_settings
from tests.unit.bridge.test_shared_producer import HeldProducer

pytestmark = pytest.mark.usefixtures("no_eventfed_env")


def samples_of(vim: str, prefix: str) -> list[str]:
    return [
        sample.name
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name.startswith(prefix) and sample.labels.get("vim") == vim
    ]


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_removed_listener_vim_s_connect_failures_go_with_it():
    vim = "owner_removed-listen"
    settings = VimListenerSettings(
        vim_id=vim,
        # Nothing listens on port 1: every attempt fails as unreachable, counted per VIM.
        transport_url="rabbit://guest:guest@127.0.0.1:1/v",  # type: ignore[arg-type]
        retry_backoff_initial=0.05,
        retry_backoff_max=0.05,
    )
    shared = SharedProducer(HeldProducer(), 1024 * 1024).start()
    fleet = ListenerFleet(shared, idle_wait=0.05)
    try:
        fleet.apply({vim: settings})
        assert wait_for(lambda: samples_of(vim, "eventfed_listener_rabbit_connect_failures"))
        assert not fleet.states()[vim][0]
        fleet.apply({})
        assert wait_for(lambda: not samples_of(vim, "eventfed_listener_"))
    finally:
        fleet.stop_all()
        shared.stop(1)


def test_a_removed_poller_vim_s_series_go_with_it(tmp_path: Path, monkeypatch):
    vims = tmp_path / "vims.yaml"
    vims.write_text("vims: []\n")
    process = PollerSettings(vims_file=vims, kafka_bootstrap_servers="127.0.0.1:1")  # type: ignore[arg-type]
    vim = "owner_removed-poll"
    entry = {
        "vim_id": vim,
        "mode": "poll",
        "nova_auth": "token",
        "nova_endpoint": "http://n/v2.1",
        "nova_token": "t",
    }
    wanted = poller_settings(process, parse_vims({"vims": [entry]}))

    def no_nova(settings):
        raise RuntimeError("no Nova in a unit test")

    monkeypatch.setattr(poller_fleet, "build_client", no_nova)
    deployable = poller_fleet.PollerFleetDeployable(process)
    deployable.fleet.apply(wanted)
    # What a VIM's cycles leave behind, one series of each kind.
    CYCLES.labels(vim, "ok").inc()
    CYCLES.labels(vim, "failed").inc()
    API_CALLS.labels(vim).inc()
    WRITTEN.labels(vim).inc()
    CYCLE_SECONDS.labels(vim).observe(0.1)
    HIGH_WATER.labels(vim).set(1.0)
    assert samples_of(vim, "eventfed_poll_")
    deployable.fleet.apply({})
    assert wait_for(lambda: not samples_of(vim, "eventfed_poll_"))
    assert deployable.fleet.runs == {}


def test_the_poller_s_inflight_budget_is_its_setting(tmp_path: Path):
    vims = tmp_path / "vims.yaml"
    vims.write_text("vims: []\n")
    process = PollerSettings(vims_file=vims, vims_inflight_bytes=8 * 1024 * 1024)  # type: ignore[arg-type]
    deployable = poller_fleet.PollerFleetDeployable(process)
    assert deployable.shared.budget_bytes == 4 * 1024 * 1024
