"""`eventfed topics`, and the topics that subscriptions write to.

The core topics are shared infrastructure (bridge.topic_admin); the subscriptions' sink topics belong
to the stream stage, which owns the subscriptions, so they are listed here.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import KafkaException

from bridge.kafka_config import KafkaTlsRefused
from bridge.logs import setup_logging
from bridge.settings import CommonSettings, StreamSettings, load
from bridge.topic_admin import TopicSpec, core_topics, delete_topics, ensure_topics, partition_counts
from streams.subscriptions import Subscription, SubscriptionError, load_subscriptions

LOG = logging.getLogger(__name__)


def sink_topics(settings: CommonSettings, subscriptions: Iterable[Subscription]) -> list[TopicSpec]:
    """One topic per distinct sink, with the configured partitions."""
    return [TopicSpec(topic, settings.partitions) for topic in sorted({s.sink.topic for s in subscriptions})]


def read_subscriptions_file(path: str | Path) -> list[Subscription]:
    """The subscriptions in a file; SubscriptionError names the file and what is wrong with it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SubscriptionError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SubscriptionError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return load_subscriptions(text, str(path))


def run(args: argparse.Namespace) -> int:
    overrides = {"partitions": args.partitions} if args.partitions is not None else {}
    settings = load(StreamSettings, **overrides)
    setup_logging(settings, "topics")
    specs = core_topics(settings)
    sub_file = args.subscriptions_file or settings.subscriptions_file
    if sub_file:
        try:
            subscriptions = read_subscriptions_file(sub_file)
        except SubscriptionError as exc:
            LOG.error("eventfed topics: %s", exc)
            return 2
        specs += sink_topics(settings, subscriptions)
    try:
        if args.reset:
            delete_topics(settings, [spec.name for spec in specs])
        created = ensure_topics(settings, specs)
        actual = partition_counts(settings, [spec.name for spec in specs])
    except KafkaException as exc:
        error = exc.args[0]
        # KafkaError's own str() is its repr; its message is what a person reads.
        detail = error.str() if hasattr(error, "str") else str(error)
        LOG.error("eventfed topics: Kafka at %s: %s", settings.kafka_bootstrap_servers, detail)
        return 1
    except KafkaTlsRefused as exc:
        LOG.error("eventfed topics: %s", exc)
        return 1
    except TimeoutError:
        LOG.error("eventfed topics: Kafka at %s did not answer in time", settings.kafka_bootstrap_servers)
        return 1
    mismatches = []
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        partitions = actual.get(spec.name)
        if partitions is None:
            print(f"{spec.name}\t? partitions\t{state}, not listed by Kafka yet")
            continue
        if partitions != spec.partitions:
            state += f", the settings say {spec.partitions}"
            mismatches.append(mismatch_message(spec, partitions))
        print(f"{spec.name}\t{partitions} partitions\t{state}")
    for message in mismatches:
        LOG.error("eventfed topics: %s", message)
    return 1 if mismatches else 0


def mismatch_message(spec: TopicSpec, partitions: int) -> str:
    """Why a topic whose partition count differs from the settings' is an error, and the way out."""
    return (
        f"topic {spec.name} has {partitions} partitions in Kafka, the settings say {spec.partitions} "
        "(EVENTFED_PARTITIONS or --partitions): the stream worker's table changelogs get the "
        "settings' count and must match the raw topic's, and a VM keeps its order only on one "
        f"partition; set EVENTFED_PARTITIONS={partitions}, or drain the topic and re-create it"
    )
