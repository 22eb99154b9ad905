"""Waiting in tests for what other processes do: a condition polled until it holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.2
) -> T:
    """Call `check` until it returns something true, and return that; after `timeout` seconds an
    AssertionError naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout}s (last: {last!r})")
        time.sleep(interval)
