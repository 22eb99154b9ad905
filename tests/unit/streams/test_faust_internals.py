"""faust-streaming's private attributes that eventfed relies on are still where they were."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from streams import faust_internals

ROOT = Path(__file__).resolve().parents[3]


def test_every_private_attribute_used_is_present():
    assert faust_internals.missing_internals() == []


def test_the_installed_versions_are_the_ones_checked():
    # An upgrade must re-check the attributes above and then update CHECKED_VERSIONS.
    installed = {name: metadata.version(name) for name in faust_internals.CHECKED_VERSIONS}
    assert installed == faust_internals.CHECKED_VERSIONS


def test_a_moved_attribute_is_reported(monkeypatch):
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    monkeypatch.delattr(AIOKafkaConsumerThread, "_ensure_consumer")
    assert faust_internals.missing_internals() == ["AIOKafkaConsumerThread._ensure_consumer"]


def test_no_other_module_touches_them():
    pattern = "_read_offset|_ensure_consumer|call_thread|tp_last_committed_at"
    found = subprocess.run(
        ["grep", "-rlE", pattern, "bridge", "streams", "--include=*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert found == ["streams/faust_internals.py"], sys.executable
