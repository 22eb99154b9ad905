"""RabbitMQ for the bench: a virtual host per run, Nova's wire format, and bare AMQP consumers.

A run gets its own virtual host, so its `nova` exchange and queues never meet anybody else's
notifications (the pooled listeners of tests running beside it bind `nova` on `/`).

The wire format is exactly what oslo.messaging's Notifier with the messagingv2 driver publishes
through kombu: a JSON body `{"oslo.version": "2.0", "oslo.message": "<the message as JSON>"}`,
content type application/json, persistent, on exchange `nova` with routing key `<topic>.<priority>`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import amqp

from bridge.listener.endpoint import PRIORITIES
from bridge.simulator.novasim import Notification
from bridge.simulator.simulate import TOPIC_FOR_FORMAT

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1:5672"
EXCHANGE = "nova"


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(
        [str(ROOT / "scripts" / "rabbitmq"), "ctl", *args], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def create_vhost(name: str) -> None:
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")


def delete_vhost(name: str) -> None:
    rabbitmqctl("delete_vhost", name)


def transport_url(vhost: str) -> str:
    return f"rabbit://guest:guest@{HOST}/{vhost}"


def connect(vhost: str) -> amqp.Connection:
    connection = amqp.Connection(
        host=HOST, userid="guest", password="guest", virtual_host=vhost, connect_timeout=10
    )
    connection.connect()
    return connection


def routing_key(note: Notification) -> str:
    fmt = "legacy" if note.event_type.startswith("compute.") else "versioned"
    return f"{TOPIC_FOR_FORMAT[fmt]}.{note.priority.lower()}"


def nova_now() -> str:
    """oslo's message timestamp: str(utcnow()), UTC without a zone."""
    return str(datetime.now(UTC).replace(tzinfo=None))


@dataclass(frozen=True, slots=True)
class WireNote:
    """A notification ready to send: all but the send-time fields serialised in advance."""

    routing_key: str
    head: str
    payload: str


def prepare(note: Notification) -> WireNote:
    head = (
        f'"publisher_id": {json.dumps(note.publisher_id)}, "event_type": {json.dumps(note.event_type)}, '
        f'"priority": {json.dumps(note.priority)}'
    )
    return WireNote(routing_key(note), head, json.dumps(note.payload))


def envelope(wire: WireNote, timestamp: str, message_id: str) -> bytes:
    """The body the Notifier sends: its message (jsonutils.dumps layout) inside the 2.0 envelope."""
    message = (
        f'{{"message_id": "{message_id}", {wire.head}, "payload": {wire.payload}, '
        f'"timestamp": "{timestamp}", "_unique_id": "{uuid.uuid4().hex}"}}'
    )
    return json.dumps({"oslo.version": "2.0", "oslo.message": message}).encode()


def amqp_message(body: bytes) -> amqp.Message:
    return amqp.Message(body, content_type="application/json", content_encoding="utf-8", delivery_mode=2)


def declare_pool_queue(channel: Any, queue: str) -> None:
    """A queue bound as oslo binds a pooled listener's: every topic and priority on `nova`."""
    channel.exchange_declare(EXCHANGE, "topic", durable=False, auto_delete=False)
    channel.queue_declare(queue, durable=False, auto_delete=False)
    for topic in TOPIC_FOR_FORMAT.values():
        for priority in PRIORITIES:
            channel.queue_bind(queue, EXCHANGE, f"{topic}.{priority}")


def queue_depth(channel: Any, queue: str) -> int:
    """Messages ready in a queue (not counting those delivered and not yet acked)."""
    return int(channel.queue_declare(queue, passive=True).message_count)


