"""A batch's decisions on their way to Kafka, shared by the runner and its sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams import pipeline


@dataclass
class BatchDecisions:
    """One batch's decisions, on their way to Kafka."""

    started: float
    records: int = 0
    outputs: list[pipeline.Output] = field(default_factory=list)
    # state key -> (partition, new state, or None for a tombstone)
    states: dict[bytes, tuple[int | None, dict[str, Any] | None]] = field(default_factory=dict)
    outcomes: list[pipeline.Outcome] = field(default_factory=list)
    offsets: dict[Any, int] = field(default_factory=dict)
