"""The one `eventfed` console script: a subcommand per deployable or tool.

Each subcommand lives in its own module and is imported only when chosen, so `eventfed api`
does not pay for Faust and `eventfed listen` never loads asyncio code next to oslo.messaging.
Options are declared here for the same reason; everything else comes from settings.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from bridge import __version__
from bridge.logs import configure_from_environment
from bridge.settings import SettingsError

LOG = logging.getLogger("eventfed")

# subcommand -> (module, help). The module provides `run(args: argparse.Namespace) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "listen": ("bridge.listener.service", "read Nova notifications from RabbitMQ into the raw Kafka topic"),
    "poll": ("bridge.poller.service", "read one VIM's servers from Nova's API into the raw Kafka topic"),
    "stream": ("streams.app", "normalise, keep VM state, filter per subscription, forward"),
    "api": ("bridge.api.server", "serve the VM state table and check_vim_status over HTTP"),
    "simulate": ("bridge.simulator.simulate", "publish a simulated cloud's Nova notifications to RabbitMQ"),
    "schema": ("streams.schema_and_decode", "print the VM status event schema and its fingerprint"),
    "decode": (
        "streams.schema_and_decode",
        "decode an event (Avro, Confluent, JSON) or a raw record to JSON",
    ),
    "consume": ("streams.consume", "print a Kafka topic's records, decoded, as JSON Lines"),
    "topics": ("streams.topics_command", "create eventfed's Kafka topics with the configured partitions"),
    "settings": ("bridge.settings_reference", "list every setting: commands, type, default, meaning"),
}


# The deployables: configured by settings alone, which their --help lists.
SERVICES = ("listen", "poll", "stream", "api")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventfed",
        description="OpenStack Nova VM status events to Kafka and ONAP DMaaP. "
        "Settings come from EVENTFED_* environment variables or the YAML file in EVENTFED_CONFIG_FILE.",
    )
    parser.add_argument("--version", action="version", version=f"eventfed {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        epilog = None
        if name in SERVICES:
            from bridge.settings_reference import command_help

            epilog = command_help(name)
        command = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.set_defaults(command_module=module_name)
        _ARGUMENTS.get(name, lambda _p: None)(command)
    return parser


def _whole_number_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


positive_int = _whole_number_at_least(1)
non_negative_int = _whole_number_at_least(0)


def _decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="message file ('-' = stdin)")
    parser.add_argument(
        "--format",
        choices=["auto", "avro", "confluent", "json", "ves", "raw"],
        default="auto",
        help="wire format of the message (auto detects an event's from the first bytes, and a VES "
        "event by its commonEventHeader); ves: a ves sink's record; raw: a record of the raw topic, "
        "one notification or several as JSON Lines",
    )
    parser.add_argument("--schema-registry-url", default=None, help="needed for --format confluent")


def _consume_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", help="the Kafka topic (Kafka's connection: the EVENTFED_KAFKA_* settings)")
    parser.add_argument(
        "--format",
        choices=["auto", "avro", "confluent", "json", "ves", "raw"],
        default="auto",
        help="wire format of the values (auto: a raw-topic record, a VES event or an event, by content)",
    )
    parser.add_argument("--schema-registry-url", default=None, help="needed for Confluent-framed values")
    parser.add_argument(
        "--last",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="only the last N records of each partition",
    )
    parser.add_argument("--max", type=positive_int, default=None, metavar="N", help="stop after N records")
    parser.add_argument(
        "--wait", type=float, default=5.0, metavar="SECONDS", help="stop once no record came for this long"
    )


def _simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vim",
        action="append",
        metavar="VIM_ID=TRANSPORT_URL",
        dest="vims",
        help="a simulated cloud and the RabbitMQ it publishes to (repeatable); default: two clouds on "
        "the local RabbitMQ's virtual hosts region-one and region-two",
    )
    parser.add_argument("--vms", type=positive_int, default=24, help="VMs per cloud")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="notifications/s per cloud, 0 = as fast as possible"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--format",
        choices=["mixed", "legacy", "versioned"],
        default="mixed",
        help="mixed: half the VMs' compute hosts send legacy notifications, half versioned",
    )
    parser.add_argument(
        "--stuck-deletes",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="per cloud, the first N VMs to be deleted get a delete.start and no end (a stuck action)",
    )
    parser.add_argument(
        "--end-stuck-deletes",
        action="store_true",
        help="publish only the ends that a run with the same --seed, --vms and --stuck-deletes left out",
    )
    parser.add_argument(
        "--samples",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="then N polls of Ceilometer samples of each cloud's live VMs (exchange ceilometer, "
        "telemetry.polling), as its polling agents send them",
    )
    parser.add_argument(
        "--sample-every", type=float, default=5.0, metavar="SECONDS", help="seconds between sample polls"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--durable-queues",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="declare the exchange durable, as Nova does with [oslo_messaging_rabbit] amqp_durable_queues; "
        "must match the listener's EVENTFED_DURABLE_QUEUES (default: not durable, as Nova's default)",
    )


def _topics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--partitions", type=positive_int, default=None, help="default: EVENTFED_PARTITIONS")
    parser.add_argument("--subscriptions-file", default=None, help="also create every subscription's topic")
    parser.add_argument(
        "--reset",
        action="store_true",
        help="delete the topics first (all their data is lost): for demos and tests only",
    )


def _settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--markdown", action="store_true", help="print the README's Markdown table instead of plain text"
    )


def _schema_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json-schema",
        action="store_true",
        help="print the JSON Schema of the events' JSON form (json sinks, the state topic) instead",
    )


_ARGUMENTS = {
    "schema": _schema_arguments,
    "decode": _decode_arguments,
    "consume": _consume_arguments,
    "simulate": _simulate_arguments,
    "topics": _topics_arguments,
    "settings": _settings_arguments,
}


def _load(module_name: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    # Before anything else, so that every line a command writes to stderr is a log record.
    configure_from_environment(args.command)
    module = _load(args.command_module)
    if module is None:
        LOG.error("eventfed %s: not available in this build", args.command)
        return 2
    try:
        return int(module.run(args) or 0)
    except SettingsError as exc:
        LOG.error("eventfed %s: invalid settings: %s", args.command, exc)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # The last resort: one line for the operator; the traceback only when asked for.
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        LOG.error("eventfed %s: failed: %s", args.command, detail, exc_info=LOG.isEnabledFor(logging.DEBUG))
        return 1


if __name__ == "__main__":
    sys.exit(main())
