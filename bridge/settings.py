"""Typed settings for every eventfed deployable.

Each deployable reads its settings once at start-up from environment variables prefixed
``EVENTFED_`` and, optionally, from a YAML file named by ``EVENTFED_CONFIG_FILE``; the
environment wins over the file. Each setting's ``description`` is what an operator reads: the
README's table, ``eventfed settings`` and the services' ``--help`` are made from it
(bridge.settings_reference). The models reject a bad value, or values that do not fit together,
when they are built; :func:`load` turns that into one line naming every bad setting. Secrets are
``SecretStr`` so they never show in ``repr`` or logs.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError, PydanticUndefined
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from bridge.tls import ClientTls
from bridge.tls import problems as tls_problems
from schemas.state import VIM_ID_PATTERN

ENV_PREFIX = "EVENTFED_"
CONFIG_FILE_ENV = "EVENTFED_CONFIG_FILE"
CONFIG_FILE_DESCRIPTION = (
    "a YAML file of settings (keys are the names without the prefix); the environment wins"
)
# The test suite's own variables (broker addresses), not settings of any deployable.
_TEST_ENV_PREFIX = "EVENTFED_TEST_"

LOG = logging.getLogger(__name__)


def _topic(default: str, description: str) -> Any:
    """A topic-name setting: Kafka allows 1 to 249 characters."""
    return Field(default=default, min_length=1, max_length=249, description=description)


# Whether the files the settings name are on this host. Settings that describe another host (a
# pod's environment as the Helm chart renders it, read by the chart's tests) name files that
# exist there: their contents are checked only by the process that runs with them.
_FILES_HERE: ContextVar[bool] = ContextVar("eventfed_settings_files_here", default=True)


@contextlib.contextmanager
def files_elsewhere() -> Iterator[None]:
    """Build settings whose files are on another host: every other rule is still checked."""
    token = _FILES_HERE.set(False)
    try:
        yield
    finally:
        _FILES_HERE.reset(token)


class SettingsError(Exception):
    """A setting is missing or has a bad value; the message names it."""


class _ConfigFileSource(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, reading the file EVENTFED_CONFIG_FILE names (keys are field
    names, in any case).

    The file is named at run time, so it is passed here rather than as ``yaml_file`` in
    ``model_config``. pydantic-settings skips a file that is not there and fails on one that is not
    a mapping with a bare exception; an operator who names a file means it, so both are a
    SettingsError naming the file, and a key no deployable reads is a warning with the nearest
    name, as for the environment (a typo would otherwise leave a default in force unnoticed).
    """

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        path = os.environ.get(CONFIG_FILE_ENV) or None
        if path is not None:
            file = Path(path).expanduser()
            if not file.is_file():
                reason = "not a file" if file.exists() else "no such file"
                raise SettingsError(f"{CONFIG_FILE_ENV}: cannot read {path}: {reason}")
        super().__init__(settings_cls, yaml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            data: Any = super()._read_file(file_path)
        except OSError as exc:
            raise SettingsError(f"{CONFIG_FILE_ENV}: cannot read {file_path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SettingsError(f"{CONFIG_FILE_ENV}: {file_path} is not UTF-8 text") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"{CONFIG_FILE_ENV}: {file_path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"{CONFIG_FILE_ENV}: {file_path} must hold a mapping of settings")
        # Keys as strings: YAML reads `1:` or `true:` as other types, which match no setting.
        values = {str(k): v for k, v in data.items()}
        known = set().union(*(cls.model_fields for cls in ALL_SETTINGS))
        for key in sorted({k.lower() for k in values} - known):
            nearest = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            hint = f"; did you mean {nearest[0]}?" if nearest else ""
            LOG.warning("ignoring unknown setting %s in %s%s", key, file_path, hint)
        return values


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class CommonSettings(BaseSettings):
    """Settings every deployable shares: Kafka connection, topic names, logging, metrics."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", min_length=1, description="Kafka brokers, comma-separated host:port"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how clients talk to Kafka"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512",
        description="SASL mechanism with a SASL protocol (Strimzi's KafkaUser uses SCRAM-SHA-512)",
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="SASL user, required with a SASL protocol"
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password, required with a SASL protocol"
    )
    # TLS files are PEM; with no CA the system's store is used.
    kafka_ssl_ca_location: Path | None = Field(
        default=None, description="PEM file of the CA that signed the brokers' certificates"
    )
    kafka_ssl_certificate_location: Path | None = Field(
        default=None,
        description="PEM client certificate for mutual TLS (Strimzi KafkaUser's user.crt)",
    )
    kafka_ssl_key_location: Path | None = Field(
        default=None, description="PEM private key of the client certificate (user.key)"
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="password of an encrypted client key"
    )
    kafka_client_id: str = Field(default="eventfed", description="client.id the brokers see (quotas, logs)")

    raw_topic: str = _topic(
        "eventfed.nova.raw", "the raw topic: every notification as received, the audit log the stream reads"
    )
    dlq_topic: str = _topic(
        "eventfed.dlq", "the dead-letter topic: what could not be handled, with the reason in its headers"
    )
    events_topic: str = _topic("eventfed.vm.events", "the canonical VM status events (Avro)")
    state_topic: str = _topic(
        "eventfed.vm.state", "the latest state of every VM (compacted), which the API reads"
    )
    fleet_parts_topic: str = _topic(
        "eventfed.fleet.parts",
        "the stream workers' shares of the fleet figures, keyed by VIM, merged into one fleet "
        "measurement event per VIM per interval",
    )

    # The raw topic and the stream worker's table changelogs must have the same partition count:
    # Faust co-partitions a table with the stream that updates it.
    partitions: int = Field(
        default=8,
        ge=1,
        le=10_000,
        description="partitions of the topics eventfed creates; raw topic and table changelogs must agree",
    )
    replication_factor: int = Field(
        default=1, ge=1, le=10, description="replication factor of the topics eventfed creates"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="least important log level written"
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one JSON object per line on stderr; text: plain lines"
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="address of /healthz, /readyz and /metrics (every service, the stream worker's too)",
    )
    # Off by default: a process started by hand (a tool, a test) should not take a port.
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "port of /healthz, /readyz and /metrics (every service, the stream worker's too); "
            "0 turns them off"
        ),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # One validator for the whole class tree, calling the overridable problems(): pydantic
        # stops at the first after-validator that fails, and one restart should fix every breach.
        found = self.problems()
        if found:
            raise PydanticCustomError("settings_conflict", "{problems}", {"problems": "; ".join(found)})
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: the environment over the file, so one value can be overridden
        # without editing a mounted file.
        return (init_settings, env_settings, _ConfigFileSource(settings_cls), file_secret_settings)

    def problems(self) -> list[str]:
        """Every breach of the rules across fields, and every TLS file that cannot be used."""
        problems = []
        if self.kafka_security_protocol.startswith("SASL") and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            problems.append(
                f"{ENV_PREFIX}KAFKA_SASL_USERNAME and {ENV_PREFIX}KAFKA_SASL_PASSWORD are required "
                f"when {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        tls = self.kafka_tls()
        if not self.kafka_security_protocol.endswith("SSL") and tls.has_any_file:
            problems.append(
                f"{ENV_PREFIX}KAFKA_SSL_* files are set but {ENV_PREFIX}KAFKA_SECURITY_PROTOCOL="
                f"{self.kafka_security_protocol} does not use TLS (SSL or SASL_SSL)"
            )
        problems.extend(tls_problems(tls, files_here=_FILES_HERE.get()))
        return problems

    def kafka_tls(self) -> ClientTls:
        """The Kafka clients' TLS material, with the names of its settings."""
        password = self.kafka_ssl_key_password
        return ClientTls(
            ca=self.kafka_ssl_ca_location,
            certificate=self.kafka_ssl_certificate_location,
            key=self.kafka_ssl_key_location,
            key_password=password.get_secret_value() if password is not None else None,
            names=(
                f"{ENV_PREFIX}KAFKA_SSL_CA_LOCATION",
                f"{ENV_PREFIX}KAFKA_SSL_CERTIFICATE_LOCATION",
                f"{ENV_PREFIX}KAFKA_SSL_KEY_LOCATION",
                f"{ENV_PREFIX}KAFKA_SSL_KEY_PASSWORD",
            ),
        )


class RabbitSettings(CommonSettings):
    """What a RabbitMQ client (the listener, the simulator) adds: TLS, as oslo.messaging's rabbit
    driver takes it (``[oslo_messaging_rabbit] ssl, ssl_ca_file, ssl_cert_file, ssl_key_file``)."""

    rabbit_ssl: bool = Field(default=False, description="connect to RabbitMQ over TLS (amqps)")
    rabbit_ssl_ca_file: Path | None = Field(
        default=None, description="PEM file of the CA that signed RabbitMQ's certificate"
    )
    rabbit_ssl_cert_file: Path | None = Field(
        default=None, description="PEM client certificate, when RabbitMQ asks for one"
    )
    rabbit_ssl_key_file: Path | None = Field(
        default=None,
        description="unencrypted PEM key of the client certificate (oslo takes no password)",
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        tls = self.rabbit_tls()
        if not self.rabbit_ssl and tls.has_any_file:
            problems.append(f"{ENV_PREFIX}RABBIT_SSL_* files are set but {ENV_PREFIX}RABBIT_SSL is false")
        # oslo.messaging has no key password option: an encrypted key could never be used.
        problems.extend(tls_problems(tls, allow_key_password=False, files_here=_FILES_HERE.get()))
        return problems

    def rabbit_tls(self) -> ClientTls:
        return ClientTls(
            ca=self.rabbit_ssl_ca_file,
            certificate=self.rabbit_ssl_cert_file,
            key=self.rabbit_ssl_key_file,
            names=(
                f"{ENV_PREFIX}RABBIT_SSL_CA_FILE",
                f"{ENV_PREFIX}RABBIT_SSL_CERT_FILE",
                f"{ENV_PREFIX}RABBIT_SSL_KEY_FILE",
                "(no key password)",
            ),
        )


class SimulateSettings(RabbitSettings):
    """`eventfed simulate`: the clouds and their RabbitMQ come from --vim; TLS from settings."""


# The settings the listener and the poller share, as they serve VIMs and write the raw topic
# the same way. Each is defined once so that both commands read it alike and the settings
# reference shows it as one setting of both.


def _vim_id(*, required: bool = False) -> Any:
    return Field(
        PydanticUndefined if required else None,
        pattern=VIM_ID_PATTERN,
        max_length=200,
        description=(
            "the VIM (cloud) served, as ONAP names it (cloud-owner_region); required without VIMS_FILE"
        ),
    )


def _vims_file() -> Any:
    return Field(
        default=None,
        description=(
            "a YAML file of the VIMs this process serves, one entry each (bridge.vims); reloaded when it "
            "changes. Unset: the one VIM of VIM_ID and its settings"
        ),
    )


def _vims_reload_seconds() -> Any:
    return Field(
        default=10.0,
        gt=0,
        le=3600,
        description="how often the VIMs file (and the secret files it names) is checked for changes",
    )


def _vims_inflight_bytes() -> Any:
    # A VIM that floods, or a Kafka that stalls, must not take the memory the other VIMs need.
    return Field(
        default=64 * 1024 * 1024,
        ge=1024 * 1024,
        description=(
            "with VIMS_FILE: bytes written to Kafka and not yet acknowledged, across the process's VIMs; "
            "each VIM may hold an equal share"
        ),
    )


def _max_message_bytes() -> Any:
    # Kafka's default max.message.bytes is about 1 MiB: a bigger record would be refused.
    return Field(
        default=1_000_000, ge=1024, description="largest raw record; bigger notifications are dead-lettered"
    )


def _pack_max() -> Any:
    # The stream stage's cost is largely per record, so notifications travel packed.
    return Field(
        default=500,
        ge=1,
        le=100_000,
        description="notifications packed in one raw record (same partition, JSON Lines); 1 = one each",
    )


def _retry_backoff_initial(description: str) -> Any:
    return Field(default=0.5, gt=0, le=60, description=description)


def _retry_backoff_max(description: str) -> Any:
    return Field(default=30.0, gt=0, le=3600, description=description)


def _raw_delivery_timeout() -> Any:
    return Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds librdkafka tries to deliver a raw record before it counts as failed",
    )


def _one_vim_or_file(settings: Any, required: tuple[str, ...]) -> list[str]:
    """A process serves the VIMs of VIMS_FILE, or the one its environment names in full."""
    if settings.vims_file is not None:
        if _FILES_HERE.get() and not settings.vims_file.is_file():
            return [f"{ENV_PREFIX}VIMS_FILE: no such file {settings.vims_file}"]
        return []
    return [
        f"{ENV_PREFIX}{name.upper()} is required (or {ENV_PREFIX}VIMS_FILE, a file of VIMs)"
        for name in required
        if getattr(settings, name) is None
    ]


class ListenerSettings(RabbitSettings):
    """`eventfed listen`: RabbitMQ (oslo.messaging) to the raw Kafka topic, for the one VIM the
    environment names (VIM_ID, TRANSPORT_URL) or for every VIM of VIMS_FILE (bridge.vims)."""

    transport_url: SecretStr | None = Field(
        default=None,
        description=(
            "the cloud's RabbitMQ, as oslo.messaging's transport URL (rabbit://user:pass@host:port/vhost); "
            "required without VIMS_FILE"
        ),
    )
    vim_id: str | None = _vim_id()
    vims_file: Path | None = _vims_file()
    vims_reload_seconds: float = _vims_reload_seconds()
    vims_inflight_bytes: int = _vims_inflight_bytes()
    exchange: str = Field(
        default="nova", min_length=1, description="the exchange Nova publishes notifications on"
    )
    topics: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["notifications", "versioned_notifications"],
        min_length=1,
        description="oslo.messaging notification topics, comma-separated",
    )
    pool: str = Field(
        default="eventfed",
        min_length=1,
        description="listener pool: its own queue on the exchange, shared by this VIM's listener replicas",
    )
    # RabbitMQ refuses to declare an exchange or queue again with the other durability
    # (bridge.durability), so this must be what Nova's amqp_durable_queues is. The default is
    # oslo's, and so a default Nova's: a listener that declared the exchange first as durable
    # would make a default Nova drop its notifications.
    durable_queues: bool = Field(
        default=False,
        description="durable exchange and pool queue (survive a RabbitMQ restart); must match Nova's",
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="notifications per batch written to Kafka and acked to RabbitMQ",
    )
    # The window is the latency a quiet cloud's notifications pay. An idle listener waits for a
    # first notification without polling (bridge.listener.oslo_internals), so a short window
    # costs nothing while nothing comes.
    batch_timeout: float = Field(
        default=0.002,
        gt=0,
        le=60,
        description="seconds a batch waits for more after its first notification",
    )
    # Under load the window grows (bridge.listener.window): bigger batches make bigger packs, and
    # both the listener's and the stream worker's costs are largely per Kafka record and per
    # batch, so a busy cloud trades a few milliseconds of latency for a large share of the CPU.
    # Reaching the ceiling only at batch_busy_rate keeps the window, and so the latency, small at
    # moderate rates. bench/results holds the measurements behind both defaults.
    batch_timeout_max: float = Field(
        default=0.05,
        gt=0,
        le=60,
        description="the batch window grows with the load up to this (equal to BATCH_TIMEOUT: fixed)",
    )
    batch_busy_rate: float = Field(
        default=2000.0,
        gt=0,
        description="notifications/s at which the batch window reaches BATCH_TIMEOUT_MAX",
    )
    # At a quiet cloud's rates a batch holds one notification and pays a batch's fixed costs
    # alone (a confirmed Kafka write and an ack here, a fetch and a batch in the stream worker).
    # Where the next notification is due within this wait, a batch waits for about two more:
    # at 100/s 20 ms, at 300/s 7 ms; below 1/wait per second nothing is due in time and the window
    # stays BATCH_TIMEOUT. Off by default: with the stream worker's fetch wait, 20 ms here took the
    # p99 at 100/s past 50 ms for about a tenth of the listener's CPU (bench/results/ab.md); a
    # deployment with latency to spare sets it.
    batch_company_wait: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "seconds a batch may wait for company at rates where more notifications are due within "
            "it (added latency at most this; 0.02 saves about a tenth of the listener's CPU at 100/s); "
            "0: the window is BATCH_TIMEOUT up to a fifth of BATCH_BUSY_RATE"
        ),
    )
    max_message_bytes: int = _max_message_bytes()
    pack_max: int = _pack_max()
    retry_backoff_initial: float = _retry_backoff_initial(
        "first wait, in seconds, before writing to Kafka or connecting to RabbitMQ again after a failure"
    )
    retry_backoff_max: float = _retry_backoff_max(
        "longest wait, in seconds, between attempts to write to Kafka or to connect to RabbitMQ"
    )
    delivery_timeout: float = _raw_delivery_timeout()
    hold_max_seconds: float = Field(
        default=900.0,
        gt=0,
        le=86_400,
        description="seconds a batch Kafka refuses is held unacked before it goes back to RabbitMQ",
    )

    # Ceilometer's samples travel on its own control exchange, beside Nova's: the polling agents
    # hand theirs to the notification agent on `notifications.sample` (event_type
    # telemetry.polling) and its notifier:// publisher puts every sample on `metering.sample`
    # (event_type metering), so taking both sees a polled sample twice (the stream worker keeps
    # one per sample message_id). Off unless topics are given.
    sample_exchange: str = Field(
        default="ceilometer",
        min_length=1,
        description="the exchange Ceilometer publishes its samples on (its control_exchange)",
    )
    sample_topics: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Ceilometer sample topics to take, comma-separated: metering (the notification agent's "
            "notifier:// publisher) and/or notifications (the polling agents); empty: no samples"
        ),
    )

    _split_topics = field_validator("topics", mode="before")(_split_csv)
    _split_sample_topics = field_validator("sample_topics", mode="before")(_split_csv)

    def problems(self) -> list[str]:
        problems = super().problems()
        problems.extend(_one_vim_or_file(self, ("transport_url", "vim_id")))
        return problems


