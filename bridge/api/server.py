"""`eventfed api`: the state API served by waitress, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import signal
from collections.abc import Callable
from typing import Any

import waitress

from bridge.api import waitress_internals
from bridge.api.app import TRANSPORT_BODY_LIMIT_FACTOR, create_app
from bridge.api.read_model import KafkaReadModel
from bridge.deployable import STOP_SIGNALS, run_deployable
from bridge.logs import suppress_repeated_warnings
from bridge.settings import ApiSettings

LOG = logging.getLogger(__name__)

# A worker thread pauses a streamed answer while this much is waiting to be sent, so a large
# check_vim_status answer costs at most about this much memory per connection ...
OUTPUT_HIGH_WATERMARK_BYTES = 4 * 1024 * 1024
# ... and waitress keeps it in memory rather than spilling it to a temporary file.
OUTPUT_BUFFER_BYTES = 2 * OUTPUT_HIGH_WATERMARK_BYTES
_M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h


def tune_allocator() -> Callable[[], None]:
    """Hold the allocator's RSS down; returns a function that gives freed heap back to the OS.

    glibc gives each thread its own heap arena, and memory freed in an arena is rarely returned:
    every request thread that once built a large answer would keep its peak as RSS. The GIL
    serialises Python's allocations anyway, so two arenas cost no throughput. After the start-up
    replay the heap is full of freed parse buffers; trimming returns them. Both are glibc-only
    and skipped elsewhere.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        return lambda: None

    def trim() -> None:
        libc.malloc_trim(0)

    return trim


def build_server(app: Any, settings: ApiSettings) -> Any:
    """The waitress server of `app`, bound to the configured address; its own errors (a body over
    its limit, a malformed request) are JSON like the app's."""
    server = waitress.create_server(
        app,
        host=settings.api_host,
        port=settings.api_port,
        threads=settings.api_threads,
        ident="eventfed",
        max_request_body_size=settings.api_max_body_bytes * TRANSPORT_BODY_LIMIT_FACTOR,
        outbuf_overflow=OUTPUT_BUFFER_BYTES,
        outbuf_high_watermark=OUTPUT_HIGH_WATERMARK_BYTES,
        clear_untrusted_proxy_headers=True,
    )
    waitress_internals.json_errors(server)
    return server


class ApiDeployable:
    """`eventfed api` in the deployable skeleton (bridge.deployable): replay the state topic into
    the read model while waitress serves; its health endpoints are the app's own, on the API port.
    """

    name = "state API"
    handles_signals = False

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        # The read model warns about every Kafka client error; during an outage those repeat with
        # every reconnect.
        suppress_repeated_warnings("bridge.api.read_model")
        release_free_memory = tune_allocator()

        def settle_after_replay() -> None:
            # The table is now a few hundred thousand long-lived objects. Every full collection of
            # the cyclic GC would walk them all (tens of ms, a stall for every request in flight);
            # frozen, they are left out, and they hold no cycles for it to find anyway.
            gc.collect()
            gc.freeze()
            release_free_memory()

        self.read_model = KafkaReadModel(settings, on_caught_up=settle_after_replay)
        self.app = create_app(settings, self.read_model)
        self.server: Any = None

    def readiness(self) -> tuple[bool, str]:
        readiness = self.read_model.readiness()
        return readiness.ready, "; ".join(readiness.reasons)

    def start(self) -> int | None:
        settings = self.settings
        try:
            self.server = build_server(self.app, settings)
        except OSError as exc:
            LOG.error("cannot listen on %s:%s: %s", settings.api_host, settings.api_port, exc.strerror or exc)
            return 1
        self.read_model.start()
        return None

    def work(self) -> int:
        LOG.info(
            "serving the state API on http://%s:%s with %d threads",
            self.settings.api_host,
            self.settings.api_port,
            self.settings.api_threads,
        )
        self.server.run()
        return 0

    def request_stop(self, signum: int) -> None:
        LOG.info("received %s, stopping", signal.Signals(signum).name)
        for handled in STOP_SIGNALS:
            signal.signal(handled, signal.SIG_IGN)
        # Raised in the main thread, inside waitress's loop, which catches SystemExit and shuts
        # its worker threads down cleanly.
        raise SystemExit(0)

    def drain(self) -> None:
        if self.server is not None:
            self.server.close()
            self.read_model.stop()


def run(args: argparse.Namespace) -> int:
    return run_deployable("api", ApiSettings, ApiDeployable, serve_health=False)
