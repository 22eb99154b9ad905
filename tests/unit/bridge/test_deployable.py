"""The deployable skeleton (bridge.deployable): the order every deployable starts and stops in."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from bridge import deployable
from bridge.deployable import CannotStart, run_deployable
from bridge.settings import CommonSettings
from tests.support.processes import free_port


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The skeleton's JSON logging would replace pytest's capture; signal handlers are restored.
    monkeypatch.setattr(deployable, "setup_logging", lambda *_args: None)
    saved = {handled: signal.getsignal(handled) for handled in deployable.STOP_SIGNALS}
    yield
    for handled, handler in saved.items():
        signal.signal(handled, handler)


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class Recorder:
    """A deployable that records what the skeleton asks of it, and what the probe saw meanwhile."""

    name = "recorder"
    handles_signals = False

    def __init__(self, port: int = 0, start_status: int | None = None, work_status: int = 0) -> None:
        self.port = port
        self.start_status = start_status
        self.work_status = work_status
        self.calls: list[str] = []
        self.seen_at_start: list[tuple[int, dict]] = []
        self.stop = threading.Event()

    def readiness(self) -> tuple[bool, str]:
        return False, "recording"

    def start(self) -> int | None:
        self.calls.append("start")
        if self.port:
            self.seen_at_start.append(_get(f"http://127.0.0.1:{self.port}/healthz"))
            self.seen_at_start.append(_get(f"http://127.0.0.1:{self.port}/readyz"))
        return self.start_status

    def work(self) -> int:
        self.calls.append("work")
        os.kill(os.getpid(), signal.SIGTERM)
        assert self.stop.wait(10), "SIGTERM did not reach request_stop"
        return self.work_status

    def request_stop(self, signum: int) -> None:
        self.calls.append(f"request_stop {signal.Signals(signum).name}")
        self.stop.set()

    def drain(self) -> None:
        self.calls.append("drain")


def test_liveness_answers_before_start_and_sigterm_drains_then_ends_with_work_s_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    monkeypatch.setenv("EVENTFED_METRICS_PORT", str(port))
    recorder = Recorder(port=port, work_status=3)
    assert run_deployable("poll", CommonSettings, lambda _settings: recorder) == 3
    assert recorder.calls == ["start", "work", "request_stop SIGTERM", "drain"]
    assert recorder.seen_at_start == [
        (200, {"status": "alive"}),
        (503, {"ready": False, "reason": "recording"}),
    ]
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/healthz")  # stopped with the deployable


def test_a_status_from_start_ends_the_process_after_a_drain_without_working() -> None:
    recorder = Recorder(start_status=1)
    assert run_deployable("stream", CommonSettings, lambda _settings: recorder) == 1
    assert recorder.calls == ["start", "drain"]


def test_a_deployable_that_cannot_be_built_exits_with_its_status_and_nothing_runs() -> None:
    def refuse(_settings: CommonSettings) -> Recorder:
        raise CannotStart(2)

    assert run_deployable("stream", CommonSettings, refuse) == 2


def test_work_that_raises_is_drained_all_the_same() -> None:
    recorder = Recorder()

    def failing_work() -> int:
        recorder.calls.append("work")
        raise RuntimeError("broken")

    recorder.work = failing_work  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        run_deployable("poll", CommonSettings, lambda _settings: recorder)
    assert recorder.calls == ["start", "work", "drain"]


def test_a_deployable_whose_loop_handles_signals_keeps_them() -> None:
    recorder = Recorder()
    recorder.handles_signals = True
    recorder.work = lambda: 0  # type: ignore[method-assign]
    before = signal.getsignal(signal.SIGTERM)
    assert run_deployable("stream", CommonSettings, lambda _settings: recorder) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_every_deployable_runs_through_the_skeleton_and_only_it_starts_a_health_server() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    services = [
        "bridge/listener/service.py",
        "bridge/poller/service.py",
        "streams/app.py",
        "bridge/api/server.py",
    ]
    for service in services:
        assert "return run_deployable(" in (root / service).read_text(), service
    starting_health = sorted(
        str(path.relative_to(root))
        for package in ("bridge", "streams")
        for path in (root / package).rglob("*.py")
        if "HealthServer(" in path.read_text()
    )
    assert starting_health == ["bridge/deployable.py"]


def test_a_listener_whose_oslo_lacks_the_ordered_dispatcher_s_internals_does_not_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from bridge.listener import oslo_internals
    from bridge.listener.service import ListenerDeployable
    from bridge.settings import ListenerSettings

    monkeypatch.setenv("EVENTFED_TRANSPORT_URL", f"rabbit://guest:guest@127.0.0.1:{free_port()}/")
    monkeypatch.setenv("EVENTFED_VIM_ID", "owner_region")
    monkeypatch.setattr(
        oslo_internals,
        "missing_dispatcher_internals",
        lambda: ["NotificationDispatcher._extract_user_message"],
    )
    assert run_deployable("listen", ListenerSettings, ListenerDeployable) == 2
    assert "lacks what eventfed relies on: NotificationDispatcher._extract_user_message" in caplog.text
