"""The one place eventfed touches oslo.messaging's undocumented attributes.

The listener's batch window adapts to the load (bridge.listener.window), and oslo has no public
way to change a running server's `batch_timeout`. Its poll-style listener adapter reads
`self.batch_timeout` afresh on every poll, and the server keeps that listener in `listener` once
started, so setting the attribute changes the window from the next poll on. Checked against
oslo.messaging 18.3.1; `missing_internals()` says whether the installed version still works this
way, a unit test fails when an upgrade moves it, and without it the listener keeps a fixed window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bridge.private_api import has_source, missing

CHECKED_VERSIONS = {"oslo.messaging": "18.3.1"}


def _checks() -> dict[str, Callable[[], bool]]:
    from oslo_messaging import server
    from oslo_messaging._drivers import base

    return {
        # The server keeps the driver's listener it created at start() in `listener`.
        "MessageHandlingServer.listener": lambda: has_source(
            server.MessageHandlingServer.start, "self.listener = self._create_listener()"
        ),
        # The listener stores the window in a plain attribute...
        "Listener.batch_timeout": lambda: has_source(
            base.Listener.__init__, "self.batch_timeout = batch_timeout"
        ),
        # ...that the polling thread reads again for every batch.
        "PollStyleListenerAdapter._runner reads batch_timeout": lambda: has_source(
            base.PollStyleListenerAdapter._runner, "batch_timeout=self.batch_timeout"
        ),
    }


def missing_internals() -> list[str]:
    """What the batch window relies on that the installed oslo.messaging lacks."""
    return missing(_checks())


def set_batch_timeout(server: Any, seconds: float) -> bool:
    """Sets a started server's batch window for its next poll; False before it has a listener."""
    listener = getattr(server, "listener", None)
    if listener is None or not hasattr(listener, "batch_timeout"):
        return False
    listener.batch_timeout = seconds
    return True
