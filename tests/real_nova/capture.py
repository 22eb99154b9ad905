"""Record what real Nova sends per action, and how eventfed classifies each message.

    PYTHONPATH=. .venv/bin/python tests/real_nova/capture.py [--state-change vm_and_task_state]

Starts the real-Nova fixture (notification_format both) on a vhost of its own, binds a capture
queue to exchange ``nova`` before Nova starts, runs every lifecycle of
``tests.support.real_nova.ALL_ACTIONS`` and after each step drains the queue until it has been
quiet for a moment. It writes

- ``tests/fixtures/nova/real-nova-34/lifecycle[-<state change>].json``: every message per action,
  in arrival order (the unit tests pair legacy and versioned twins from it);
- with no state change, the per-action table between the markers of ``tests/real_nova/README.md``.

The classification is ``streams.normalise.normalise``, the function the stream worker applies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import kombu

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from streams.normalise import normalise  # noqa: E402
from tests.support.real_nova import ALL_ACTIONS, RabbitVhost, RealNova, run_lifecycle  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "nova" / "real-nova-34"
README = ROOT / "tests" / "real_nova" / "README.md"
BEGIN, END = "<!-- table: begin -->", "<!-- table: end -->"
QUIET = 1.0


class Capture:
    def __init__(self, url: str) -> None:
        self.connection = kombu.Connection("amqp://" + url.split("://", 1)[1])
        # The attributes oslo.messaging gives exchange and queues (not durable, not auto-deleted),
        # so declaring them first does not conflict with Nova's own declarations.
        exchange = kombu.Exchange("nova", type="topic", durable=False)
        bindings = [
            kombu.binding(exchange, routing_key=key)
            for key in ("notifications.*", "versioned_notifications.*")
        ]
        self.queue = kombu.Queue("capture", exchange=exchange, bindings=bindings, durable=False)
        self.queue(self.connection.default_channel).declare()

    def drain(self) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        queue = self.queue(self.connection.default_channel)
        last = time.monotonic()
        while time.monotonic() - last < QUIET:
            message = queue.get(no_ack=True)
            if message is None:
                time.sleep(0.05)
                continue
            last = time.monotonic()
            body = json.loads(message.body)
            got.append(
                {
                    "routing_key": message.delivery_info["routing_key"],
                    "message": json.loads(body["oslo.message"]),
                }
            )
        return got


def classify(message: dict[str, Any]) -> tuple[str, str] | None:
    event = normalise({**message, "vim_id": "capture_region", "received_at": "2026-01-01T00:00:00+00:00"})
    return None if event is None else (str(event["status"]), str(event["phase"]))


def table(steps: list[dict[str, Any]]) -> str:
    lines = [
        "| action | legacy (topic `notifications`) | versioned (topic `versioned_notifications`) |",
        "|---|---|---|",
    ]
    seen: set[str] = set()
    for step in steps:
        # The second server's create is the first one's again.
        if step["action"] in seen:
            continue
        seen.add(step["action"])
        cells = []
        for legacy in (True, False):
            parts = []
            for item in step["messages"]:
                if item["routing_key"].startswith("versioned_") == legacy:
                    continue
                event_type = item["message"]["event_type"]
                found = classify(item["message"])
                parts.append(f"`{event_type}` {'ignored' if found is None else '/'.join(found)}")
            cells.append("<br>".join(parts) or "-")
        lines.append(f"| {step['action']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-change", default="none", choices=["none", "vm_state", "vm_and_task_state"])
    args = parser.parse_args()
    steps: list[dict[str, Any]] = []
    log = Path("/tmp") / f"real-nova-capture-{uuid.uuid4().hex[:8]}.log"
    with RabbitVhost(f"eventfed-capture-{uuid.uuid4().hex[:8]}") as vhost:
        capture = Capture(vhost.url)
        nova = RealNova(log, vhost.url, "both", args.state_change).start()
        try:
            steps.append({"action": "startup", "messages": capture.drain()})

            def after(step: str, server_id: str) -> None:
                steps.append({"action": step, "server": server_id, "messages": capture.drain()})

            for number, lifecycle in enumerate(ALL_ACTIONS):
                run_lifecycle(nova.client, f"capture-{number}", lifecycle, after)
        finally:
            nova.stop()
            capture.connection.release()
    suffix = "" if args.state_change == "none" else f"-{args.state_change}"
    FIXTURES.mkdir(parents=True, exist_ok=True)
    out = FIXTURES / f"lifecycle{suffix}.json"
    out.write_text(json.dumps(steps, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {sum(len(s['messages']) for s in steps)} messages")
    if args.state_change == "none":
        text = README.read_text()
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        README.write_text(f"{head}{BEGIN}\n{table(steps)}\n{END}{tail}")
        print(f"{README}: table written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
