"""API: `bench/bench_api.py` (the colleagues' benchmark of `eventfed api`) with this run's sizes.

One VIM holds every VM, so check_vim_status covers the whole state (100,000 VMs in a full run):
a default page of it, every page in turn (walks) and, for comparison, all of it in one answer.
bench_api starts and stops its own server, fills its own topic and deletes it afterwards.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench import bench_api
from bench.context import Context


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.sizes
    args = argparse.Namespace(
        bootstrap=ctx.bootstrap,
        vms=sizes.api_vms,
        vims=1,
        partitions=8,
        seed=11,
        server_threads=8,
        concurrency=4,
        get_requests=sizes.api_get_requests,
        get_rate=500.0,
        check_concurrency=2,
        check_requests=sizes.api_check_requests,
        unpaged_requests=max(10, sizes.api_check_requests // 4),
        walks=5,
        page_limit_max=None,
        max_seconds=sizes.api_max_seconds,
        ready_timeout=300.0,
        keep_topic=False,
    )
    result = bench_api.run(args)
    latency = result["latency"]
    return {
        "vms": sizes.api_vms,
        "vims": 1,
        "startup": result["startup"],
        "rss_mb": result["rss_mb"],
        "get_vm": {
            name: {
                k: latency[name][k]
                for k in (
                    "requests",
                    "errors",
                    "requests_per_second",
                    "p50_ms",
                    "p99_ms",
                    "concurrency",
                    "target_rate_per_second",
                )
            }
            for name in ("get_vm_single_connection", "get_vm", "get_vm_paced")
        },
        "check_vim_status": {
            name: {
                k: latency[name][k]
                for k in (
                    "requests",
                    "errors",
                    "requests_per_second",
                    "p50_ms",
                    "p99_ms",
                    "first_byte_p99_ms",
                    "matched_vms",
                    "total_matching_vms",
                )
                if k in latency[name]
            }
            for name in (
                "check_vim_status_selective",
                "check_vim_status_whole_vim",
                "check_vim_status_selective_first_page",
                "check_vim_status_whole_vim_first_page",
                "check_vim_status_selective_unpaged",
                "check_vim_status_whole_vim_unpaged",
            )
        },
        "check_vim_status_walks": result["walks"],
        "list_vms_page_1000": {k: latency["list_vms_page_1000"][k] for k in ("p50_ms", "p99_ms")},
        "targets": result["targets"],
        "meets_targets": result["meets_targets"],
        "exit_code_on_sigterm": result["exit_code_on_sigterm"],
    }
