"""A real Confluent-compatible Schema Registry (Apicurio Registry, scripts/schema-registry) on a
free port of 127.0.0.1, started for a test module and stopped by the script, by its PID file."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.processes import ROOT, free_port

SCRIPT = str(ROOT / "scripts/schema-registry")


@contextmanager
def running_registry() -> Iterator[str]:
    """The registry's Confluent-compatible API URL while it runs."""
    env = {**os.environ, "SCHEMA_REGISTRY_PORT": str(free_port())}
    started = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True, check=False)
    if started.returncode != 0:
        raise AssertionError(f"scripts/schema-registry start failed:\n{started.stderr[-3000:]}")
    try:
        yield subprocess.run(
            [SCRIPT, "url"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
    finally:
        subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, check=False)
