"""Logging set-up shared by every eventfed command: one JSON line per record on stderr for the
services, plain one-line messages for the commands a person runs (INTERACTIVE_COMMANDS).

Times are RFC 3339 in UTC with milliseconds (``2026-11-29T04:58:43.700Z``) so log collectors
parse them without a zone guess. stdout is left to a command's own output (``eventfed topics``
lists topics there, ``eventfed schema`` prints the schema). ``EVENTFED_LOG_FORMAT=text`` gives
plain lines for people at a terminal, with the same times.

librdkafka's own log lines reach Python logging through the ``librdkafka`` logger (see
bridge.kafka_config); during an outage it repeats the same line for every reconnect, so that
logger passes a given message at most once per :data:`LIBRDKAFKA_REPEAT_SECONDS` and says how
many repeats it held back.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.json import JsonFormatter

from bridge.log_context import VimFilter

if TYPE_CHECKING:
    from bridge.settings import CommonSettings

# Libraries that are chatty at INFO about things an operator cannot act on.
_QUIET_LOGGERS = (
    "aiokafka",
    "faust",
    "mode",
    "kafka",
    "oslo_messaging._drivers",
    "oslo_service",
    "amqp",
    "kombu",
)

LIBRDKAFKA_LOGGER = "librdkafka"
LIBRDKAFKA_REPEAT_SECONDS = 30.0

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("json", "text")

# Commands a person runs at a terminal and reads: their errors are plain one-line messages
# ("eventfed topics: ..."), not log records, unless EVENTFED_LOG_FORMAT asks for a format. The
# services (listen, poll, stream, api) keep JSON lines for log collectors.
INTERACTIVE_COMMANDS = frozenset({"topics", "decode", "consume", "settings", "schema"})
PLAIN = "plain"


def rfc3339_utc(created: float) -> str:
    """A record's time as RFC 3339 UTC with milliseconds and a `Z`."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Rfc3339JsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339_utc(record.created)


class Rfc3339TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339_utc(record.created)


@dataclass
class _Repeats:
    passed_at: float
    suppressed: int = 0


class RepeatSuppressor(logging.Filter):
    """Pass a message at most once per `interval` seconds; the next one passed carries
    `suppressed_repeats`, the number held back since.

    Messages that differ only in numbers (librdkafka's "after 0ms", broker ids, counters) are
    the same message: they say the same thing about the same outage.
    """

    _NUMBERS = re.compile(r"\d+")
    _MAX_KEYS = 1000

    def __init__(
        self, interval: float, clock: Callable[[], float] = time.monotonic, min_level: int = logging.NOTSET
    ) -> None:
        super().__init__()
        self.interval = interval
        self.min_level = min_level
        self._clock = clock
        self._seen: dict[tuple[int, str], _Repeats] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level:
            return True
        key = (record.levelno, self._NUMBERS.sub("#", record.getMessage()))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.passed_at < self.interval:
                seen.suppressed += 1
                return False
            if len(self._seen) >= self._MAX_KEYS:
                self._forget_older_than(now - self.interval)
            self._seen[key] = _Repeats(now)
        if seen is not None and seen.suppressed:
            record.suppressed_repeats = seen.suppressed
            record.msg = (
                f"{record.msg} (repeated {seen.suppressed} more times in {now - seen.passed_at:.0f}s)"
            )
        return True

    def _forget_older_than(self, cutoff: float) -> None:
        self._seen = {k: v for k, v in self._seen.items() if v.passed_at >= cutoff}
        if len(self._seen) >= self._MAX_KEYS:
            self._seen.clear()


def librdkafka_logger() -> logging.Logger:
    """The logger handed to every confluent-kafka client, with its repeat suppressor."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    if not any(isinstance(f, RepeatSuppressor) for f in logger.filters):
        logger.addFilter(RepeatSuppressor(LIBRDKAFKA_REPEAT_SECONDS))
    return logger


def suppress_repeated_warnings(logger_name: str) -> None:
    """Warnings and errors of `logger_name` through a repeat suppressor: for code that reports
    each of a Kafka client's errors, which repeat with every reconnect during an outage."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RepeatSuppressor) for f in logger.filters):
        logger.addFilter(RepeatSuppressor(LIBRDKAFKA_REPEAT_SECONDS, min_level=logging.WARNING))


class PlainFormatter(logging.Formatter):
    """The message alone; a warning says it is one."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"warning: {message}" if record.levelno == logging.WARNING else message


def _handler(log_format: str, component: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    # A process serving several VIMs names the VIM of each line (a JSON field, else in the text).
    handler.addFilter(VimFilter(append_to_message=log_format != "json"))
    if log_format == PLAIN:
        handler.setFormatter(PlainFormatter())
    elif log_format == "text":
        handler.setFormatter(Rfc3339TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            Rfc3339JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"component": component},
            )
        )
    return handler


def configure(log_level: str, log_format: str, component: str) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_handler(log_format, component)]
    root.setLevel(log_level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    librdkafka_logger()
    logging.captureWarnings(True)
    # oslo.messaging imports eventlet, which warns on import; it is not used (threading executor).
    # The message starts with a newline, hence (?s).
    warnings.filterwarnings("ignore", message="(?s).*eventlet")


def configure_from_environment(component: str, environ: Any = None) -> None:
    """Logging before settings are loaded, so that a settings error is logged like the rest.

    A bad EVENTFED_LOG_LEVEL or EVENTFED_LOG_FORMAT falls back to the default here; settings
    validation reports it.
    """
    env = os.environ if environ is None else environ
    if _plain(component, env):
        level = str(env.get("EVENTFED_LOG_LEVEL", "WARNING")).upper()
        configure(level if level in LOG_LEVELS else "WARNING", PLAIN, component)
        return
    level = str(env.get("EVENTFED_LOG_LEVEL", "INFO")).upper()
    log_format = str(env.get("EVENTFED_LOG_FORMAT", "json")).lower()
    configure(
        level if level in LOG_LEVELS else "INFO",
        log_format if log_format in LOG_FORMATS else "json",
        component,
    )


def _plain(component: str, env: Any) -> bool:
    return component in INTERACTIVE_COMMANDS and "EVENTFED_LOG_FORMAT" not in env


def setup_logging(settings: CommonSettings, component: str) -> None:
    """Logging as the loaded settings say (`log_level`, `log_format`); an interactive command
    without EVENTFED_LOG_FORMAT keeps its plain lines (INFO only when EVENTFED_LOG_LEVEL asks)."""
    if _plain(component, os.environ):
        level = settings.log_level if "EVENTFED_LOG_LEVEL" in os.environ else "WARNING"
        configure(level, PLAIN, component)
        return
    configure(settings.log_level, settings.log_format, component)
