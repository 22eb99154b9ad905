"""Typed settings for every eventfed deployable.

Each deployable reads its settings once at start-up from environment variables prefixed
``EVENTFED_`` and, optionally, from a YAML file named by ``EVENTFED_CONFIG_FILE``; the
environment wins over the file. A bad value stops the program with one line naming the setting
(see :func:`load`). Secrets are ``SecretStr`` so they never show in ``repr`` or logs.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from bridge.tls import ClientTls
from bridge.tls import problems as tls_problems
from schemas.state import VIM_ID_PATTERN

ENV_PREFIX = "EVENTFED_"
CONFIG_FILE_ENV = "EVENTFED_CONFIG_FILE"
# The test suite's own variables (broker addresses), not settings of any deployable.
_TEST_ENV_PREFIX = "EVENTFED_TEST_"

LOG = logging.getLogger(__name__)

# ONAP names a VIM "{cloud-owner}_{cloud-region-id}"; '/' would break state-topic keys and URLs.


class SettingsError(Exception):
    """A setting is missing or has a bad value; the message names it."""


class _YamlFileSource(PydanticBaseSettingsSource):
    """Values from the YAML file named by EVENTFED_CONFIG_FILE (keys are field names)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = self._read()

    @staticmethod
    def _read() -> dict[str, Any]:
        path = os.environ.get(CONFIG_FILE_ENV)
        if not path:
            return {}
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle) or {}
        except OSError as exc:
            raise SettingsError(f"{CONFIG_FILE_ENV}: cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"{CONFIG_FILE_ENV}: {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"{CONFIG_FILE_ENV}: {path} must hold a mapping of settings")
        values = {str(k).lower(): v for k, v in data.items()}
        known = set().union(*(cls.model_fields for cls in ALL_SETTINGS))
        for key in sorted(set(values) - known):
            nearest = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            hint = f"; did you mean {nearest[0]}?" if nearest else ""
            LOG.warning("ignoring unknown setting %s in %s%s", key, path, hint)
        return values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        return {k: v for k, v in self._data.items() if k in fields}


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

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # TLS (security protocol SSL or SASL_SSL), PEM files: the CA that signed the brokers'
    # certificates (default: the system's), and for mutual TLS the client certificate and its key.
    kafka_ssl_ca_location: Path | None = None
    kafka_ssl_certificate_location: Path | None = None
    kafka_ssl_key_location: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_client_id: str = "eventfed"

    raw_topic: str = Field(default="eventfed.nova.raw", min_length=1, max_length=249)
    dlq_topic: str = Field(default="eventfed.dlq", min_length=1, max_length=249)
    events_topic: str = Field(default="eventfed.vm.events", min_length=1, max_length=249)
    state_topic: str = Field(default="eventfed.vm.state", min_length=1, max_length=249)

    # Partition count for the topics eventfed creates; the raw topic and the stream worker's
    # table changelogs must have the same count (Faust co-partitioning).
    partitions: int = Field(default=8, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=10)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    # 0 disables the metrics/health HTTP endpoint of a deployable that has no web server of its own.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlFileSource(settings_cls), file_secret_settings)

    def check(self) -> None:
        """Cross-field rules that a single field validator cannot express; lists every breach."""
        problems = self.problems()
        if problems:
            raise SettingsError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every breach of the cross-field rules, and every TLS file that cannot be used."""
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
        problems.extend(tls_problems(tls))
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

    rabbit_ssl: bool = False
    rabbit_ssl_ca_file: Path | None = None
    rabbit_ssl_cert_file: Path | None = None
    rabbit_ssl_key_file: Path | None = None

    def problems(self) -> list[str]:
        problems = super().problems()
        tls = self.rabbit_tls()
        if not self.rabbit_ssl and tls.has_any_file:
            problems.append(f"{ENV_PREFIX}RABBIT_SSL_* files are set but {ENV_PREFIX}RABBIT_SSL is false")
        # oslo.messaging has no key password option: an encrypted key could never be used.
        problems.extend(tls_problems(tls, allow_key_password=False))
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


class ListenerSettings(RabbitSettings):
    """`eventfed listen`: one process per VIM, RabbitMQ (oslo.messaging) to the raw Kafka topic."""

    transport_url: SecretStr
    vim_id: str = Field(pattern=VIM_ID_PATTERN, max_length=200)
    exchange: str = Field(default="nova", min_length=1)
    topics: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["notifications", "versioned_notifications"], min_length=1
    )
    pool: str = Field(default="eventfed", min_length=1)
    # oslo's amqp_durable_queues for the exchange and the pool queue: durable ones, with oslo's
    # persistent messages, survive a RabbitMQ restart. Nova's own setting must be the same, since
    # RabbitMQ refuses a declaration of the other durability (see bridge.durability). False is
    # oslo's and so Nova's default: a listener that declared the exchange first with the other
    # durability would make a default Nova drop its notifications.
    durable_queues: bool = False
    batch_size: int = Field(default=500, ge=1, le=100_000)
    # A batch closes at batch_size or batch_timeout seconds after its first notification: the
    # timeout is the latency a quiet cloud's notifications pay, the size what a busy one gains. An
    # idle listener waits for a first notification without polling (bridge.listener.oslo_internals),
    # so a short window costs nothing while nothing comes.
    batch_timeout: float = Field(default=0.002, gt=0, le=60)
    # Above batch_timeout, the window grows with the load up to batch_timeout_max (reached when
    # batches fill at batch_busy_rate notifications/s, from a fifth of it up): bigger batches make
    # bigger packs, and the stream worker's cost is largely per Kafka record and per batch. On the
    # 2-core bench box the 50 ms ceiling halved the CPU both used at 1,000/s against a fixed 10 ms
    # window; equal to batch_timeout fixes the window (bench/results: the what-if rows). Reaching
    # it at 2,000/s rather than 1,000/s gives 1,000/s a window of about 20 ms: 13 ms off the
    # median latency there in six alternating pairs, for about 0.1 of a core more.
    batch_timeout_max: float = Field(default=0.05, gt=0, le=60)
    batch_busy_rate: float = Field(default=2000.0, gt=0)
    # Largest raw record written to Kafka; bigger ones are dead-lettered (Kafka's default
    # max.message.bytes is about 1 MiB).
    max_message_bytes: int = Field(default=1_000_000, ge=1024)
    # Notifications packed into one raw-topic record (same partition, JSON Lines); 1 writes one
    # record per notification. The stream stage's cost is largely per record.
    pack_max: int = Field(default=500, ge=1, le=100_000)
    retry_backoff_initial: float = Field(default=0.5, gt=0, le=60)
    retry_backoff_max: float = Field(default=30.0, gt=0, le=3600)
    delivery_timeout: float = Field(default=30.0, gt=0, le=3600)
    # How long a batch is held unacked while Kafka refuses it before it goes back to RabbitMQ.
    hold_max_seconds: float = Field(default=900.0, gt=0, le=86_400)

    _split_topics = field_validator("topics", mode="before")(_split_csv)


class StreamSettings(CommonSettings):
    """`eventfed stream`: the Faust worker."""

    app_id: str = Field(default="eventfed-stream", min_length=1)
    subscriptions_file: Path | None = None
    subscriptions_reload_seconds: float = Field(default=2.0, gt=0, le=3600)
    dedup_window_seconds: float = Field(default=600.0, ge=0)
    tombstone_seconds: float = Field(default=3600.0, ge=0)
    data_dir: Path = Path("/tmp/eventfed-stream")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    # A Confluent-compatible Schema Registry: Avro records are then in the Confluent wire format,
    # the schema registered under `<topic>-value` for each Avro topic (streams.registration).
    schema_registry_url: str | None = Field(default=None, pattern=r"^(https?|mock)://\S+$")
    # How long start-up retries registering the schema before the worker gives up (exit 1).
    schema_registry_timeout: float = Field(default=60.0, gt=0, le=3600)
    # How long start-up retries creating (or checking) its topics while Kafka does not answer
    # before the worker gives up (exit 1): Kafka starting after the worker is routine in a cluster.
    kafka_start_timeout: float = Field(default=300.0, gt=0, le=86_400)
    # Raw records per batch: a packed record carries up to PACK_MAX notifications.
    batch_size: int = Field(default=100, ge=1, le=100_000)
    # Batches decided while earlier ones are still being written (outputs, then state: two round
    # trips to Kafka). With 2 the next batch is decided during the previous one's writes, while
    # the writes themselves stay one batch after the other. At 1,000/s on the 2-core bench box
    # this took the p99 from 123-147 ms to 77-107 ms in three alternating pairs, at the same CPU;
    # at 2,000/s, 3,000/s and on a backlog (full batches either way) the two measured alike.
    # 1 decides a batch only once the one before it is written.
    max_batches_in_flight: int = Field(default=2, ge=1, le=64)
    # A batch closes at batch_size or after batch_timeout seconds (Faust's take): the timeout is
    # the latency a quiet cloud's events pay.
    batch_timeout: float = Field(default=0.01, gt=0, le=60)
    # How long librdkafka tries to deliver one output before reporting it refused (then retried).
    delivery_timeout: float = Field(default=30.0, gt=0, le=3600)
    # How long a worker that died silently keeps its partitions before the group moves them.
    # Kafka's default group.min.session.timeout.ms is 6 s.
    session_timeout_seconds: float = Field(default=10.0, ge=6, le=300)
    # How long each action kind may go without its end or error before it is stuck (a STUCK event
    # and a VES fault): the defaults of streams.stuck, overridden per kind by `KIND=DURATION,...`
    # (`DELETE=5m,SNAPSHOT=2h,default=30m`; 0 or `off`: no timer), or a mapping in the YAML file.
    stuck_after: Annotated[dict[str, float], NoDecode] = Field(default_factory=lambda: _stuck_defaults())

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

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    api_threads: int = Field(default=8, ge=1, le=256)
    api_auth_token: SecretStr | None = None
    api_basic_user: str | None = None
    api_basic_password: SecretStr | None = None
    api_max_body_bytes: int = Field(default=65_536, ge=256)
    api_page_limit_max: int = Field(default=1000, ge=1)


class PollerSettings(CommonSettings):
    """`eventfed poll`: one process per VIM, Nova's servers API to the raw Kafka topic.

    Auth is a Keystone v3 password session (`os_auth_url` and the `os_*` names) or, for a Nova
    served without Keystone, a fixed `nova_endpoint` and `nova_token`.
    """

    vim_id: str = Field(pattern=VIM_ID_PATTERN, max_length=200)
    nova_auth: Literal["keystone", "token"] = "keystone"
    # token: the compute endpoint (".../v2.1") and the X-Auth-Token sent to it.
    nova_endpoint: str | None = None
    nova_token: SecretStr | None = None
    os_auth_url: str | None = None
    os_username: str | None = None
    os_password: SecretStr | None = None
    os_project_name: str | None = None
    os_user_domain_name: str = "Default"
    os_project_domain_name: str = "Default"
    os_region_name: str | None = None
    os_interface: Literal["public", "internal", "admin"] = "public"
    os_cacert: Path | None = None
    nova_api_version: str = Field(default="2.1", pattern=r"^2\.([0-9]+|latest)$")
    # Seconds between the starts of two polling cycles.
    poll_interval: float = Field(default=60.0, gt=0, le=86_400)
    # Each cycle asks for changes since the last cycle's newest `updated` minus this many seconds:
    # it covers clock skew between Nova's hosts and transactions that commit late. Re-read servers
    # have the same message id and are dropped as duplicates.
    poll_overlap_seconds: float = Field(default=60.0, ge=0, le=86_400)
    # With no checkpoint (the first start for a VIM), deletions this far back are read too.
    poll_lookback_seconds: float = Field(default=3600.0, ge=0, le=90 * 86_400)
    # Servers per API page (Nova caps it with its own [api] max_limit, 1000 by default).
    poll_page_size: int = Field(default=1000, ge=1, le=10_000)
    poll_checkpoint_topic: str = Field(default="eventfed.poll.checkpoints", min_length=1, max_length=249)
    poll_request_timeout: float = Field(default=30.0, gt=0, le=600)
    # Snapshots packed into one raw-topic record, as the listener packs notifications.
    pack_max: int = Field(default=500, ge=1, le=100_000)
    max_message_bytes: int = Field(default=1_000_000, ge=1024)
    retry_backoff_initial: float = Field(default=0.5, gt=0, le=60)
    retry_backoff_max: float = Field(default=30.0, gt=0, le=3600)
    delivery_timeout: float = Field(default=30.0, gt=0, le=3600)

    def check(self) -> None:
        super().check()
        problems = []
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
        if self.os_cacert is not None and not self.os_cacert.is_file():
            problems.append(f"{ENV_PREFIX}OS_CACERT: no such file {self.os_cacert}")
        if problems:
            raise SettingsError("; ".join(problems))


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
    field = str(error["loc"][0]) if error["loc"] else "?"
    message = error["msg"]
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
        settings = settings_cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    settings.check()
    return settings


def redact_url(url: str) -> str:
    """Hide the password of a transport URL for logging."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
