"""The low-rate section of the report: eventfed at the rates clouds really send, against its own
drain and Ceilometer's notification agent in the same run."""

from __future__ import annotations

import math
from typing import Any

Results = dict[str, Any]


def _n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _met(flag: Any) -> str:
    return "-" if flag is None else ("met" if flag else "**missed**")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def rate_cpu(low: Results, rate: int, process: str) -> Any:
    """A process's CPU µs per notification at a steady rate; None when not measured."""
    for run in low.get("rates") or []:
        if run["rate"] == rate:
            return run["cpu_us_per_notification"].get(process)
    return None


def section(low: Results) -> list[str]:
    if not low.get("rates"):
        return ["## Low rates", "", f"Not measured: {low.get('error', 'section not run')}", ""]
    lines = [
        "## Low rates: what a notification costs when the cloud is quiet",
        "",
        f"One listener and one stream worker as shipped, wire publishers at a steady rate for "
        f"{_n(low['window_seconds'])} s each. CPU per notification = CPU seconds of the process over the "
        "sending window / notifications sent. The Kafka broker's figure is its whole process: other "
        "clients of a shared broker add to it (the idle row shows how much). Kafka requests per second are "
        "those eventfed's clients sent (librdkafka statistics; aiokafka's requests counted in the worker). "
        "CPU per notification holds up when other work shares the machine; wall latency does not (a stall "
        "of another process shows in the p99).",
        "",
    ]
    rows = []
    for run in low["rates"]:
        cpu = run["cpu_us_per_notification"]
        requests = run["kafka_requests_per_second"]
        latency = run["latency_ms"]
        rows.append(
            [
                f"{run['rate']}/s",
                _n(cpu.get("listener")),
                _n(cpu.get("stream")),
                _n(run["eventfed_cpu_us_per_notification"]),
                f"{_n(cpu.get('kafka broker'))} ({_n(run.get('broker_us_above_idle'))})",
                _n(cpu.get("rabbitmq")),
                f"{_n(requests['produce'])} / {_n(requests['commit'], 1)} / {_n(requests['fetch'])} / "
                f"{_n(requests['all'])}",
                f"{_n(latency['p50'], 1)} / {_n(latency['p95'], 1)} / {_n(latency['p99'], 1)}",
            ]
        )
    idle = low.get("idle") or {}
    if idle:
        cores = idle["cores"]
        requests = idle["kafka_requests_per_second"]
        rows.append(
            [
                "idle (cores)",
                _n(cores.get("listener"), 3),
                _n(cores.get("stream"), 3),
                "",
                _n(cores.get("kafka broker"), 3),
                _n(cores.get("rabbitmq"), 3),
                f"{_n(requests['produce'])} / {_n(requests['commit'], 1)} / {_n(requests['fetch'], 1)} / "
                f"{_n(requests['all'], 1)}",
                "",
            ]
        )
    lines += _table(
        [
            "rate",
            "listener µs",
            "worker µs",
            "eventfed µs",
            "Kafka broker µs (above its idle load)",
            "RabbitMQ µs",
            "Kafka requests/s: produce / commit / fetch / all",
            "latency ms p50 / p95 / p99",
        ],
        rows,
    )
    drain = low.get("drain") or {}
    peer = low.get("ceilometer") or {}
    comparison = low.get("comparison") or {}
    peer_rows = []
    if drain:
        cpu = drain["cpu_us_per_notification"]
        peer_rows.append(
            [
                f"eventfed, drain of {_n(drain['notifications'])}",
                f"{_n(cpu['listener'])} + {_n(cpu['stream'])} = "
                f"{_n(drain['eventfed_cpu_us_per_notification'])}",
                " + ".join(_n(mib) for mib in (low.get("eventfed_peak_rss_mib") or {}).values()),
            ]
        )
    if peer.get("drain"):
        peer_rows.append(
            [
                f"Ceilometer {peer.get('version', '')}, drain of {_n(peer['drain']['notifications'])} "
                f"({_n(peer['drain']['per_second'])}/s)",
                _n(peer["drain"]["cpu_us_per_notification"]),
                _n(peer.get("peak_rss_mib")),
            ]
        )
    if peer.get("steady"):
        peer_rows.append(
            [
                f"Ceilometer {peer.get('version', '')}, steady {peer['rate']}/s",
                _n(peer["steady"]["cpu_us_per_notification"]),
                _n(peer.get("peak_rss_mib")),
            ]
        )
    if peer.get("error"):
        peer_rows.append([f"Ceilometer: {peer['error']}", "-", "-"])
    if peer_rows:
        lines += [
            "Drained (a backlog queued while the consumer was stopped, CPU from the first notification "
            "written to the last) and Ceilometer's notification agent (event pipeline, `notifier://` "
            "publisher through oslo.messaging's Kafka driver, agent and worker process together) on the "
            "same notifications, in the same run (eventfed's RSS: listener + worker):",
            "",
            *_table(["", "CPU µs per notification", "peak RSS MiB"], peer_rows),
        ]
    floor = (low.get("floors") or {}).get("cpu_us_per_notification") or {}
    if floor and "framework_floor_us_at_100" in comparison:
        lines += [
            "The frameworks' floor (`bench/floors.py`): bare consumers beside eventfed's, in the same "
            "100/s window, on the same notifications, doing nothing with them. oslo.messaging's batch "
            "listener and a Faust agent as each comes, and as eventfed drives them (batches that "
            "begin with their first notification, socket waits, paced fetches):",
            "",
            *_table(
                ["at 100/s, CPU µs per notification", "as it comes", "as eventfed drives it", "eventfed"],
                [
                    [
                        "oslo.messaging batch listener",
                        _n(floor.get("oslo")),
                        _n(floor.get("oslo-driven")),
                        f"listener {_n(rate_cpu(low, 100, 'listener'))}",
                    ],
                    [
                        "Faust agent on the raw topic",
                        _n(floor.get("faust")),
                        _n(floor.get("faust-driven")),
                        f"worker {_n(rate_cpu(low, 100, 'stream'))}",
                    ],
                    [
                        "both",
                        _n(comparison["framework_floor_us_at_100"]),
                        _n(comparison["framework_floor_driven_us_at_100"]),
                        f"{_n(comparison['eventfed_us_at_100'])} (its own work: "
                        f"{_n(comparison['eventfed_own_us_at_100'])})",
                    ],
                ],
            ),
        ]
        allowed = [f"{_n(comparison['allowed_us_by_ratio_to_drain'])} µs by 3 x their drain cost"]
        if comparison.get("allowed_us_by_share_of_ceilometer") is not None:
            allowed.append(f"{_n(comparison['allowed_us_by_share_of_ceilometer'])} µs by ½ of Ceilometer's")
        lines += [
            f"The targets allow listener + worker {' and '.join(allowed)}; the two frameworks alone, "
            f"doing nothing, take {_n(comparison['framework_floor_driven_us_at_100'])} µs as eventfed "
            f"drives them ({_n(comparison['framework_floor_us_at_100'])} µs as they come).",
            "",
        ]
    if comparison:
        share = comparison.get("share_of_ceilometer_at_100")
        lines += _table(
            ["target (same run)", "measured", ""],
            [
                [
                    "listener + worker at 100/s ≤ 3 x their drain cost",
                    f"{_n(comparison['ratio_100_to_drain'], 1)} x (listener "
                    f"{_n(comparison['listener_ratio_100_to_drain'], 1)} x, worker "
                    f"{_n(comparison['stream_ratio_100_to_drain'], 1)} x)",
                    _met(comparison.get("meets_ratio_to_drain")),
                ],
                [
                    "listener + worker at 100/s ≤ ½ of Ceilometer's at 100/s",
                    "-" if share is None else f"{share:.2f} of it",
                    _met(comparison.get("meets_share_of_ceilometer")),
                ],
                [
                    "p99 at 100/s ≤ 50 ms",
                    f"{_n(comparison['p99_ms_at_100'], 1)} ms",
                    _met(comparison.get("meets_p99_at_100")),
                ],
            ],
        )
    return lines
