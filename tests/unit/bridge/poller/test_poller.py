"""`eventfed poll`'s cycles against an in-process HTTP server shaped like Nova's servers API:
paging, the high-water mark and its overlap, Nova down, Kafka refusing, refused credentials.
(Against real Nova: tests/integration/test_poll.py.)"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bridge.poller.nova import Listing, NovaAuthError, NovaServers, NovaUnavailable, build_client
from bridge.poller.service import EXIT_AUTH, KafkaRefused, Poller, PollState, poll_until_stopped
from bridge.raw_writer import BatchResult
from bridge.retry import Backoff
from bridge.settings import PollerSettings, SettingsError, load
from schemas.raw import DeadLetter, RawRecord
from tests.support.nova_api import FakeNovaApi, server

VIM = "owner_region"
START = datetime(2026, 11, 29, 8, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class MemoryWriter:
    def __init__(self) -> None:
        self.records: list[RawRecord | DeadLetter] = []
        self.refuse = False

    def write(self, records):
        if self.refuse:
            return BatchResult(failed=list(records), first_error="broker down")
        self.records.extend(records)
        return BatchResult(written=len(records))

    def documents(self) -> list[dict]:
        return [json.loads(r.value) for r in self.records]


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.value: datetime | None = None
        self.writes = 0

    def read(self):
        return self.value

    def write(self, high_water):
        self.value = high_water
        self.writes += 1


@pytest.fixture
def nova():
    clock = Clock()
    api = FakeNovaApi(max_limit=3, clock=clock).start()
    api.clock_ = clock  # type: ignore[attr-defined]
    yield api
    api.stop()


def settings(api: FakeNovaApi, **overrides) -> PollerSettings:
    values = {
        "vim_id": VIM,
        "nova_auth": "token",
        "nova_endpoint": api.endpoint,
        "nova_token": "admin:admin",
        "poll_overlap_seconds": 60,
        "poll_lookback_seconds": 0,
        **overrides,
    }
    return PollerSettings(**values)


def make_poller(api, writer=None, checkpoints=None, **overrides):
    s = settings(api, **overrides)
    writer = writer or MemoryWriter()
    checkpoints = checkpoints or MemoryCheckpoints()
    poller = Poller(s, NovaServers(build_client(s), s.poll_page_size), writer, checkpoints, clock=api.clock_)
    return poller, writer, checkpoints


def test_first_cycle_lists_every_live_server_across_pages_and_saves_novas_time(nova):
    ids = nova.add_many(7, START - timedelta(days=3))
    nova.put(server("gone", "deleted", START - timedelta(days=2)))
    poller, writer, checkpoints = make_poller(nova)
    result = poller.cycle()
    assert result.full and result.calls == 3 and result.servers == 7  # pages of 3, 3, 1 (max_limit 3)
    assert sorted(d["payload"]["id"] for d in writer.documents()) == sorted(ids)
    assert all(d["source"] == "poll" for d in writer.documents())
    assert "changes-since" not in nova.requests[0] and "all_tenants=1" in nova.requests[0]
    assert "marker=" in nova.requests[1]
    assert checkpoints.value == START and checkpoints.writes == 1


def test_next_cycle_asks_for_changes_since_the_mark_less_the_overlap_and_writes_only_changes(nova):
    ids = nova.add_many(5, START - timedelta(days=3))
    poller, writer, _ = make_poller(nova)
    poller.cycle()
    nova.clock_.now = START + timedelta(seconds=30)
    nova.change(ids[0], "paused")
    nova.change(ids[1], "deleted")
    written_before = len(writer.records)
    result = poller.cycle()
    assert not result.full
    assert "changes-since=2026-11-29T07%3A59%3A00Z" in nova.requests[-1]
    changed = [d["payload"] for d in writer.documents()[written_before:]]
    assert {(s["id"], s["OS-EXT-STS:vm_state"]) for s in changed} == {(ids[0], "paused"), (ids[1], "deleted")}
    # Read again in the next cycle's overlap, unchanged: not written again.
    nova.clock_.now = START + timedelta(seconds=60)
    again = poller.cycle()
    assert (again.servers, again.written, again.unchanged) == (2, 0, 2)


def test_a_change_stamped_before_the_mark_by_a_skewed_host_is_read_in_the_overlap(nova):
    ids = nova.add_many(2, START - timedelta(days=1))
    poller, writer, _ = make_poller(nova)
    poller.cycle()
    # Committed after the cycle, stamped 40 s before it by a host whose clock is behind.
    nova.clock_.now = START - timedelta(seconds=40)
    nova.change(ids[1], "stopped")
    nova.clock_.now = START + timedelta(seconds=10)
    poller.cycle()
    assert writer.documents()[-1]["payload"]["OS-EXT-STS:vm_state"] == "stopped"


def test_nova_down_leaves_the_mark_and_nothing_is_missed_when_it_returns(nova):
    ids = nova.add_many(3, START - timedelta(days=1))
    poller, writer, checkpoints = make_poller(nova)
    poller.cycle()
    nova.down = True
    nova.clock_.now = START + timedelta(minutes=5)
    nova.change(ids[2], "stopped")
    with pytest.raises(NovaUnavailable):
        poller.cycle()
    assert poller.high_water == START and checkpoints.writes == 1
    nova.clock_.now = START + timedelta(minutes=30)
    nova.down = False
    poller.cycle()
    assert writer.documents()[-1]["payload"]["id"] == ids[2]
    assert poller.high_water == START + timedelta(minutes=30)


def test_kafka_refusing_a_page_leaves_the_mark_and_the_page_is_written_next_time(nova):
    ids = nova.add_many(2, START - timedelta(days=1))
    writer = MemoryWriter()
    writer.refuse = True
    poller, _, checkpoints = make_poller(nova, writer=writer)
    with pytest.raises(KafkaRefused):
        poller.cycle()
    assert poller.high_water is None and checkpoints.writes == 0
    writer.refuse = False
    poller.cycle()
    assert sorted(d["payload"]["id"] for d in writer.documents()) == sorted(ids)


def test_a_restart_resumes_from_the_checkpoint(nova):
    ids = nova.add_many(4, START - timedelta(days=1))
    checkpoints = MemoryCheckpoints()
    make_poller(nova, checkpoints=checkpoints)[0].cycle()
    nova.clock_.now = START + timedelta(hours=1)
    nova.change(ids[3], "paused")
    restarted, writer, _ = make_poller(nova, checkpoints=checkpoints)
    result = restarted.cycle()
    assert not result.full and result.servers == 1
    assert [d["payload"]["id"] for d in writer.documents()] == [ids[3]]


def test_first_cycle_with_a_lookback_also_reads_recent_deletions(nova):
    nova.add_many(2, START - timedelta(days=1))
    nova.put(server("deleted-recently", "deleted", START - timedelta(minutes=10)))
    nova.put(server("deleted-long-ago", "deleted", START - timedelta(days=10)))
    poller, writer, _ = make_poller(nova, poll_lookback_seconds=3600)
    result = poller.cycle()
    ids = {d["payload"]["id"] for d in writer.documents()}
    assert "deleted-recently" in ids and "deleted-long-ago" not in ids
    assert result.calls == 2


def test_refused_credentials_stop_with_one_clear_error(nova, caplog):
    nova.add_many(1, START)
    poller, _, _ = make_poller(nova, nova_token="wrong")
    state = PollState()
    with caplog.at_level(logging.ERROR):
        status = poll_until_stopped(settings(nova), poller, state, threading.Event(), Backoff(0.01, 0.01))
    assert status == EXIT_AUTH
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "HTTP 401" in errors[0] and "EVENTFED_NOVA_TOKEN" in errors[0]
    assert state() == (False, "Nova refused the credentials: HTTP 401 Unauthorized")


def test_readiness_false_while_nova_is_down_then_true(nova):
    nova.add_many(1, START)
    nova.down = True
    poller, _, _ = make_poller(nova)
    state = PollState()
    stop = threading.Event()
    s = settings(nova, poll_interval=0.05)
    thread = threading.Thread(target=poll_until_stopped, args=(s, poller, state, stop, Backoff(0.02, 0.05)))
    thread.start()
    try:
        for _ in range(400):
            if "503" in state()[1]:
                break
            stop.wait(0.01)
        assert state()[0] is False and "503" in state()[1]
        nova.down = False
        for _ in range(400):
            if state()[0]:
                break
            stop.wait(0.01)
        assert state() == (True, "last cycle succeeded")
    finally:
        stop.set()
        thread.join(10)


def test_nova_auth_errors_are_told_apart_from_outages(nova):
    s = settings(nova, nova_token="wrong")
    with pytest.raises(NovaAuthError):
        list(NovaServers(build_client(s), 10).pages(None, Listing()))
    nova.down = True
    with pytest.raises(NovaUnavailable):
        list(NovaServers(build_client(settings(nova)), 10).pages(None, Listing()))


def keystone_settings(api: FakeNovaApi, password: str) -> PollerSettings:
    return PollerSettings(
        vim_id=VIM,
        os_auth_url=api.auth_url,
        os_username="admin",
        os_password=password,
        os_project_name="admin",
        os_region_name="RegionOne",
    )


def test_keystone_session_finds_nova_in_the_catalog(nova):
    nova.add_many(4, START)
    listing = Listing()
    servers = [
        s
        for page in NovaServers(build_client(keystone_settings(nova, "secret")), 10).pages(None, listing)
        for s in page.servers
    ]
    assert len(servers) == 4 and listing.calls == 2  # max_limit 3: a full page, then the rest
    assert nova.requests[0] == "/identity/v3/auth/tokens"


def test_keystone_refusing_the_password_is_an_auth_error(nova):
    with pytest.raises(NovaAuthError, match="Keystone refused the credentials"):
        list(NovaServers(build_client(keystone_settings(nova, "wrong")), 10).pages(None, Listing()))


def test_unreachable_keystone_is_an_outage_not_an_auth_error():
    s = PollerSettings(
        vim_id=VIM,
        os_auth_url="http://127.0.0.1:9/v3",
        os_username="u",
        os_password="p",
        os_project_name="p",
        poll_request_timeout=2,
    )
    with pytest.raises(NovaUnavailable):
        list(NovaServers(build_client(s), 10).pages(None, Listing()))


def test_settings_name_what_each_auth_needs(monkeypatch):
    monkeypatch.setenv("EVENTFED_VIM_ID", VIM)
    monkeypatch.setenv("EVENTFED_NOVA_AUTH", "token")
    with pytest.raises(SettingsError, match="EVENTFED_NOVA_ENDPOINT and EVENTFED_NOVA_TOKEN are required"):
        load(PollerSettings)
    monkeypatch.setenv("EVENTFED_NOVA_AUTH", "keystone")
    monkeypatch.setenv("EVENTFED_OS_AUTH_URL", "http://keystone/v3")
    with pytest.raises(
        SettingsError, match="EVENTFED_OS_USERNAME, EVENTFED_OS_PASSWORD, EVENTFED_OS_PROJECT_NAME"
    ):
        load(PollerSettings)
