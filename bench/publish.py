"""Paced publishers of simulated Nova notifications, one process each, for the end-to-end runs.

Two ways to send, both putting the same bytes on the wire:
  oslo  bridge.simulate.CloudPublisher: oslo.messaging's Notifier, driver messagingv2, as Nova
        sends (about 1,500/s per process on this machine);
  wire  py-amqp with the Notifier's envelope built here, message_id and timestamp set at send
        time as the Notifier sets them; for rates the Notifier cannot reach on two shared cores.
Each process sends its own VMs' lifecycles (no VM is shared, so per-VM order holds), paced on a
fixed schedule, and reports what it sent and how far behind the schedule it fell.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import queue
import time
import uuid
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from bridge.simulator.novasim import Notification

# Sends a socket buffer can hold (4 MiB of about 1.3 KB messages): the most a publisher that gave
# up can have written without RabbitMQ reading them.
UNSETTLED_TAIL = 4096

# Notifications per VM of bridge.simulate.plan's varied lifecycles, on average (4, 8, 16 or 26).
NOTES_PER_VM = 13.5


def notes_for(total: int, seed: int) -> list[Notification]:
    """At least `total` notifications of whole, interleaved lifecycles; cut to `total`."""
    from bridge.simulator.simulate import plan

    notes: list[Notification] = []
    chunk = 0
    while len(notes) < total:
        vms = max(1, math.ceil((total - len(notes)) / NOTES_PER_VM))
        notes.extend(plan(vms, seed * 1000 + chunk, "mixed"))
        chunk += 1
    return notes[:total]


@dataclass(frozen=True)
class PublisherSpec:
    mode: str  # "oslo" or "wire"
    vhost: str
    rate: float
    seconds: float
    seed: int


def publisher_main(
    spec: PublisherSpec,
    ready: Any,
    go: Any,
    done: Any,
    sent: Synchronized,
    results: Any,
    closed: Any,
) -> None:
    from bench import amqputil

    total = int(spec.rate * spec.seconds)
    notes = notes_for(total, spec.seed)
    send: Any
    close: Any
    if spec.mode == "oslo":
        import logging

        from bridge.simulator.simulate import CloudPublisher

        logging.basicConfig(level=logging.ERROR)
        publisher = CloudPublisher(amqputil.transport_url(spec.vhost), durable=False)
        send, close = publisher.publish, publisher.close
        items: list[Any] = notes
    else:
        connection = amqputil.connect(spec.vhost)
        channel = connection.channel()
        channel.exchange_declare(amqputil.EXCHANGE, "topic", durable=False, auto_delete=False)
        items = [amqputil.prepare(n) for n in notes]

        def send(wire: amqputil.WireNote) -> None:
            body = amqputil.envelope(wire, amqputil.nova_now(), str(uuid.uuid4()))
            # RabbitMQ's flow control stops reading a fast publisher's socket for a while: wait for
            # it rather than give up, since bytes a publisher gave up on are lost with its socket.
            channel.basic_publish(
                amqputil.amqp_message(body),
                exchange=amqputil.EXCHANGE,
                routing_key=wire.routing_key,
                timeout=120,
            )

        close = connection.close
    ready.set()
    go.wait(120)
    interval = 1.0 / spec.rate
    started = time.monotonic()
    cpu_started = time.process_time()
    worst_lag = 0.0
    count = 0
    error = ""
    try:
        for number, item in enumerate(items, 1):
            due = started + (number - 1) * interval
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                worst_lag = max(worst_lag, now - due)
            send(item)
            count = number
            if count % 50 == 0:
                sent.value = count
            if now - started > spec.seconds * 1.5 + 5:
                break
    except Exception as exc:
        # RabbitMQ's flow control can block a publish past its timeout: the rate was not
        # publishable, which the step reports; what was sent before still counts.
        error = f"{type(exc).__name__}: {exc}"[:300]
    sent.value = count
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_started
    results.put(
        {
            "seed": spec.seed,
            "sent": count,
            "seconds": elapsed,
            "per_second": count / elapsed if elapsed else 0.0,
            "worst_lag_seconds": worst_lag,
            "cores_used": cpu / elapsed if elapsed else 0.0,
            "fingerprints": [(n.instance_id, n.event_type) for n in notes[:count]],
            # A publisher that gave up cannot tell which of its last sends RabbitMQ had read off
            # its socket: at most a socket buffer's worth, which the accounting does not count
            # as lost by eventfed.
            "unsettled": [
                (n.instance_id, n.event_type) for n in notes[max(0, count - UNSETTLED_TAIL) : count]
            ]
            if error
            else [],
            "error": error,
        }
    )
    done.set()
    # Closing waits for RabbitMQ to answer the close, so it has read every send before it: only
    # then are the sends settled (see Publishers.finish).
    with contextlib.suppress(Exception):
        close()
        closed.set()


class Publishers:
    """`count` publisher processes sharing a rate; started together, stopped by PID."""

    def __init__(self, specs: list[PublisherSpec]) -> None:
        context = multiprocessing.get_context("spawn")
        self._started = time.monotonic()
        self._go = context.Event()
        self._results = context.Queue()
        self._ready = [context.Event() for _ in specs]
        self._done = [context.Event() for _ in specs]
        self._closed = [context.Event() for _ in specs]
        self._sent = [context.Value("q", 0) for _ in specs]
        self.procs = [
            context.Process(
                target=publisher_main,
                args=(spec, ready, self._go, done, sent, self._results, closed),
                name=f"bench-publisher-{spec.seed}",
                daemon=True,
            )
            for spec, ready, done, sent, closed in zip(
                specs, self._ready, self._done, self._sent, self._closed, strict=True
            )
        ]
        self._seeds = [spec.seed for spec in specs]

    def start(self, timeout: float = 120) -> float:
        """Start the processes, wait until each prepared its notifications, then release them
        together; returns the wall-clock start time."""
        for proc in self.procs:
            proc.start()
        deadline = time.monotonic() + timeout
        for ready, proc in zip(self._ready, self.procs, strict=True):
            while not ready.wait(0.5):
                if not proc.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"publisher {proc.name} did not get ready (exit code {proc.exitcode})")
        started = time.time()
        self._started = time.monotonic()
        self._go.set()
        return started

    def sent(self) -> int:
        return sum(int(v.value) for v in self._sent)

    def sending(self) -> bool:
        """True while any publisher is still sending (a finished one may linger to hand over its
        results)."""
        return any(p.is_alive() and not d.is_set() for p, d in zip(self.procs, self._done, strict=True))

    def finish(self, timeout: float) -> list[dict[str, Any]]:
        results = []
        deadline = time.monotonic() + timeout
        for proc, sent in zip(self.procs, self._sent, strict=True):
            try:
                results.append(self._results.get(timeout=max(1.0, deadline - time.monotonic())))
            except queue.Empty:
                results.append(
                    {
                        "seed": None,
                        "sent": int(sent.value),
                        "seconds": max(1e-3, time.monotonic() - self._started),
                        "per_second": 0.0,
                        "worst_lag_seconds": 0.0,
                        "cores_used": 0.0,
                        "fingerprints": [],
                        "unsettled": [],
                        "error": f"{proc.name} ended without a result (exit code {proc.exitcode})",
                    }
                )
        for proc in self.procs:
            proc.join(max(1.0, deadline - time.monotonic()))
        closed = {seed for seed, event in zip(self._seeds, self._closed, strict=True) if event.is_set()}
        for result in results:
            if result["seed"] is None or result["seed"] in closed or result["unsettled"]:
                continue
            # A publisher that could not close its connection in time (RabbitMQ's flow control
            # still held its socket) is stopped: what RabbitMQ had not yet read of its last sends
            # is lost with the socket, at most a socket buffer's worth.
            tail = result["fingerprints"][-UNSETTLED_TAIL:]
            result["unsettled"] = tail
            result["error"] = (
                result["error"]
                or "connection not closed in time: its last sends may not have reached RabbitMQ"
            )
        return results

    def stop(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]
