"""The one retry schedule: exponential backoff with jitter, capped.

The listener holds a batch unacked while Kafka refuses it, the stream worker retries its writes
and offset look-ups; both wait by this schedule, each in its own way (a stop event, asyncio).
"""

from __future__ import annotations

import random


class Backoff:
    """Delays of initial * 2**attempt, capped at `maximum`, each shortened by up to 20% of jitter
    so that many clients refused at once do not retry in step."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0) -> None:
        self._initial = initial
        self._maximum = maximum
        self._attempt = 0

    @property
    def maximum(self) -> float:
        return self._maximum

    @property
    def attempts(self) -> int:
        return self._attempt

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        delay = min(self._maximum, self._initial * (2**self._attempt))
        self._attempt += 1
        return delay * random.uniform(0.8, 1.0)