class _OneVimSettings(CommonSettings):
    """Base of one VIM's settings (bridge.vims), whatever the command: the VIM is required."""

    vim_id: str = _vim_id(required=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Built from the process's settings and the VIM's entry, already read: never again from
        # the environment or the settings file.
        return (init_settings,)


class VimListenerSettings(_OneVimSettings, ListenerSettings):
    """One VIM's listener: the process's settings with that VIM's own (bridge.vims), or the
    environment's single VIM."""

    transport_url: SecretStr = Field(description="the VIM's RabbitMQ, as oslo.messaging's transport URL")


class StreamSettings(CommonSettings):
    """`eventfed stream`: the Faust worker."""

    app_id: str = Field(
        default="eventfed-stream",
        min_length=1,
        description="the worker's consumer group and table names: one per deployment",
    )
    subscriptions_file: Path | None = Field(
        default=None, description="the subscriptions YAML; reloaded when it changes"
    )
    subscriptions_reload_seconds: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="how often the subscriptions file is checked for changes",
    )
    dedup_window_seconds: float = Field(
        default=600.0,
        ge=0,
        description="how long a message id is remembered to drop its duplicates",
    )
    tombstone_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="how long a deleted VM's state is kept before it is removed",
    )
    data_dir: Path = Field(default=Path("/tmp/eventfed-stream"), description="the worker's local table store")
    web_host: str = Field(
        default="127.0.0.1",
        description="address of Faust's own web server (its table routing); not the health endpoints",
    )
    web_port: int = Field(
        default=6066,
        ge=1,
        le=65535,
        description=(
            "port of Faust's own web server; the worker's /healthz, /readyz and /metrics are on METRICS_PORT"
        ),
    )
    # With a registry, Avro records are in the Confluent wire format and the schema is registered
    # under `<topic>-value` for each Avro topic (streams.registration).
    schema_registry_url: str | None = Field(
        default=None,
        pattern=r"^(https?|mock)://\S+$",
        description="a Confluent-compatible Schema Registry; unset: Avro single-object encoding",
    )
    schema_registry_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="seconds the worker tries to register its schemas at start before it exits",
    )
    # Kafka starting after the worker is routine in a cluster, so start-up waits for it.
    kafka_start_timeout: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description=(
            "seconds the worker retries creating its topics at start while Kafka does not answer, "
            "not ready meanwhile, before it exits"
        ),
    )
    batch_size: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="raw records per batch (a packed record carries up to PACK_MAX notifications)",
    )
    # A batch's writes are two round trips to Kafka (outputs, then state). With 2 the next batch
    # is decided while the previous one is written, which hides one batch's decision time in the
    # other's writes and so shortens the tail latency at no extra CPU, while the writes stay one
    # batch after the other, in order. 1 decides a batch only once the one before it is written.
    max_batches_in_flight: int = Field(
        default=2,
        ge=1,
        le=64,
        description="batches decided while earlier ones are still being written",
    )
    # A batch opens with its first record and closes batch_timeout later or at batch_size
    # (streams.batching): the timeout is the latency a quiet cloud's events pay, and nothing
    # waits on a timer while nothing comes.
    # The records of one fetch reach the stream together, within a millisecond; the fetch wait
    # below is what gathers a quiet cloud's records, so waiting here longer only adds latency.
    batch_timeout: float = Field(
        default=0.002, gt=0, le=60, description="seconds a batch waits for company after its first record"
    )
    # At a quiet cloud's rates each fetch would otherwise bring the one record that just came,
    # and every fetch costs the worker and the broker about as much as the record itself. After a
    # fetch that brought records the worker waits this long before the next, so the records that
    # came meanwhile arrive together: at most this much later, the first after a quiet spell at
    # once. An idle worker's fetch waits at the broker as before, and a burst pays it once.
    # 30 ms against 20: at 100/s a quarter less worker CPU for about 6 ms more at p50, within the
    # 50 ms p99 budget now that a batch waits 2 ms, not 10 (bench/results/ab.md).
    fetch_wait_ms: int = Field(
        default=30,
        ge=0,
        le=500,
        description=(
            "milliseconds the worker waits after a fetch that brought records before it fetches again, so "
            "a quiet cloud's records come a few per fetch (added latency at most this); 0: no wait"
        ),
    )
    # A refused output is retried by the worker, not lost.
    delivery_timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds librdkafka tries to deliver an output before it is retried",
    )
    # Kafka's default group.min.session.timeout.ms is 6 s: a shorter session is refused.
    session_timeout_seconds: float = Field(
        default=10.0,
        ge=6,
        le=300,
        description="how soon a silently dead worker's partitions move to the others",
    )
    # The defaults are streams.stuck's; a YAML file may give a mapping instead of the string.
    stuck_after: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: _stuck_defaults(),
        description=(
            "per status kind, how long an action may go without its end before it is stuck, e.g. "
            "`DELETE=5m,SNAPSHOT=2h,default=30m` (0 or off: no timer); kinds not named keep theirs: 10m for "
            "a delete, reboot or power action, 1h for a snapshot, resize, live migration or shelve, 30m else"
        ),
    )

    # ONAP's measurement feeds are usually at 300 s; every worker of a deployment must agree, since
    # an interval's samples are kept in the state that moves between them.
    measurement_interval_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description=(
            "length of a measurement interval (ves-measurement feeds), aligned to the clock: "
            "intervals start at multiples of it since the epoch"
        ),
    )
    measurement_grace_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description=(
            "how long after its end an interval still takes late samples before it is emitted; the "
            "fleet event of a VIM waits as long again for the share of a raw partition missing"
        ),
    )
    measurement_check_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="how often the worker looks for measurement intervals to emit",
    )

    @field_validator("stuck_after", mode="before")
    @classmethod
    def _parse_stuck_after(cls, value: Any) -> Any:
        # Imported here: the kinds are the stream's catalogue, which no other command loads.
        from schemas.action_times import parse_stuck_after

        return parse_stuck_after(value)

    @property
    def stuck_check_seconds(self) -> float:
        """How often the worker looks for stuck actions: a tenth of the shortest time, 1-30 s."""
        shortest = min((s for s in self.stuck_after.values() if s > 0), default=300.0)
        return max(1.0, min(30.0, shortest / 10))


