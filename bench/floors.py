"""The frameworks' floor: what oslo.messaging and Faust cost on their own, doing nothing with the
notifications, at the rate the low-rate section measures eventfed at.

Four bare consumers run beside eventfed's listener and worker while the publishers send at a steady
rate, each getting the same notifications eventfed gets:
  oslo         oslo.messaging's batch notification listener (threading executor, eventfed's batch
               size and window), on a pool queue of its own, an endpoint that does nothing;
  oslo-driven  the same listener as eventfed drives it (bridge.listener: the ordered dispatcher,
               batches that begin with their first notification, waits on the socket);
  faust        a Faust agent on the raw topic in a consumer group of its own, Faust's own idiom
               (`take_events` with the worker's batch size and window), doing nothing;
  faust-driven the same agent as eventfed drives it (streams.app's Faust settings, the paced fetch,
               batches that begin with their first record: streams.batching).
Their CPU per notification is the part of eventfed's figures that is the frameworks' and not
eventfed's own work: no change inside eventfed brings a figure below its framework's floor.

    python -m bench.floors oslo|oslo-driven       (listener settings from the environment)
    python -m bench.floors faust|faust-driven     (stream settings from the environment)
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.context import Context
    from bench.e2e import Pipeline

LOG = logging.getLogger(__name__)

KINDS = ("oslo", "oslo-driven", "faust", "faust-driven")
# A Faust consumer joins its group and is assigned its partitions within this; the warm-up run
# that follows makes sure it fetches.
FAUST_JOIN_SECONDS = 20.0


def measure(ctx: Context, pipeline: Pipeline, rate: int, seconds: float, seed: int) -> dict[str, Any]:
    """The four floor consumers' CPU per notification while eventfed's pipeline takes `rate`/s
    for `seconds`, on the same notifications, in the same window."""
    from bench.amqputil import queue_exists
    from bench.procs import CpuMeter, Proc, free_port, wait_until

    procs: dict[str, Proc] = {}
    try:
        for kind in KINDS:
            name = f"{pipeline.section}.floor-{kind}"
            if kind.startswith("oslo"):
                env = ctx.listener_env(
                    f"{ctx.prefix}{name}.pool", pipeline.topics["raw"], pipeline.topics["dlq"], free_port()
                )
            else:
                env = ctx.stream_env(name, pipeline.topics, pipeline.subscriptions_file, free_port())
            procs[kind] = Proc(
                [sys.executable, "-m", "bench.floors", kind], env, ctx.log_dir / f"floor-{kind}.log"
            )
        for kind in KINDS[:2]:
            pool = f"{ctx.prefix}{pipeline.section}.floor-{kind}.pool"
            if not wait_until(lambda pool=pool: queue_exists(ctx.vhost, pool), 60, 0.3):  # type: ignore[misc]
                raise RuntimeError(
                    f"floor consumer {kind} did not declare its queue; see {procs[kind].log_path}"
                )
        time.sleep(FAUST_JOIN_SECONDS)
        pipeline.run_rate(rate, 5.0, "wire", seed)
        meter = CpuMeter({kind: proc.pid for kind, proc in procs.items()})
        window: dict[str, Any] = {}

        def on_window(event: str) -> None:
            if event == "start":
                meter.start()
                window["started"] = time.monotonic()
            else:
                window["cores"] = meter.stop()
                window["seconds"] = time.monotonic() - window["started"]

        outcome = pipeline.run_rate(rate, seconds, "wire", seed + 1, on_window=on_window)
        dead = [kind for kind, proc in procs.items() if not proc.alive()]
        if dead:
            raise RuntimeError(f"floor consumers stopped during the run: {', '.join(dead)}")
        sent = outcome["sent"]
        per_note = {kind: window["cores"][kind] * window["seconds"] / sent * 1e6 for kind in KINDS if sent}
        LOG.info("floors at %d/s: %s", rate, ", ".join(f"{k} {v:.0f} us" for k, v in per_note.items()))
        return {"rate": rate, "sent": sent, "seconds": window["seconds"], "cpu_us_per_notification": per_note}
    finally:
        for proc in procs.values():
            proc.terminate(30)


def oslo_main(driven: bool) -> int:
    import oslo_messaging

    from bridge.listener import oslo_internals
    from bridge.listener.endpoint import PRIORITIES
    from bridge.listener.service import IDLE_WAIT_SECONDS, oslo_config
    from bridge.settings import ListenerSettings, VimListenerSettings, load
    from bridge.vims import single_vim

    settings = single_vim(load(ListenerSettings), VimListenerSettings)
    conf = oslo_config(settings)
    transport = oslo_messaging.get_notification_transport(conf, url=settings.transport_url.get_secret_value())
    targets = [oslo_messaging.Target(topic=topic, exchange=settings.exchange) for topic in settings.topics]
    if driven:
        dispatcher = oslo_internals.ordered_batch_dispatcher(lambda messages: None, PRIORITIES)
        from oslo_messaging.notify import listener as notify_listener

        server = notify_listener.BatchNotificationServer(
            transport,
            targets,
            dispatcher,
            "threading",
            True,
            settings.pool,
            settings.batch_size,
            settings.batch_timeout,
        )
    else:

        class DoNothing:
            def info(self, messages: Any) -> None:
                return None

            error = warn = audit = critical = debug = sample = info

        server = oslo_messaging.get_batch_notification_listener(
            transport,
            targets,
            [DoNothing()],
            executor="threading",
            pool=settings.pool,
            batch_size=settings.batch_size,
            batch_timeout=settings.batch_timeout,
        )
    server.start()
    if driven:
        oslo_internals.linger(server, IDLE_WAIT_SECONDS)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()
    server.wait()
    return 0


def faust_main(driven: bool) -> int:
    from faust.worker import Worker

    from bridge.settings import StreamSettings, load
    from streams.app import faust_app
    from streams.batching import company_batches
    from streams.faust_internals import fetch_waiting_for_company

    settings = load(StreamSettings)
    app = faust_app(settings)
    # Only what comes after the floor consumer joined: the raw topic's history is not the rate.
    app.conf.consumer_auto_offset_reset = "latest"
    raw = app.topic(settings.raw_topic, key_serializer="raw", value_serializer="raw", acks=False)
    if driven:
        fetch_waiting_for_company(app, settings.fetch_wait_ms)

        @app.agent(raw)
        async def do_nothing(stream: Any) -> None:
            async for _batch in company_batches(stream.events(), settings.batch_size, settings.batch_timeout):
                pass

    else:

        @app.agent(raw)
        async def take_and_do_nothing(stream: Any) -> None:
            async for _events in stream.take_events(settings.batch_size, within=settings.batch_timeout):
                pass

    worker = Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in KINDS:
        print(f"usage: python -m bench.floors {'|'.join(KINDS)}", file=sys.stderr)
        return 2
    kind = argv[0]
    if kind.startswith("oslo"):
        return oslo_main(kind.endswith("-driven"))
    return faust_main(kind.endswith("-driven"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
