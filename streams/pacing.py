"""How long the stream worker's fetch waits for company, from the rate notifications arrive at.
Pure: the caller feeds it what it handled and reads the pause.

At a quiet cloud's rates each fetch would bring the one record that just came, and a fetch costs
the worker and the broker about as much as the record: after a fetch that brought records the
worker waits (streams.faust_internals.fetch_waiting_for_company) so the next brings a few. The
wait is added latency, and it buys less the busier the cloud: at a busy rate the listener's own
batches make every fetch full, and a wait would only hold them. So the pause is `longest` while
notifications come slowly and shrinks linearly to nothing at `busy_rate` a second (counted as
notifications, not raw records: a busy listener packs several in one record).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class FetchPause:
    def __init__(
        self,
        longest: float,
        busy_rate: float,
        span: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.longest = longest
        self.busy_rate = busy_rate
        self.span = span
        self._clock = clock
        # (monotonic time, notifications) of the batches handled within the last span.
        self._handled: deque[tuple[float, int]] = deque()
        self._count = 0

    def handled(self, notifications: int) -> None:
        """A batch carrying `notifications` arrived."""
        self._handled.append((self._clock(), notifications))
        self._count += notifications
        self._forget(self._clock())

    def rate(self) -> float:
        """Notifications a second over the last span."""
        self._forget(self._clock())
        return self._count / self.span

    def __call__(self) -> float:
        """The pause after a fetch that brought records, in seconds."""
        if self.longest <= 0:
            return 0.0
        return self.longest * max(0.0, 1.0 - self.rate() / self.busy_rate)

    def _forget(self, now: float) -> None:
        handled = self._handled
        while handled and handled[0][0] <= now - self.span:
            self._count -= handled.popleft()[1]
