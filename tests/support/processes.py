"""Start eventfed deployables as real processes and stop only those, by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Protocol

ROOT = Path(__file__).resolve().parents[2]
EVENTFED = str(Path(sys.executable).with_name("eventfed"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFED_")}
    env.update({"EVENTFED_LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1"})
    env.update(settings)
    return env


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - the child writes to it for its lifetime
        self.popen = subprocess.Popen(
            [EVENTFED, *args], env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return int(self.popen.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Running(Protocol):
    """A started process with its output in a log file (this module's Proc, bench.procs')."""

    log_path: Path

    def alive(self) -> bool: ...

    def log(self) -> str: ...


def wait_http(url: str, timeout: float = 60.0, proc: Running | None = None) -> None:
    """Wait for a 200 from `url`; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise AssertionError(f"process exited early ({proc.log_path}):\n{proc.log()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except Exception as exc:
            last_error = str(exc)
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready in {timeout}s: {last_error}\n{proc.log()[-3000:] if proc else ''}")
