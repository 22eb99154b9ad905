"""cProfile summaries for the report: the top functions by own time, and own time by component."""

from __future__ import annotations

import cProfile
import pstats
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_STDLIB = re.compile(r"/lib/python3\.\d+/([A-Za-z_]+)")
# Built-ins that block: time a thread spends waiting, not working.
_WAITS = re.compile(r"<(built-in method|method) '?([\w.]*\.)?(acquire|sleep|poll|select|wait)\b")


def is_wait(filename: str, function: str) -> bool:
    return filename == "~" and bool(_WAITS.match(function))


def component(filename: str, function: str) -> str:
    """Where a function lives, coarsely: an eventfed module, a library, a stdlib module."""
    if is_wait(filename, function):
        return "waiting (locks, sleep, poll)"
    if filename == "~":
        if "cimpl." in function:
            return "confluent_kafka (librdkafka calls)"
        if "socket" in function:
            return "sockets (send, recv)"
        return "builtins (isinstance, dict.get, ...)"
    if filename.startswith("<vm_status_event encoder>"):
        return "streams/codecs.py"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].split(".", 1)[0]
    if filename.startswith(str(ROOT) + "/"):
        relative = filename[len(str(ROOT)) + 1 :]
        return relative if relative.startswith(("streams/", "bridge/")) else relative.split("/", 1)[0] + "/"
    match = _STDLIB.search(filename)
    if match:
        return "stdlib " + match.group(1).removesuffix(".py")
    return filename or "?"


def _where(filename: str, line: int, function: str) -> str:
    if filename == "~":
        return function
    short = filename.replace(str(ROOT) + "/", "")
    if "site-packages/" in short:
        short = short.split("site-packages/", 1)[1]
    else:
        match = _STDLIB.search(short)
        if match:
            short = short[match.start(1) :]
    return f"{short}:{line}({function})"


def summarise(source: cProfile.Profile | pstats.Stats | str | Path, rows: int = 15) -> dict[str, Any]:
    stats = (
        source
        if isinstance(source, pstats.Stats)
        else pstats.Stats(str(source) if isinstance(source, Path) else source)
    )
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    waiting = sum(entry[2] for (f, _l, fn), entry in raw.items() if is_wait(f, fn))
    # Shares are of the busy time: waits in idle threads would drown everything else.
    total = (sum(entry[2] for entry in raw.values()) - waiting) or 1.0
    top = []
    busy = [item for item in raw.items() if not is_wait(item[0][0], item[0][2])]
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in sorted(
        busy, key=lambda item: item[1][2], reverse=True
    )[:rows]:
        top.append(
            {
                "function": _where(filename, line, function),
                "calls": calls,
                "tottime_s": tottime,
                "cumtime_s": cumtime,
                "tottime_share": tottime / total,
            }
        )
    by_component: dict[str, float] = defaultdict(float)
    for (filename, _line, function), entry in busy:
        by_component[component(filename, function)] += entry[2]
    ordered = sorted(by_component.items(), key=lambda item: item[1], reverse=True)
    return {
        "busy_seconds": total,
        "waiting_seconds": waiting,
        "top_by_tottime": top,
        "by_component": [{"component": name, "tottime_s": t, "share": t / total} for name, t in ordered[:14]],
    }


def cumulative(source: str | Path, names: list[str]) -> dict[str, dict[str, float]]:
    """Cumulative time and calls of chosen functions (matched on 'file:function' suffixes), and
    their share of the busy time (cumulative time may include waits inside the function)."""
    stats = pstats.Stats(str(source))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for (f, _l, fn), entry in raw.items() if not is_wait(f, fn)) or 1.0
    found: dict[str, dict[str, float]] = {}
    for (filename, _line, function), (_cc, calls, _tottime, cumtime, _callers) in raw.items():
        for name in names:
            path, _, func = name.rpartition(":")
            if function == func and filename.endswith(path):
                found[name] = {"calls": calls, "cumtime_s": cumtime, "share_of_busy": cumtime / total}
    return found
