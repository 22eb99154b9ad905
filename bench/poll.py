"""Poll: `eventfed poll` over a cloud of 10,000 servers (1,000 in a quick run).

Nova is an HTTP server shaped like Nova's `GET /servers/detail` (tests/support/nova_api.py: paging
with servers_links, changes-since with deleted servers, Nova's default page cap of 1,000), in
this process: real Nova with 10,000 servers takes too long to create. The poller is the real
`eventfed poll` process writing to the real Kafka. Measured per cycle (the poller's own log line:
API calls, servers read, records written, seconds from the first request to the last Kafka
acknowledgement): the first, full cycle; an incremental cycle after 1% of the servers changed;
an idle incremental cycle. Accounting: every snapshot written must be on the raw topic.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.context import AccountingError, Context
from bench.procs import clean_env, free_port
from tests.support.kafka import read_notifications
from tests.support.nova_api import FakeNovaApi
from tests.support.processes import Proc, wait_http

VIM_ID = "benchowner_bench-poll"
CYCLE = re.compile(
    r"(?P<kind>full|incremental) cycle since \S+: (?P<calls>\d+) calls, (?P<servers>\d+) servers, "
    r"(?P<written>\d+) written, (?P<unchanged>\d+) unchanged, (?P<seconds>[0-9.]+) s"
)


def _cycles(log: str) -> list[dict[str, Any]]:
    return [
        {
            "kind": m["kind"],
            "calls": int(m["calls"]),
            "servers": int(m["servers"]),
            "written": int(m["written"]),
            "unchanged": int(m["unchanged"]),
            "seconds": float(m["seconds"]),
        }
        for m in CYCLE.finditer(log)
    ]


def _wait_cycles(proc: Proc, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cycles = _cycles(proc.log())
        if len(cycles) >= count:
            return cycles
        if not proc.alive():
            raise RuntimeError(f"eventfed poll exited:\n{proc.log()[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"eventfed poll did not finish {count} cycles in {timeout} s:\n{proc.log()[-3000:]}")


def run(ctx: Context) -> dict[str, Any]:
    servers = 1_000 if ctx.quick else 10_000
    changed = servers // 100
    interval = 5.0
    nova = FakeNovaApi(token="bench", max_limit=1000).start()
    ids = nova.add_many(servers, datetime.now(UTC) - timedelta(days=1))
    topics = ctx.topics("poll")
    metrics_port = free_port()
    env = clean_env(
        EVENTFED_VIM_ID=VIM_ID,
        EVENTFED_NOVA_AUTH="token",
        EVENTFED_NOVA_ENDPOINT=nova.endpoint,
        EVENTFED_NOVA_TOKEN="bench",
        EVENTFED_POLL_INTERVAL=str(interval),
        EVENTFED_POLL_CHECKPOINT_TOPIC=f"{ctx.prefix}poll.checkpoints",
        EVENTFED_RAW_TOPIC=topics["raw"],
        EVENTFED_DLQ_TOPIC=topics["dlq"],
        EVENTFED_KAFKA_BOOTSTRAP_SERVERS=ctx.bootstrap,
        EVENTFED_PARTITIONS="8",
        EVENTFED_METRICS_PORT=str(metrics_port),
    )
    proc = Proc(["poll"], env, ctx.log_dir / "poll.log")
    ctx.sampler.track("poll", proc.pid)
    try:
        wait_http(f"http://127.0.0.1:{metrics_port}/readyz", 300, proc)
        first = _wait_cycles(proc, 1, 300)[0]
        requests_after_first = len(nova.requests)
        for server_id in ids[:: servers // changed][:changed]:
            nova.change(server_id, "paused")
        deadline = time.monotonic() + 120
        while (
            sum(c["written"] for c in _cycles(proc.log())) < servers + changed and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        cycles = _cycles(proc.log())
        after = [c for c in cycles[1:] if c["written"] > 0]
        incremental = after[-1] if after else cycles[-1]
        idle = _wait_cycles(proc, len(cycles) + 1, 120)[-1]
    finally:
        ctx.sampler.untrack(proc.pid)
        proc.terminate(60)
        nova.stop()
    expected = servers + changed
    written = sum(c["written"] for c in _cycles(proc.log()))
    on_topic = len(read_notifications(ctx.bootstrap, topics["raw"], expected=expected, timeout=120))
    if written != expected or on_topic != expected:
        raise AccountingError(
            f"poll: {expected} snapshots expected, {written} written, {on_topic} on the raw topic"
        )
    return {
        "servers": servers,
        "changed": changed,
        "page_size": 1000,
        "interval_seconds": interval,
        "nova": "an HTTP server shaped like Nova (tests/support/nova_api.py), in the bench process",
        "first_cycle": first,
        "first_cycle_requests": requests_after_first,
        "incremental_cycle": incremental,
        "idle_cycle": idle,
        "servers_per_second_first_cycle": servers / first["seconds"] if first["seconds"] else None,
        "on_raw_topic": on_topic,
    }
