"""`eventfed topics`, and the topics that subscriptions write to.

The core topics are shared infrastructure (bridge.topics); the subscriptions' sink topics belong
to the stream stage, which owns the subscriptions, so they are listed here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from confluent_kafka import KafkaException

from bridge.settings import CommonSettings, StreamSettings, load
from bridge.topics import TopicSpec, core_topics, delete_topics, ensure_topics
from streams.subscriptions import Subscription, SubscriptionError, load_subscriptions


def sink_topics(settings: CommonSettings, subscriptions: Iterable[Subscription]) -> list[TopicSpec]:
    """One topic per distinct sink, with the configured partitions."""
    return [TopicSpec(topic, settings.partitions) for topic in sorted({s.sink.topic for s in subscriptions})]


def run(args: argparse.Namespace) -> int:
    overrides = {"partitions": args.partitions} if args.partitions else {}
    settings = load(StreamSettings, **overrides)
    specs = core_topics(settings)
    sub_file = args.subscriptions_file or settings.subscriptions_file
    if sub_file:
        try:
            with open(sub_file, encoding="utf-8") as handle:
                subscriptions = load_subscriptions(handle.read(), str(sub_file))
        except OSError as exc:
            print(f"eventfed topics: cannot read {sub_file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except SubscriptionError as exc:
            print(f"eventfed topics: {exc}", file=sys.stderr)
            return 2
        specs += sink_topics(settings, subscriptions)
    try:
        if args.reset:
            delete_topics(settings, [spec.name for spec in specs])
        created = ensure_topics(settings, specs)
    except KafkaException as exc:
        print(f"eventfed topics: {exc.args[0]}", file=sys.stderr)
        return 1
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        print(f"{spec.name}\t{spec.partitions} partitions\t{state}")
    return 0
