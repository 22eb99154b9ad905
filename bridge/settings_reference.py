"""The reference of every setting: name, commands, type, default and meaning.

`eventfed settings` prints it and the README's settings table is this output, which a unit test
holds to the settings classes, so a setting cannot be added without being documented.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bridge import settings

# The command each settings class configures; CommonSettings' fields are read by all of them.
COMMANDS: dict[type[settings.CommonSettings], str] = {
    settings.ListenerSettings: "listen",
    settings.StreamSettings: "stream",
    settings.ApiSettings: "api",
    settings.SimulateSettings: "simulate",
    settings.PollerSettings: "poll",
}

# What each setting does, for an operator. A name whose meaning differs per command is keyed
# "command:name".
DESCRIPTIONS: dict[str, str] = {
    "kafka_bootstrap_servers": "Kafka brokers, comma-separated host:port",
    "kafka_security_protocol": "how clients talk to Kafka",
    "kafka_sasl_mechanism": "SASL mechanism with a SASL protocol (Strimzi's KafkaUser uses SCRAM-SHA-512)",
    "kafka_sasl_username": "SASL user, required with a SASL protocol",
    "kafka_sasl_password": "SASL password, required with a SASL protocol",
    "kafka_ssl_ca_location": "PEM file of the CA that signed the brokers' certificates",
    "kafka_ssl_certificate_location": "PEM client certificate for mutual TLS (Strimzi KafkaUser's user.crt)",
    "kafka_ssl_key_location": "PEM private key of the client certificate (user.key)",
    "kafka_ssl_key_password": "password of an encrypted client key",
    "rabbit_ssl": "connect to RabbitMQ over TLS (amqps)",
    "rabbit_ssl_ca_file": "PEM file of the CA that signed RabbitMQ's certificate",
    "rabbit_ssl_cert_file": "PEM client certificate, when RabbitMQ asks for one",
    "rabbit_ssl_key_file": "unencrypted PEM key of the client certificate (oslo takes no password)",
    "kafka_client_id": "client.id the brokers see (quotas, logs)",
    "raw_topic": "the raw topic: every notification as received, the audit log the stream reads",
    "dlq_topic": "the dead-letter topic: what could not be handled, with the reason in its headers",
    "events_topic": "the canonical VM status events (Avro)",
    "state_topic": "the latest state of every VM (compacted), which the API reads",
    "partitions": "partitions of the topics eventfed creates; raw topic and table changelogs must agree",
    "replication_factor": "replication factor of the topics eventfed creates",
    "log_level": "least important log level written",
    "log_format": "json: one JSON object per line on stderr; text: plain lines",
    "metrics_host": "address of /healthz, /readyz and /metrics (every service, the stream worker's too)",
    "metrics_port": (
        "port of /healthz, /readyz and /metrics (every service, the stream worker's too); 0 turns them off"
    ),
    "transport_url": "the cloud's RabbitMQ, as oslo.messaging's transport URL (rabbit://user:pass@host:port/vhost)",
    "vim_id": "the VIM (cloud) served, as ONAP names it (cloud-owner_region)",
    "exchange": "the exchange Nova publishes notifications on",
    "topics": "oslo.messaging notification topics, comma-separated",
    "pool": "listener pool: its own queue on the exchange, shared by this VIM's listener replicas",
    "durable_queues": "durable exchange and pool queue (survive a RabbitMQ restart); must match Nova's",
    "listen:batch_size": "notifications per batch written to Kafka and acked to RabbitMQ",
    "listen:batch_timeout": "seconds a batch waits for more after its first notification",
    "batch_timeout_max": "the batch window grows with the load up to this (equal to BATCH_TIMEOUT: fixed)",
    "batch_busy_rate": "notifications/s at which the batch window reaches BATCH_TIMEOUT_MAX",
    "max_message_bytes": "largest raw record; bigger notifications are dead-lettered",
    "pack_max": "notifications packed in one raw record (same partition, JSON Lines); 1 = one each",
    "retry_backoff_initial": "first wait, in seconds, before writing to Kafka again after a failure",
    "retry_backoff_max": "longest wait, in seconds, between write attempts",
    "listen:retry_backoff_initial": (
        "first wait, in seconds, before writing to Kafka or connecting to RabbitMQ again after a failure"
    ),
    "listen:retry_backoff_max": (
        "longest wait, in seconds, between attempts to write to Kafka or to connect to RabbitMQ"
    ),
    "listen:delivery_timeout": "seconds librdkafka tries to deliver a raw record before it counts as failed",
    "hold_max_seconds": "seconds a batch Kafka refuses is held unacked before it goes back to RabbitMQ",
    "nova_auth": "keystone: a Keystone v3 password session (OS_*); token: NOVA_ENDPOINT with NOVA_TOKEN",
    "nova_endpoint": "with NOVA_AUTH=token, Nova's compute endpoint (.../v2.1)",
    "nova_token": "with NOVA_AUTH=token, the X-Auth-Token sent to it",
    "os_auth_url": "Keystone v3 URL",
    "os_username": "Keystone user, who must see every project's servers (all_tenants)",
    "os_password": "Keystone password",
    "os_project_name": "Keystone project to scope to",
    "os_user_domain_name": "the user's Keystone domain",
    "os_project_domain_name": "the project's Keystone domain",
    "os_region_name": "region of the compute endpoint in the catalogue",
    "os_interface": "which catalogue endpoint of Nova to use",
    "os_cacert": "PEM CA bundle for Keystone and Nova over HTTPS",
    "nova_api_version": "compute API microversion asked for",
    "poll_interval": "seconds between the starts of two polling cycles",
    "poll_overlap_seconds": "each cycle re-reads this far back (clock skew, late commits); re-reads dropped",
    "poll_lookback_seconds": "with no checkpoint (a VIM's first start), deletions this far back are read too",
    "poll_page_size": "servers per API page",
    "poll_checkpoint_topic": "compacted topic keeping each VIM's high-water mark",
    "poll_request_timeout": "seconds one API request may take",
    "poll:delivery_timeout": "seconds librdkafka tries to deliver a raw record before it counts as failed",
    "app_id": "the worker's consumer group and table names: one per deployment",
    "subscriptions_file": "the subscriptions YAML; reloaded when it changes",
    "subscriptions_reload_seconds": "how often the subscriptions file is checked for changes",
    "dedup_window_seconds": "how long a message id is remembered to drop its duplicates",
    "tombstone_seconds": "how long a deleted VM's state is kept before it is removed",
    "data_dir": "the worker's local table store",
    "web_host": "address of Faust's own web server (its table routing); not the health endpoints",
    "web_port": (
        "port of Faust's own web server; the worker's /healthz, /readyz and /metrics are on METRICS_PORT"
    ),
    "schema_registry_timeout": "seconds the worker tries to register its schemas at start before it exits",
    "kafka_start_timeout": (
        "seconds the worker retries creating its topics at start while Kafka does not answer, "
        "not ready meanwhile, before it exits"
    ),
    "stuck_after": (
        "per status kind, how long an action may go without its end before it is stuck, e.g. "
        "`DELETE=5m,SNAPSHOT=2h,default=30m` (0 or off: no timer); kinds not named keep theirs: 10m for "
        "a delete, reboot or power action, 1h for a snapshot, resize, live migration or shelve, 30m else"
    ),
    "schema_registry_url": "a Confluent-compatible Schema Registry; unset: Avro single-object encoding",
    "stream:batch_size": "raw records per batch (a packed record carries up to PACK_MAX notifications)",
    "max_batches_in_flight": "batches decided while earlier ones are still being written",
    "stream:batch_timeout": "seconds a batch waits to fill",
    "stream:delivery_timeout": "seconds librdkafka tries to deliver an output before it is retried",
    "session_timeout_seconds": "how soon a silently dead worker's partitions move to the others",
    "api_host": "address the API listens on",
    "api_port": "port the API listens on",
    "api_threads": "request threads",
    "api_auth_token": "bearer token the API requires; unset: no token",
    "api_basic_user": "HTTP basic user the API requires, with API_BASIC_PASSWORD",
    "api_basic_password": "HTTP basic password",
    "api_max_body_bytes": "largest request body; bigger ones get 413",
    "api_page_limit_max": "largest page a client may ask for",
}


@dataclass(frozen=True)
class SettingRow:
    env_name: str
    commands: str
    type: str
    default: str
    description: str


def describe_type(annotation: Any) -> str:
    """A setting's type as an operator writes it."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type(arguments[0])
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in arguments if a is not type(None)]
        return " or ".join(describe_type(a) for a in kept)
    if origin is Literal:
        return " | ".join(str(a) for a in arguments)
    if origin is list:
        return "list (comma-separated)"
    if origin is dict:
        return "KEY=VALUE list (comma-separated)"
    if annotation is SecretStr:
        return "secret"
    if annotation is Path:
        return "path"
    return {bool: "bool", int: "int", float: "float", str: "string"}.get(annotation, str(annotation))


