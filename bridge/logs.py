"""Logging set-up shared by every deployable: JSON lines on stdout (or plain text for humans)."""

from __future__ import annotations

import logging
import sys
import warnings

from pythonjsonlogger.json import JsonFormatter

from bridge.settings import CommonSettings

# Libraries that are chatty at INFO about things an operator cannot act on.
_QUIET_LOGGERS = ("aiokafka", "faust", "mode", "kafka", "oslo_messaging._drivers", "amqp", "kombu")


def setup_logging(settings: CommonSettings, component: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"component": component},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    # oslo.messaging imports eventlet, which warns on import; it is not used (threading executor).
    warnings.filterwarnings("ignore", message=".*[Ee]ventlet.*")
