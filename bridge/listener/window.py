"""How long the listener waits to fill a batch, from the rate notifications arrive at.

A batch's fixed costs (a Kafka round trip here; a Faust record per partition pack in the stream
worker) are paid per batch, so a busy cloud gains from longer batches, while a quiet cloud's
notifications would only wait longer for company that does not come. The window is therefore
`minimum` up to `quiet_rate`, `maximum` from `busy_rate` on, and linear in between; the rate is
the notifications received over the last `span` seconds. Pure logic: the caller applies it.
"""

from __future__ import annotations

from collections import deque


class BatchWindow:
    def __init__(
        self,
        minimum: float,
        maximum: float,
        busy_rate: float,
        quiet_rate: float | None = None,
        span: float = 1.0,
    ) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.busy_rate = busy_rate
        self.quiet_rate = busy_rate / 5 if quiet_rate is None else min(quiet_rate, busy_rate)
        self.span = span
        self._batches: deque[tuple[float, int]] = deque()
        self._count = 0
        self.current = minimum

    @property
    def adaptive(self) -> bool:
        return self.maximum > self.minimum

    def observe(self, received: int, now: float) -> float:
        """A batch of `received` notifications arrived at monotonic time `now`; the window the
        next batches should use."""
        self._batches.append((now, received))
        self._count += received
        while self._batches and self._batches[0][0] <= now - self.span:
            self._count -= self._batches.popleft()[1]
        self.current = self.for_rate(self._count / self.span)
        return self.current

    def for_rate(self, rate: float) -> float:
        if rate <= self.quiet_rate:
            return self.minimum
        if rate >= self.busy_rate:
            return self.maximum
        share = (rate - self.quiet_rate) / (self.busy_rate - self.quiet_rate)
        return self.minimum + share * (self.maximum - self.minimum)