def describe_default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return "see meaning"
    return str(value)


def _fields() -> Iterator[tuple[str, str, FieldInfo]]:
    """(command, name, field) for each setting, CommonSettings' once as command "all"."""
    common = settings.CommonSettings.model_fields
    for name, field in common.items():
        yield "all", name, field
    for cls in settings.ALL_SETTINGS:
        command = COMMANDS[cls]
        for name, field in cls.model_fields.items():
            if name not in common:
                yield command, name, field


def unused_descriptions() -> set[str]:
    """Descriptions of settings that no longer exist."""
    used = set()
    for command, name, _field in _fields():
        used.add(f"{command}:{name}" if f"{command}:{name}" in DESCRIPTIONS else name)
    return set(DESCRIPTIONS) - used


def rows() -> list[SettingRow]:
    merged: dict[tuple[str, str, str, str], list[str]] = {}
    for command, name, field in _fields():
        description = DESCRIPTIONS.get(f"{command}:{name}") or DESCRIPTIONS.get(name)
        if description is None:
            raise KeyError(f"setting {name} ({command}) has no description in bridge/settings_reference.py")
        key = (name, describe_type(field.annotation), describe_default(field), description)
        merged.setdefault(key, []).append(command)
    return [
        SettingRow(settings.ENV_PREFIX + name.upper(), ", ".join(commands), kind, default, description)
        for (name, kind, default, description), commands in merged.items()
    ]


