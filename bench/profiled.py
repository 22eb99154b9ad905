"""Run an `eventfed` subcommand under cProfile, every thread included; write the stats at exit.

    python -m bench.profiled OUTPUT.prof listen|stream

The listener does its work in oslo.messaging's threads, so each new thread gets a profiler of
its own (installed by its first profile event); all are merged into one file when the command
returns (after SIGTERM, which every eventfed deployable handles by stopping cleanly).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
from typing import Any

_thread_profiles: list[cProfile.Profile] = []


def _start_thread_profiler(_frame: Any, _event: str, _arg: Any) -> None:
    # Called once in each new thread: enable() replaces this hook with cProfile's own.
    profile = cProfile.Profile()
    _thread_profiles.append(profile)
    profile.enable()


def main(argv: list[str]) -> int:
    output, args = argv[0], argv[1:]
    from bridge.cli import main as eventfed

    threading.setprofile(_start_thread_profiler)
    profile = cProfile.Profile()
    profile.enable()
    try:
        code = eventfed(args)
    finally:
        profile.disable()
        threading.setprofile(None)
        stats = pstats.Stats(profile)
        for thread_profile in _thread_profiles:
            try:
                stats.add(thread_profile)
            except Exception:
                continue
        stats.dump_stats(output)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
