"""`eventfed api` start-up paths that need no broker."""

from __future__ import annotations

import argparse
import socket

import pytest

from bridge import deployable
from bridge.api import server
from bridge.cli import main


def test_port_in_use_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployable, "setup_logging", lambda *_args: None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("EVENTFED_API_HOST", "127.0.0.1")
        monkeypatch.setenv("EVENTFED_API_PORT", str(taken.getsockname()[1]))
        assert server.run(argparse.Namespace()) == 1


def test_bad_auth_settings_stop_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deployable, "setup_logging", lambda *_args: None)
    monkeypatch.setenv("EVENTFED_API_BASIC_USER", "onap")
    monkeypatch.delenv("EVENTFED_API_BASIC_PASSWORD", raising=False)
    assert main(["api"]) == 2
    assert "EVENTFED_API_BASIC_PASSWORD" in capsys.readouterr().err


def test_allocator_tuning_is_harmless() -> None:
    release_free_memory = server.tune_allocator()
    release_free_memory()