def _stuck_defaults() -> dict[str, float]:
    from schemas.action_times import DEFAULT_STUCK_AFTER

    return dict(DEFAULT_STUCK_AFTER)


class ApiSettings(CommonSettings):
    """`eventfed api`: the state table and check_vim_status over HTTP."""

    api_host: str = Field(default="127.0.0.1", description="address the API listens on")
    api_port: int = Field(default=8080, ge=1, le=65535, description="port the API listens on")
    api_threads: int = Field(default=8, ge=1, le=256, description="request threads")
    api_auth_token: SecretStr | None = Field(
        default=None, description="bearer token the API requires; unset: no token"
    )
    api_basic_user: str | None = Field(
        default=None, description="HTTP basic user the API requires, with API_BASIC_PASSWORD"
    )
    api_basic_password: SecretStr | None = Field(default=None, description="HTTP basic password")
    api_max_body_bytes: int = Field(
        default=65_536, ge=256, description="largest request body; bigger ones get 413"
    )
    api_page_limit_max: int = Field(default=1000, ge=1, description="largest page a client may ask for")


class PollerSettings(CommonSettings):
    """`eventfed poll`: Nova's servers API to the raw Kafka topic, for the one VIM the environment
    names or for the VIMs of VIMS_FILE in poll mode (bridge.vims).

    Auth is a Keystone v3 password session (`os_auth_url` and the `os_*` names) or, for a Nova
    served without Keystone, a fixed `nova_endpoint` and `nova_token`.
    """

    vim_id: str | None = _vim_id()
    vims_file: Path | None = _vims_file()
    vims_reload_seconds: float = _vims_reload_seconds()
    vims_inflight_bytes: int = _vims_inflight_bytes()
    nova_auth: Literal["keystone", "token"] = Field(
        default="keystone",
        description="keystone: a Keystone v3 password session (OS_*); token: NOVA_ENDPOINT with NOVA_TOKEN",
    )
    nova_endpoint: str | None = Field(
        default=None, description="with NOVA_AUTH=token, Nova's compute endpoint (.../v2.1)"
    )
    nova_token: SecretStr | None = Field(
        default=None, description="with NOVA_AUTH=token, the X-Auth-Token sent to it"
    )
    os_auth_url: str | None = Field(default=None, description="Keystone v3 URL")
    # all_tenants: the poller lists every project's servers, as Nova's notifications cover them.
    os_username: str | None = Field(
        default=None, description="Keystone user, who must see every project's servers (all_tenants)"
    )
    os_password: SecretStr | None = Field(default=None, description="Keystone password")
    os_project_name: str | None = Field(default=None, description="Keystone project to scope to")
    os_user_domain_name: str = Field(default="Default", description="the user's Keystone domain")
    os_project_domain_name: str = Field(default="Default", description="the project's Keystone domain")
    os_region_name: str | None = Field(
        default=None, description="region of the compute endpoint in the catalogue"
    )
    os_interface: Literal["public", "internal", "admin"] = Field(
        default="public", description="which catalogue endpoint of Nova to use"
    )
    os_cacert: Path | None = Field(default=None, description="PEM CA bundle for Keystone and Nova over HTTPS")
    nova_api_version: str = Field(
        default="2.1", pattern=r"^2\.([0-9]+|latest)$", description="compute API microversion asked for"
    )
    poll_interval: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="seconds between the starts of two polling cycles",
    )
    # The overlap covers clock skew between Nova's hosts and transactions that commit late;
    # re-read servers have the same message id and are dropped as duplicates.
    poll_overlap_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="each cycle re-reads this far back (clock skew, late commits); re-reads dropped",
    )
    poll_lookback_seconds: float = Field(
        default=3600.0,
        ge=0,
        le=90 * 86_400,
        description="with no checkpoint (a VIM's first start), deletions this far back are read too",
    )
    # Nova caps a page with its own [api] max_limit, 1000 by default.
    poll_page_size: int = Field(default=1000, ge=1, le=10_000, description="servers per API page")
    poll_checkpoint_topic: str = _topic(
        "eventfed.poll.checkpoints", "compacted topic keeping each VIM's high-water mark"
    )
    poll_request_timeout: float = Field(
        default=30.0, gt=0, le=600, description="seconds one API request may take"
    )
    max_message_bytes: int = _max_message_bytes()
    # Snapshots are packed into raw records as the listener packs notifications.
    pack_max: int = _pack_max()
    retry_backoff_initial: float = _retry_backoff_initial(
        "first wait, in seconds, before writing to Kafka again after a failure"
    )
    retry_backoff_max: float = _retry_backoff_max("longest wait, in seconds, between write attempts")
    delivery_timeout: float = _raw_delivery_timeout()

    def problems(self) -> list[str]:
        problems = super().problems()
        problems.extend(_one_vim_or_file(self, ("vim_id",)))
        if self.vims_file is not None:
            # Each VIM's Nova is its entry's (bridge.vims); the environment's is not used.
            return problems
        if self.nova_auth == "token":
            if not self.nova_endpoint or self.nova_token is None:
                problems.append(
                    f"{ENV_PREFIX}NOVA_ENDPOINT and {ENV_PREFIX}NOVA_TOKEN are required when "
                    f"{ENV_PREFIX}NOVA_AUTH=token"
                )
        else:
            missing = [
                f"{ENV_PREFIX}{name.upper()}"
                for name in ("os_auth_url", "os_username", "os_password", "os_project_name")
                if getattr(self, name) is None
            ]
            if missing:
                problems.append(f"{', '.join(missing)} required when {ENV_PREFIX}NOVA_AUTH=keystone")
        if self.os_cacert is not None and _FILES_HERE.get() and not self.os_cacert.is_file():
            problems.append(f"{ENV_PREFIX}OS_CACERT: no such file {self.os_cacert}")
        return problems


