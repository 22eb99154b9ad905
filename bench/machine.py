"""The machine a bench ran on: CPU, cores, memory, broker and library versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _script_output(*args: str) -> str:
    try:
        result = subprocess.run(
            [str(ROOT / "scripts" / args[0]), *args[1:]], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return result.stdout.strip().splitlines()[-1] if result.returncode == 0 and result.stdout.strip() else "?"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def code_version() -> str:
    """The commit measured, and whether the product code differs from it (read-only git calls)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30, cwd=ROOT
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "bridge", "streams", "schemas", "config"],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        ).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    files = [line[3:] for line in changed if line.strip()]
    return f"{commit} + uncommitted changes in {', '.join(files)}" if files else (commit or "?")


def describe() -> dict[str, Any]:
    import confluent_kafka as ck

    return {
        "code": code_version(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": _script_output("kafka", "version"),
        "rabbitmq": _script_output("rabbitmq", "ctl", "version"),
        "librdkafka": ck.libversion()[0],
        "confluent_kafka": _version("confluent-kafka"),
        "faust_streaming": _version("faust-streaming"),
        "oslo_messaging": _version("oslo.messaging"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def one_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['memory_gib']} GiB RAM, "
        f"Linux {machine['kernel']}, Python {machine['python']}, Apache Kafka {machine['kafka']} (KRaft, "
        f"1 broker), RabbitMQ {machine['rabbitmq']}, librdkafka {machine['librdkafka']}, "
        f"faust-streaming {machine['faust_streaming']}, oslo.messaging {machine['oslo_messaging']}"
    )
