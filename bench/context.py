"""What every bench section shares: the run's unique names, sizes, processes and helpers."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import Fleet, RssSampler, clean_env, free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SUBSCRIPTIONS = ROOT / "config" / "subscriptions.example.yaml"
# The example subscriptions include one for "*_region-one": the simulated cloud is region one.
VIM_ID = "benchowner_region-one"


class AccountingError(RuntimeError):
    """A notification sent during a measurement was neither delivered, filtered nor dead-lettered."""


@dataclass(frozen=True)
class Sizes:
    ingest_notifications: int
    stream_records: int
    e2e_fixed_seconds: float
    e2e_step_seconds: float
    e2e_steps: tuple[int, ...]
    api_vms: int
    api_get_requests: int
    api_check_requests: int
    api_max_seconds: float
    contract_iterations: int

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            ingest_notifications=50_000,
            stream_records=50_000,
            e2e_fixed_seconds=15.0,
            e2e_step_seconds=10.0,
            e2e_steps=(2000, 3000, 4000, 6000, 8000),
            api_vms=100_000,
            api_get_requests=20_000,
            api_check_requests=100,
            api_max_seconds=30.0,
            contract_iterations=50_000,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            ingest_notifications=5_000,
            stream_records=5_000,
            e2e_fixed_seconds=4.0,
            e2e_step_seconds=4.0,
            e2e_steps=(2000,),
            api_vms=10_000,
            api_get_requests=2_000,
            api_check_requests=20,
            api_max_seconds=10.0,
            contract_iterations=5_000,
        )


@dataclass
class Context:
    run_id: str
    bootstrap: str
    vhost: str
    log_dir: Path
    sampler: RssSampler
    sizes: Sizes
    quick: bool

    @property
    def prefix(self) -> str:
        """Every Kafka topic, consumer group and Faust app id of the run starts with this."""
        return f"bench.{self.run_id}."

    def fleet(self) -> Fleet:
        return Fleet(self.log_dir, self.sampler)

    def listener_env(
        self, pool: str, raw_topic: str, dlq_topic: str, metrics_port: int, **extra: str
    ) -> dict[str, str]:
        from bench.amqputil import transport_url

        return clean_env(
            EVENTFED_TRANSPORT_URL=transport_url(self.vhost),
            EVENTFED_VIM_ID=VIM_ID,
            EVENTFED_POOL=pool,
            EVENTFED_RAW_TOPIC=raw_topic,
            EVENTFED_DLQ_TOPIC=dlq_topic,
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            EVENTFED_METRICS_PORT=str(metrics_port),
            EVENTFED_PARTITIONS="8",
            # The bench's figures were measured with non-durable queues (bench.amqputil declares
            # them so): transient messages are not written to disk by RabbitMQ.
            EVENTFED_DURABLE_QUEUES="false",
            **extra,
        )

    def stream_env(
        self, name: str, topics: dict[str, str], subscriptions_file: Path, metrics_port: int
    ) -> dict[str, str]:
        return clean_env(
            EVENTFED_KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            EVENTFED_RAW_TOPIC=topics["raw"],
            EVENTFED_EVENTS_TOPIC=topics["events"],
            EVENTFED_STATE_TOPIC=topics["state"],
            EVENTFED_DLQ_TOPIC=topics["dlq"],
            # The run's own: a merge must never read another run's shares of the same VIM.
            EVENTFED_FLEET_PARTS_TOPIC=f"{self.prefix}{name}.fleet-parts",
            EVENTFED_APP_ID=f"{self.prefix}{name}.app",
            EVENTFED_PARTITIONS="8",
            EVENTFED_SUBSCRIPTIONS_FILE=str(subscriptions_file),
            EVENTFED_DATA_DIR=str(self.log_dir / f"{name}-data"),
            EVENTFED_WEB_PORT=str(free_port()),
            EVENTFED_METRICS_PORT=str(metrics_port),
        )

    def subscriptions(self, name: str) -> tuple[Path, dict[str, str]]:
        """The example subscriptions with this run's topic names; returns the file and topic -> format."""
        import yaml

        document = yaml.safe_load(EXAMPLE_SUBSCRIPTIONS.read_text())
        formats: dict[str, str] = {}
        for item in document["subscriptions"]:
            topic = f"{self.prefix}{name}.sub.{item['sink']['topic']}"
            item["sink"]["topic"] = topic
            formats[topic] = item["sink"].get("format", "json")
        path = self.log_dir / f"{name}-subscriptions.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path, formats

    def topics(self, name: str) -> dict[str, str]:
        return {kind: f"{self.prefix}{name}.{kind}" for kind in ("raw", "events", "state", "dlq")}


def percentiles(values: list[float], points: tuple[float, ...] = (0.5, 0.95, 0.99)) -> dict[str, float]:
    """Nearest-rank percentiles, plus max and mean; empty input gives NaNs."""
    if not values:
        return {
            **{f"p{round(p * 100)}": float("nan") for p in points},
            "max": float("nan"),
            "mean": float("nan"),
        }
    ordered = sorted(values)
    result = {
        f"p{round(p * 100)}": ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]
        for p in points
    }
    result["max"] = ordered[-1]
    result["mean"] = statistics.fmean(ordered)
    return result


def rate_from_samples(samples: list[tuple[float, int]], total: int) -> dict[str, Any]:
    """Throughput from (monotonic time, records done) samples: from the first sample that shows
    progress to the one that reached `total`; start-up before the first record is left out."""
    started = next(((t, c) for t, c in samples if c > 0), None)
    finished = next(((t, c) for t, c in samples if c >= total), None)
    if started is None or finished is None or finished[0] <= started[0]:
        return {"per_second": float("nan"), "seconds": float("nan")}
    seconds = finished[0] - started[0]
    return {
        "per_second": (finished[1] - started[1]) / seconds,
        "seconds": seconds,
        "counted": finished[1] - started[1],
    }


def cpu_from_samples(samples: list[tuple[float, int, float]], total: int) -> dict[str, float]:
    """CPU cost over the same window as :func:`rate_from_samples`, from (time, done, cpu seconds)
    samples: microseconds of CPU per record, and the share of one core used."""
    started = next((s for s in samples if s[1] > 0), None)
    finished = next((s for s in samples if s[1] >= total), None)
    if started is None or finished is None or finished[1] <= started[1] or finished[0] <= started[0]:
        return {"cpu_us_per_record": float("nan"), "cores_used": float("nan")}
    cpu = finished[2] - started[2]
    return {
        "cpu_us_per_record": cpu / (finished[1] - started[1]) * 1e6,
        "cores_used": cpu / (finished[0] - started[0]),
    }