class VimPollerSettings(_OneVimSettings, PollerSettings):
    """One VIM's poller: the process's settings with that VIM's own (bridge.vims), or the
    environment's single VIM."""


SettingsT = TypeVar("SettingsT", bound=CommonSettings)

ALL_SETTINGS: tuple[type[CommonSettings], ...] = (
    ListenerSettings,
    StreamSettings,
    ApiSettings,
    SimulateSettings,
    PollerSettings,
)


def env_names(settings_cls: type[CommonSettings]) -> set[str]:
    """Every environment variable a settings class reads."""
    return {ENV_PREFIX + name.upper() for name in settings_cls.model_fields} | {CONFIG_FILE_ENV}


def _describe_one(error: ErrorDetails) -> str:
    message = error["msg"]
    if not error["loc"]:
        # A rule across fields (CommonSettings.problems): its message names the settings.
        return message
    field = str(error["loc"][0])
    if error["type"] == "missing":
        message = "is required"
    elif error["type"] == "string_pattern_mismatch":
        message = f"does not match {error.get('ctx', {}).get('pattern', '')}"
    return f"{ENV_PREFIX}{field.upper()} {message}"


def _describe(error: ValidationError) -> str:
    """Every bad setting, so that one restart fixes them all; the input is never shown."""
    return "; ".join(_describe_one(detail) for detail in error.errors())


