"""`eventfed api`: the state API served by waitress, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import waitress

from bridge.api import waitress_internals
from bridge.api.app import TRANSPORT_BODY_LIMIT_FACTOR, create_app
from bridge.api.read_model import KafkaReadModel
from bridge.logs import setup_logging, suppress_repeated_warnings
from bridge.settings import ApiSettings, load

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


def _stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    # waitress's loop catches SystemExit and shuts its worker threads down cleanly.
    LOG.info("received %s, stopping", signal.Signals(signum).name)
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, signal.SIG_IGN)
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    settings = load(ApiSettings)
    setup_logging(settings, "api")
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

    read_model = KafkaReadModel(settings, on_caught_up=settle_after_replay)
    app = create_app(settings, read_model)
    try:
        server = build_server(app, settings)
    except OSError as exc:
        LOG.error("cannot listen on %s:%s: %s", settings.api_host, settings.api_port, exc.strerror or exc)
        return 1
    read_model.start()
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    LOG.info(
        "serving the state API on http://%s:%s with %d threads",
        settings.api_host,
        settings.api_port,
        settings.api_threads,
    )
    try:
        server.run()
    finally:
        server.close()
        read_model.stop()
    LOG.info("state API stopped")
    return 0