def queue_exists(vhost: str, queue: str) -> bool:
    connection = connect(vhost)
    try:
        channel = connection.channel()
        try:
            channel.queue_declare(queue, passive=True)
            return True
        except amqp.exceptions.NotFound:
            return False
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def prefill(vhost: str, queues: list[str], notes: list[Notification], timeout: float) -> dict[str, float]:
    """Publish `notes` through `nova` (so every queue bound like the pool gets a copy); wait until
    every one of `queues` holds them all. Returns the publishing rate."""
    wires = [prepare(n) for n in notes]
    timestamp = nova_now()
    bodies = [(w.routing_key, envelope(w, timestamp, str(uuid.uuid4()))) for w in wires]
    connection = connect(vhost)
    try:
        channel = connection.channel()
        started = time.perf_counter()
        for key, body in bodies:
            channel.basic_publish(amqp_message(body), exchange=EXCHANGE, routing_key=key)
        published = time.perf_counter() - started
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(queue_depth(channel, q) >= len(notes) for q in queues):
                break
            time.sleep(0.2)
        else:
            depths = {q: queue_depth(channel, q) for q in queues}
            raise RuntimeError(f"RabbitMQ did not queue {len(notes)} notifications in {timeout}s: {depths}")
        settled = time.perf_counter() - started
    finally:
        connection.close()
    return {
        "published_per_second": len(notes) / published,
        "queued_seconds": settled,
        "mean_body_bytes": sum(len(b) for _, b in bodies) / max(1, len(bodies)),
    }


def drain(
    vhost: str,
    queue: str,
    expected: int,
    prefetch: int,
    batch: int,
    timeout: float,
    forward: Callable[[list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """A bare consumer: prefetch `prefetch`, decode the envelope and the message, hand each batch of
    `batch` to `forward` (if any), then ack the batch at once (multiple=True). Timed from the first
    delivery to the last ack."""
    from bench.procs import cpu_seconds

    cpu_before = cpu_seconds()
    connection = connect(vhost)
    received: list[Any] = []
    done = 0
    first = last = 0.0
    try:
        channel = connection.channel()
        channel.basic_qos(0, prefetch, False)
        channel.basic_consume(queue, callback=received.append, no_ack=False)
        deadline = time.monotonic() + timeout
        while done < expected and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=0.2)
                timed_out = False
            except TimeoutError:
                timed_out = True
            if received and not first:
                first = time.perf_counter()
            if received and (len(received) >= batch or timed_out or done + len(received) >= expected):
                messages = []
                for message in received:
                    outer = json.loads(message.body)
                    messages.append(json.loads(outer["oslo.message"]))
                if forward is not None:
                    forward(messages)
                channel.basic_ack(received[-1].delivery_tag, multiple=True)
                done += len(received)
                received.clear()
                last = time.perf_counter()
    finally:
        connection.close()
    cpu = cpu_seconds() - cpu_before
    seconds = last - first if last > first else float("nan")
    return {
        "messages": done,
        "seconds": seconds,
        "per_second": done / seconds if done else 0.0,
        "cpu_us_per_message": cpu / done * 1e6 if done else float("nan"),
    }


def create_vhosts(names: list[str]) -> None:
    """Many virtual hosts, guest allowed on each, in one rabbitmqctl call (definitions import)."""
    import json
    import tempfile

    definitions = {
        "vhosts": [{"name": name} for name in names],
        "permissions": [
            {"user": "guest", "vhost": name, "configure": ".*", "write": ".*", "read": ".*"} for name in names
        ],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(definitions, file)
    # rabbitmqctl may run as the broker's own user, which must read it.
    Path(file.name).chmod(0o644)
    try:
        rabbitmqctl("import_definitions", file.name)
    finally:
        Path(file.name).unlink(missing_ok=True)


def delete_vhosts(names: list[str]) -> None:
    """Many virtual hosts deleted in one rabbitmqctl call."""
    listed = ", ".join(f'<<"{name}">>' for name in names)
    rabbitmqctl("eval", f'lists:foreach(fun(V) -> rabbit_vhost:delete(V, <<"bench">>) end, [{listed}]).')
