"""`make bench`: eventfed measured against the real Kafka and RabbitMQ on this machine.

    .venv/bin/python -m bench.run [--quick] [--sections SECTION,...] [--keep]

SECTION: ingest, stream, e2e, low-rate, api, poll, metering, vims (all by default).

Sections run one after the other (the machine has two cores); each starts the processes it
needs with its own topics, queue and consumer groups, and stops them by PID when it ends or
fails. Writes bench/results/report.md, results.json, throughput.png and latency.png. Exits 1
with a loud message when a notification went missing or a section failed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import amqputil, machine
from bench.context import AccountingError, Context, Sizes
from bench.kafkautil import delete_topics_with_prefixes
from bench.procs import RssSampler

LOG = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("ingest", "stream", "e2e", "low-rate", "api", "poll", "metering", "vims")


def _section(name: str) -> Callable[[Context], dict[str, Any]]:
    # The section's module (its name without hyphens), imported only when the section runs: it
    # may need what the others do not.
    module = importlib.import_module(f"bench.{name.replace('-', '')}")
    run: Callable[[Context], dict[str, Any]] = module.run
    return run


def _check_brokers(bootstrap: str) -> None:
    host, _, port = bootstrap.rpartition(":")
    for name, address in (("Apache Kafka", (host, int(port))), ("RabbitMQ", ("127.0.0.1", 5672))):
        try:
            socket.create_connection(address, timeout=5).close()
        except OSError as exc:
            raise SystemExit(
                f"bench: {name} is not reachable at {address[0]}:{address[1]} (run `make up`): {exc}"
            ) from None


def _clean(value: Any) -> Any:
    """JSON without NaN: a figure that could not be measured is null."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, dict):
        # Keys starting with "_" hold raw samples for the charts, too bulky for results.json.
        return {str(k): _clean(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run with small sizes")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS)
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the report, JSON and charts go")
    parser.add_argument("--keep", action="store_true", help="keep this run's topics and virtual host")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections: {', '.join(unknown)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("oslo_messaging").setLevel(logging.ERROR)
    _check_brokers(args.bootstrap)

    run_id = uuid.uuid4().hex[:8]
    log_dir = Path(tempfile.mkdtemp(prefix=f"eventfed-bench-{run_id}-"))
    sampler = RssSampler().start()
    sampler.track("bench driver (this process)", os.getpid())
    ctx = Context(
        run_id=run_id,
        bootstrap=args.bootstrap,
        vhost=f"eventfed-bench-{run_id}",
        log_dir=log_dir,
        sampler=sampler,
        sizes=Sizes.quick() if args.quick else Sizes.full(),
        quick=args.quick,
    )
    started = time.monotonic()
    started_at = datetime.now(UTC)
    LOG.info("run %s (%s), logs in %s", run_id, "quick" if args.quick else "full", log_dir)
    results: dict[str, Any] = {
        "run_id": run_id,
        "mode": "quick" if args.quick else "full",
        "started_at": started_at.isoformat(timespec="seconds"),
        "command": "make bench" + (" BENCH_ARGS=--quick" if args.quick else ""),
        "machine": machine.describe(),
        "sizes": ctx.sizes.__dict__,
    }
    failures: list[str] = []
    lost = False
    amqputil.create_vhost(ctx.vhost)
    try:
        for name in sections:
            LOG.info("section %s", name)
            section_started = time.monotonic()
            try:
                results[name] = _section(name)(ctx)
                if results[name].get("accounting_error"):
                    lost = True
                    failures.append(f"{name}: {results[name]['accounting_error']}")
            except AccountingError as exc:
                lost = True
                failures.append(f"{name}: {exc}")
                results[name] = {"error": str(exc)}
                LOG.error("section %s LOST NOTIFICATIONS: %s", name, exc)
            except Exception as exc:
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                LOG.error("section %s failed:\n%s", name, traceback.format_exc())
            results.setdefault(name, {})["section_seconds"] = time.monotonic() - section_started
    finally:
        sampler.untrack(os.getpid())
        sampler.stop()
        if not args.keep:
            try:
                amqputil.delete_vhost(ctx.vhost)
            except Exception as exc:
                LOG.warning("could not delete virtual host %s: %s", ctx.vhost, exc)
            try:
                delete_topics_with_prefixes(args.bootstrap, [ctx.prefix])
            except Exception as exc:
                LOG.warning("could not delete this run's topics: %s", exc)
    results["memory_peak_rss_mib"] = {role: rss / 2**20 for role, rss in sorted(sampler.peaks.items())}
    results["total_seconds"] = time.monotonic() - started
    results["failures"] = failures

    from bench import report

    args.output.mkdir(parents=True, exist_ok=True)
    clean = _clean(results)
    if set(sections) == set(SECTIONS):
        (args.output / "results.json").write_text(json.dumps(clean, indent=2) + "\n")
        report.write(clean, args.output, results)
        written = args.output / "report.md"
        if "low-rate" in clean:
            report.write_sections(clean, ["low-rate"], args.output)
    else:
        # Some sections only: each its own files, so a full run's report is not overwritten.
        report.write_sections(clean, sections, args.output)
        written = args.output / f"{sections[0]}.md"
    LOG.info("wrote %s in %.0f s; process logs in %s", written, results["total_seconds"], log_dir)
    if not failures:
        if not args.keep:
            shutil.rmtree(log_dir, ignore_errors=True)
        return 0
    banner = "!" * 78
    kind = "NOTIFICATIONS WERE LOST" if lost else "SECTIONS FAILED"
    print(
        f"\n{banner}\nBENCH FAILED: {kind}\n" + "\n".join(failures) + f"\nlogs: {log_dir}\n{banner}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
