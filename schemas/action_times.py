"""How long each kind of Nova action may take before eventfed calls it stuck: the built-in times,
and the syntax of the setting that overrides them (`EVENTFED_STUCK_AFTER`, Helm
`stream.stuckAfter`). Shared by the settings, which validate it, and the stream worker's timers
(streams.stuck)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from schemas.vocabulary import KINDS

DEFAULT_KEY: Final = "default"
# Seconds an action may take before it is stuck; 0 means no timer. Most actions finish in seconds;
# what copies disks or memory (create from an image, snapshot, resize, migrations, shelve) gets
# longer.
DEFAULT_STUCK_AFTER: Final[Mapping[str, float]] = {
    DEFAULT_KEY: 1800.0,
    "DELETE": 600.0,
    "SOFT_DELETE": 600.0,
    "RESTORE": 600.0,
    "POWER_ON": 600.0,
    "POWER_OFF": 600.0,
    "SHUT_DOWN": 600.0,
    "REBOOT": 600.0,
    "PAUSE": 600.0,
    "UNPAUSE": 600.0,
    "SUSPEND": 600.0,
    "RESUME": 600.0,
    "RESIZE_CONFIRM": 600.0,
    "LIVE_MIGRATION_ABORT": 600.0,
    "TRIGGER_CRASH_DUMP": 600.0,
    "SNAPSHOT": 3600.0,
    "RESIZE": 3600.0,
    "LIVE_MIGRATION": 3600.0,
    "SHELVE": 3600.0,
}
MAX_SECONDS: Final = 7 * 86_400.0
_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(value: Any, kind: str) -> float:
    """Seconds of `10m`, `90s`, `1h`, `600` or a number; `off` and 0 are 0 (no timer)."""
    if isinstance(value, bool):
        raise ValueError(f"{kind}: {value!r} is not a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip().lower() == "off":
        return 0.0
    elif isinstance(value, str) and (match := _DURATION.match(value.lower())):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"{kind}: {value!r} is not a duration (600, 90s, 10m, 1h or off)")
    if not 0 <= seconds <= MAX_SECONDS:
        raise ValueError(f"{kind}: {value!r} is not between 0 and 7 days")
    return seconds


def parse_stuck_after(value: Any) -> dict[str, float]:
    """The defaults overridden by `KIND=DURATION,...` (the environment) or a mapping (YAML, Helm).

    Only what is named changes: `DELETE=2m` keeps every other kind's default.
    """
    if isinstance(value, str):
        items: list[tuple[str, Any]] = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            kind, equals, duration = part.partition("=")
            if not equals:
                raise ValueError(f"{part!r} is not KIND=DURATION")
            items.append((kind.strip(), duration.strip()))
    elif isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    else:
        raise ValueError("expected KIND=DURATION,... or a mapping of kind to duration")
    result = dict(DEFAULT_STUCK_AFTER)
    for kind, duration in items:
        key = DEFAULT_KEY if kind.lower() == DEFAULT_KEY else kind.upper()
        if key != DEFAULT_KEY and key not in KINDS:
            raise ValueError(f"{kind!r} is not a status kind (DELETE, REBOOT, ...) or 'default'")
        result[key] = parse_duration(duration, key)
    return result