CONFIG_FILE_ROW = SettingRow(
    settings.CONFIG_FILE_ENV,
    "all",
    "path",
    "-",
    "a YAML file of settings (keys are the names without the prefix); the environment wins",
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The README's table (`eventfed settings --markdown`)."""
    lines = [
        "| setting | used by | type | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for row in [CONFIG_FILE_ROW, *rows()]:
        default = f"`{row.default}`" if row.default not in ("-", "required") else row.default
        lines.append(
            f"| `{row.env_name}` | {row.commands} | {_cell(row.type)} | {_cell(default)} | "
            f"{_cell(row.description)} |"
        )
    return "\n".join(lines) + "\n"


def _plain_row(row: SettingRow, with_commands: bool) -> str:
    facts = [row.commands] if with_commands else []
    facts.append(row.type)
    facts.append(row.default if row.default == "required" else f"default {row.default}")
    return f"{row.env_name} ({'; '.join(facts)})\n    {row.description}"


def plain_text() -> str:
    """Every setting for a person at a terminal: name, commands, type and default, then what it does."""
    return "\n".join(_plain_row(row, True) for row in [CONFIG_FILE_ROW, *rows()]) + "\n"


def command_help(command: str) -> str:
    """The settings one command reads, for its --help."""
    used = [row for row in rows() if row.commands == "all" or command in row.commands.split(", ")]
    lines = [
        "settings (environment variables, or the same names in lower case without EVENTFED_ in the "
        f"YAML file of {settings.CONFIG_FILE_ENV}; `eventfed settings` lists them all):",
    ]
    lines += ["  " + _plain_row(row, False).replace("\n    ", "\n      ") for row in [CONFIG_FILE_ROW, *used]]
    return "\n".join(lines)


def run(args: Any) -> int:
    print(markdown() if getattr(args, "markdown", False) else plain_text(), end="")
    return 0
