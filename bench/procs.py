"""The processes a bench run starts, their memory, and their Prometheus counters.

Every process is started here and stopped by its PID only; a `Fleet` stops what it started even
when a section fails. A sampler thread records each process's peak RSS while it runs.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# The same helpers the tests start their processes with, re-exported for the bench modules.
from tests.support.processes import EVENTFED as EVENTFED
from tests.support.processes import clean_env as clean_env
from tests.support.processes import free_port as free_port
from tests.support.processes import wait_http as wait_http

LOG = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]


class Proc:
    """One child process, its output in a log file; stopped by its PID only."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self, timeout: float) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(30)
                raise
        return int(self.popen.returncode)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (all its threads) so far; this process by default."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return float("nan")
    return float(times.user + times.system)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time so far of a process and its live children (an agent that forks its workers)."""
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        return float("nan")
    total = 0.0
    for member in family:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its live children, now."""
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in family:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port (the brokers), or None."""
    try:
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                return int(connection.pid) if connection.pid else None
    except psutil.Error:
        return None
    return None


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle, since boot (everyone's work, not only ours)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class CpuMeter:
    """Cores used by named processes and by the whole machine between start() and stop()."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self._start: dict[str, float] = {}
        self._started = 0.0

    def start(self) -> CpuMeter:
        self._started = time.monotonic()
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._start["machine (all processes)"] = machine_busy_seconds()
        return self

    def stop(self) -> dict[str, float]:
        seconds = time.monotonic() - self._started
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        now["machine (all processes)"] = machine_busy_seconds()
        return {name: (now[name] - before) / seconds for name, before in self._start.items() if seconds > 0}


def vm_hwm(pid: int) -> int:
    """The kernel's peak resident set of a process (VmHWM), in bytes; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


@dataclass
class _Tracked:
    role: str
    process: psutil.Process
    peak: int = 0


@dataclass
class RssSampler:
    """Samples the RSS of tracked processes every `interval` seconds; keeps the peak per role."""

    interval: float = 0.25
    peaks: dict[str, int] = field(default_factory=dict)
    _tracked: dict[int, _Tracked] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def track(self, role: str, pid: int) -> None:
        try:
            process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return
        with self._lock:
            self._tracked[pid] = _Tracked(role, process)

    def untrack(self, pid: int) -> None:
        """Take the kernel's own peak (VmHWM) too, then forget the process."""
        hwm = vm_hwm(pid)
        with self._lock:
            tracked = self._tracked.pop(pid, None)
        if tracked is not None:
            self._record(tracked.role, max(tracked.peak, hwm))

    def _record(self, role: str, value: int) -> None:
        with self._lock:
            self.peaks[role] = max(self.peaks.get(role, 0), value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                tracked = list(self._tracked.values())
            for item in tracked:
                try:
                    rss = item.process.memory_info().rss
                except psutil.Error:
                    continue
                item.peak = max(item.peak, rss)
                self._record(item.role, rss)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class Fleet:
    """The eventfed processes of one section: started with their own env, stopped by PID."""

    def __init__(self, log_dir: Path, sampler: RssSampler) -> None:
        self.log_dir = log_dir
        self.sampler = sampler
        self.procs: list[tuple[str, Proc]] = []

    def start(
        self,
        role: str,
        args: list[str],
        env: dict[str, str],
        profile_to: Path | None = None,
        requests_to: Path | None = None,
    ) -> Proc:
        """Start `eventfed ARGS`; with `profile_to`, under cProfile (bench.profiled) writing there;
        with `requests_to`, counting its Kafka requests (bench.kafka_requests_internals) there."""
        name = role.replace("/", "-").replace(" ", "-")
        command = [EVENTFED, *args]
        if profile_to is not None:
            command = [sys.executable, "-m", "bench.profiled", str(profile_to), *args]
            name += "-profiled"
        elif requests_to is not None:
            # -P: not the working directory first on the path, so a PYTHONPATH naming another
            # checkout (bench.ab) decides which eventfed runs, as for the console script.
            command = [sys.executable, "-P", "-m", "bench.kafka_requests_internals", str(requests_to), *args]
        proc = Proc(command, env, self.log_dir / f"{name}.log")
        self.procs.append((role, proc))
        self.sampler.track(role, proc.pid)
        return proc

    def stop(self, proc: Proc, timeout: float = 60) -> None:
        for role, known in self.procs:
            if known is proc:
                self.sampler.untrack(proc.pid)
                try:
                    proc.terminate(timeout)
                except subprocess.TimeoutExpired:
                    LOG.warning("%s (pid %d) did not stop in %ss; killed", role, proc.pid, timeout)
        self.procs = [(r, p) for r, p in self.procs if p is not proc]

    def stop_all(self) -> None:
        for _role, proc in list(reversed(self.procs)):
            self.stop(proc)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()


def scrape(port: int, timeout: float = 3.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        return str(response.read().decode())


def metric_sum(text: str, name: str) -> float:
    """The sum of a metric over all its label sets in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `check()` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False
