"""How long the listener waits to fill a batch, from how fast its batches fill.

A batch's fixed costs (a Kafka round trip here; a Faust record per partition pack in the stream
worker) are paid per batch, so a busy cloud gains from longer batches, while a quiet cloud's
notifications would only wait longer for company that does not come. The window is `minimum` up
to `quiet_rate`, `maximum` from `busy_rate` on, and linear in between.

Below `quiet_rate`, where the linear window is the shortest, a batch still waits for company
where company is due: for about `company` more notifications at the rate read, at most
`company_wait`, and only where the next one is due within it (a cloud sending less than that
gains nothing from waiting and keeps the shortest window). The wait is added latency, and it saves
a batch's fixed costs, here and in the stream worker (one packed record instead of several), for
each notification that keeps another company.

The rate is the larger of two readings over the last `span` seconds. The notifications received
divided by the span: the arrival rate while the listener keeps up, however short the window (a
poll that comes back empty is never handed over, so the windows alone would count a quiet cloud's
lone notifications as if each had filled its window). And how fast batches filled beyond their
first notification: the notifications after the first divided by the windows they were polled
with: a listener that falls behind (a burst, a starved core) finds every poll full and gets the
long window too, where counting what it handled per second would see its own slowness as a quiet
cloud. Pure logic: the caller applies the window.
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
        company_wait: float = 0.0,
        company: float = 2.0,
    ) -> None:
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.busy_rate = busy_rate
        self.quiet_rate = busy_rate / 5 if quiet_rate is None else min(quiet_rate, busy_rate)
        self.span = span
        self.company_wait = company_wait
        self.company = company
        # (monotonic time, notifications, window the batch was polled with)
        self._batches: deque[tuple[float, int, float]] = deque()
        self.current = minimum

    @property
    def adaptive(self) -> bool:
        return self.maximum > self.minimum or self.company_wait > self.minimum

    def observe(self, received: int, window: float, now: float) -> float:
        """A batch of `received` notifications, polled with `window`, arrived at monotonic time
        `now`; the window the next batches should use."""
        batches = self._batches
        batches.append((now, received, window))
        while batches[0][0] <= now - self.span:
            batches.popleft()
        # Summed afresh (a few hundred batches a second at most): running sums would drift.
        received = sum(b[1] for b in batches)
        polled = sum(b[2] for b in batches)
        filling = received - len(batches)
        arriving = received / self.span
        self.current = self.for_rate(max(arriving, filling / polled if polled > 0 else 0.0))
        return self.current

    def for_rate(self, rate: float) -> float:
        return max(self._linear(rate), self._waiting_for_company(rate))

    def _linear(self, rate: float) -> float:
        if rate <= self.quiet_rate:
            return self.minimum
        if rate >= self.busy_rate:
            return self.maximum
        share = (rate - self.quiet_rate) / (self.busy_rate - self.quiet_rate)
        return self.minimum + share * (self.maximum - self.minimum)

    def _waiting_for_company(self, rate: float) -> float:
        if self.company_wait <= 0 or rate * self.company_wait < 1:
            return self.minimum
        return min(self.company_wait, self.company / rate)