def unknown_env_names(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """EVENTFED_* variables no deployable reads, each with the nearest valid name (or None).

    Every class's names count as known: one ConfigMap commonly serves several deployables.
    """
    env = os.environ if environ is None else environ
    known = set().union(*(env_names(cls) for cls in ALL_SETTINGS))
    unknown = sorted(
        name
        for name in (n.upper() for n in env)
        if name.startswith(ENV_PREFIX) and name not in known and not name.startswith(_TEST_ENV_PREFIX)
    )
    # Compared without the prefix, which every name shares and would make anything look close.
    suffixes = {name.removeprefix(ENV_PREFIX): name for name in known}
    nearest = {
        name: difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1, cutoff=0.75)
        for name in unknown
    }
    return {name: suffixes[match[0]] if match else None for name, match in nearest.items()}


def warn_unknown_env_names(environ: Mapping[str, str] | None = None) -> None:
    for name, nearest in unknown_env_names(environ).items():
        hint = f"; did you mean {nearest}?" if nearest else ""
        LOG.warning("ignoring unknown environment variable %s%s", name, hint)


def load(settings_cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build and validate settings; raise SettingsError with one line naming every bad setting."""
    warn_unknown_env_names()
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def redact_url(url: str) -> str:
    """Hide the password of a transport URL for logging."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
