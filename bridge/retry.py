"""The one retry schedule: exponential backoff with jitter, capped.

The listener holds a batch unacked while Kafka refuses it and connects to RabbitMQ again, the
poller retries a failed cycle, the stream worker retries its writes, offset look-ups, topic
creation, schema registration and a subscriptions reload; all wait by this schedule, each in its
own way (a stop event, asyncio, a timer's next tick).
"""

from __future__ import annotations

import random

# 2**64 times any sensible first delay is past any cap.
_MAX_EXPONENT = 64


class Backoff:
    """Delays of initial * 2**attempt, capped at `maximum`, each shortened by up to `jitter` (a
    fraction, 20% unless told) so that many clients refused at once do not retry in step; 0 gives
    the exact schedule."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, *, jitter: float = 0.2) -> None:
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self._initial = initial
        self._maximum = maximum
        self._jitter = jitter
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
        # The exponent stops growing long after any delay has reached the cap: 2**1024 is past
        # what a float holds, which a retry loop through a long outage would otherwise reach.
        delay = min(self._maximum, self._initial * (2 ** min(self._attempt, _MAX_EXPONENT)))
        self._attempt += 1
        if not self._jitter:
            return delay
        return delay * random.uniform(1.0 - self._jitter, 1.0)
