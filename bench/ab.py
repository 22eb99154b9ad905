"""Alternating A/B runs of the low-rate measurement: two checkouts of eventfed, one machine, the
same brokers, the same publishers.

    .venv/bin/python -m bench.ab --a PATH --b PATH --label NAME [--rates 100] [--seconds 30] [--rounds 3]

Each round starts a listener and a stream worker from checkout A, measures each rate (as the
low-rate section does: CPU per notification, Kafka requests per second, latency), stops them, then
does the same from checkout B; the order swaps every round, so a change in the machine's load
(it is shared) falls on both. The eventfed processes import the checkout's code (PYTHONPATH
first); the bench's own code is this checkout's. Writes bench/results/ab/NAME.json, with every
round and the median per variant and rate, and prints the medians.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import amqputil
from bench.context import Context, Sizes
from bench.e2e import Pipeline
from bench.kafkautil import delete_topics_with_prefixes
from bench.lowrate import kafka_broker_pid, steady
from bench.procs import RssSampler

LOG = logging.getLogger("bench.ab")
RESULTS = Path(__file__).resolve().parent / "results" / "ab"
FIGURES = (
    ("listener_us", lambda r: r["cpu_us_per_notification"].get("listener")),
    ("worker_us", lambda r: r["cpu_us_per_notification"].get("stream")),
    ("eventfed_us", lambda r: r["eventfed_cpu_us_per_notification"]),
    ("broker_us", lambda r: r["cpu_us_per_notification"].get("kafka broker")),
    ("produce_per_s", lambda r: r["kafka_requests_per_second"]["produce"]),
    ("commit_per_s", lambda r: r["kafka_requests_per_second"]["commit"]),
    ("fetch_per_s", lambda r: r["kafka_requests_per_second"]["fetch"]),
    ("requests_per_s", lambda r: r["kafka_requests_per_second"]["all"]),
    ("p50_ms", lambda r: r["latency_ms"]["p50"]),
    ("p99_ms", lambda r: r["latency_ms"]["p99"]),
)


def _code(path: Path) -> str:
    described = subprocess.run(
        ["git", "-C", str(path), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return described.stdout.strip() or "?"


def measure(
    ctx: Context, checkout: Path, name: str, rates: Sequence[int], seconds: float
) -> list[dict[str, Any]]:
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(checkout)
    requests_dir = ctx.log_dir / f"{name}-requests"
    requests_dir.mkdir(parents=True, exist_ok=True)
    try:
        with ctx.fleet() as fleet:
            pipeline = Pipeline(ctx, fleet, name, requests_dir, quiet_bench=True)
            try:
                pipeline.run_rate(200, 5.0, "wire", 1)
                broker = kafka_broker_pid(ctx.bootstrap)
                return [steady(pipeline, rate, seconds, 2 + i, broker) for i, rate in enumerate(rates)]
            finally:
                pipeline.close()
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous


def _figures(run: dict[str, Any]) -> dict[str, Any]:
    return {figure: read(run) for figure, read in FIGURES} | {"round": run["round"]}


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    result = {}
    for figure, read in FIGURES:
        values = [v for v in (read(run) for run in runs) if v is not None]
        result[figure] = statistics.median(values) if values else float("nan")
    return result


def write_table(directory: Path) -> None:
    """ab.md beside the results: every A/B file's medians, one row per variant and rate."""
    rows = []
    for path in sorted(directory.glob("*.json")):
        document = json.loads(path.read_text())
        for variant in ("A", "B"):
            for rate, figures in document["medians"][variant].items():
                rows.append(
                    f"| {document['label']} | {variant} `{document['code'][variant]}` | {rate}/s | "
                    f"{document['rounds']} x {document['seconds']:.0f} s | "
                    + " | ".join(f"{figures[name]:,.1f}" for name, _ in FIGURES)
                    + " |"
                )
    header = ["change", "code", "rate", "runs"] + [name for name, _ in FIGURES]
    lines = [
        "# Alternating A/B runs (`python -m bench.ab`)",
        "",
        "Medians over the rounds; A and B alternate (A B, B A, A B), each with a fresh listener and "
        "worker, on the same shared machine and brokers. CPU in microseconds per notification (the "
        "broker's is its whole process, other clients included), Kafka requests per second sent by "
        "eventfed's clients, latency in ms. Every round's figures are in the JSON file of the change.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *rows,
    ]
    (directory.parent / "ab.md").write_text("\n".join(lines) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="checkout of the code before the change")
    parser.add_argument("--b", type=Path, required=True, help="checkout of the code with the change")
    parser.add_argument("--label", required=True, help="the change's name (the results file's)")
    parser.add_argument("--rates", default="100")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    # A stop request runs the clean-up below (processes stopped by PID, topics and vhost deleted).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("oslo_messaging").setLevel(logging.ERROR)
    rates = [int(r) for r in args.rates.split(",")]
    run_id = uuid.uuid4().hex[:8]
    sampler = RssSampler().start()
    ctx = Context(
        run_id=run_id,
        bootstrap=args.bootstrap,
        vhost=f"eventfed-bench-{run_id}",
        log_dir=Path(tempfile.mkdtemp(prefix=f"eventfed-ab-{run_id}-")),
        sampler=sampler,
        sizes=Sizes.quick(),
        quick=True,
    )
    variants = {"A": args.a.resolve(), "B": args.b.resolve()}
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {v: {rate: [] for rate in rates} for v in variants}
    amqputil.create_vhost(ctx.vhost)
    try:
        for round_number in range(args.rounds):
            order = ("A", "B") if round_number % 2 == 0 else ("B", "A")
            for variant in order:
                LOG.info("round %d, %s (%s)", round_number + 1, variant, variants[variant])
                name = f"ab{round_number}{variant.lower()}"
                for rate, outcome in zip(
                    rates, measure(ctx, variants[variant], name, rates, args.seconds), strict=True
                ):
                    outcome["round"] = round_number + 1
                    runs[variant][rate].append(outcome)
    finally:
        sampler.stop()
        amqputil.delete_vhost(ctx.vhost)
        delete_topics_with_prefixes(ctx.bootstrap, [ctx.prefix])
    summary = {
        variant: {str(rate): medians(by_rate[rate]) for rate in rates} for variant, by_rate in runs.items()
    }
    document = {
        "label": args.label,
        "run_id": run_id,
        "code": {variant: _code(path) for variant, path in variants.items()},
        "rounds": args.rounds,
        "seconds": args.seconds,
        "medians": summary,
        "runs": {
            variant: {
                str(rate): [
                    {figure: read(run) for figure, read in FIGURES} | {"round": run["round"]} for run in r
                ]
                for rate, r in by_rate.items()
            }
            for variant, by_rate in runs.items()
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.label}.json").write_text(json.dumps(document, indent=2) + "\n")
    write_table(RESULTS)
    for rate in rates:
        for variant in variants:
            figures = summary[variant][str(rate)]
            print(
                f"{args.label} {rate}/s {variant} ({document['code'][variant]}): "
                + ", ".join(f"{name} {value:.1f}" for name, value in figures.items())
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
