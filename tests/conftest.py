"""Shared fixtures: the real brokers started by `make up`, and unique names per test."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KAFKA_BOOTSTRAP = os.environ.get("EVENTFED_TEST_KAFKA", "127.0.0.1:9092")
RABBIT_URL = os.environ.get("EVENTFED_TEST_RABBIT", "rabbit://guest:guest@127.0.0.1:5672/")


def _broker_versions() -> str:
    kafka = subprocess.run(
        [str(ROOT / "scripts/kafka"), "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    rabbit = subprocess.run(
        [str(ROOT / "scripts/rabbitmq"), "ctl", "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"brokers: Apache Kafka {kafka or '?'} at {KAFKA_BOOTSTRAP}, RabbitMQ {rabbit or 'not running'}"


def pytest_report_header(config: pytest.Config) -> str:
    return _broker_versions()


@pytest.fixture
def no_eventfed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EVENTFED_* variable of the environment the tests run in reaches the settings they build."""
    for name in list(os.environ):
        if name.startswith("EVENTFED_"):
            monkeypatch.delenv(name)


@pytest.fixture
def unique() -> str:
    """A short unique suffix so runs never see each other's topics, queues or groups."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    try:
        admin.list_topics(timeout=10)
    except Exception as exc:  # pragma: no cover - environment problem, not a test outcome
        pytest.fail(f"Apache Kafka is not reachable at {KAFKA_BOOTSTRAP} (run `make up`): {exc}")
    return KAFKA_BOOTSTRAP


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=5).close()
    except OSError as exc:  # pragma: no cover
        pytest.fail(f"RabbitMQ is not reachable at 127.0.0.1:5672 (run `make up`): {exc}")
    return RABBIT_URL


@pytest.fixture
def kafka_topic_factory(kafka_bootstrap: str) -> Iterator:
    """Create topics for a test and delete them afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def create(name: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
        )
        futures[name].result(timeout=30)
        created.append(name)
        return name

    yield create
    if created:
        for future in admin.delete_topics(created).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)
