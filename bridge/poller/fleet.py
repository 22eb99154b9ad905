"""`eventfed poll` for the VIMs of a VIMs file in poll or both mode (bridge.vims), in one process.

Each VIM polls in a thread of its own, with its own Nova client, its own checkpoint (the
checkpoint topic is keyed by vim_id) and its own backoff, so a slow or failing Nova API delays
only its own cycles. The VIMs share the Kafka producer, each through a lane that waits only for
its own delivery reports (bridge.shared_producer). Credentials Nova or Keystone refuse stop that
VIM alone (the single-VIM process exits instead); the file is reloaded as the listener's is.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from confluent_kafka import Producer

from bridge.deployable import CannotStart
from bridge.kafka_config import shared_producer_config
from bridge.log_context import bind_vim, unbind_vim
from bridge.poller.checkpoint import KafkaCheckpoints
from bridge.poller.nova import NovaServers, build_client
from bridge.poller.service import (
    EXIT_AUTH,
    Poller,
    PollState,
    check_topics,
    forget_vim,
    poll_until_stopped,
)
from bridge.raw_writer import KafkaBatchWriter
from bridge.retry import Backoff
from bridge.settings import PollerSettings, VimPollerSettings
from bridge.shared_producer import SharedProducer
from bridge.vims import VimsFileError, VimsSource, diff, poller_settings, readiness_of

LOG = logging.getLogger(__name__)


class PollRun:
    """One VIM's polling cycles, in a thread of its own until stopped."""

    def __init__(self, settings: VimPollerSettings, shared: SharedProducer) -> None:
        self.settings = settings
        self.vim = settings.vim_id
        self._shared = shared
        self.state = PollState()
        self._forget = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poll-{self.vim}", daemon=True)

    def start(self, after: threading.Thread | None = None) -> None:
        self._after = after
        self._thread.start()

    def _run(self) -> None:
        bind_vim(self.vim)
        try:
            if self._after is not None:
                self._after.join()
            settings = self.settings
            lane = self._shared.lane(self.vim)
            poller = Poller(
                settings,
                NovaServers(build_client(settings), settings.poll_page_size),
                KafkaBatchWriter.from_settings(lane, settings),
                KafkaCheckpoints(settings, lane),
            )
            backoff = Backoff(settings.retry_backoff_initial, settings.retry_backoff_max)
            LOG.info("polling vim %s every %g s", self.vim, settings.poll_interval)
            if poll_until_stopped(settings, poller, self.state, self._stop, backoff) == EXIT_AUTH:
                self.state.reason = f"stopped: {self.state.reason}"
        except Exception as exc:
            self.state.ready, self.state.reason = False, f"cannot poll: {exc}"
            LOG.exception("vim %s: polling stopped", self.vim)
        finally:
            if self._forget:
                forget_vim(self.vim)
            unbind_vim()

    def stop(self, forget: bool = False) -> threading.Thread:
        """Stop after the page in hand; the thread to join for it. `forget`: the VIM is no longer
        served, its metric series go once its last page is written (the labels stay bounded by
        the VIMs file)."""
        self._forget = forget
        self._stop.set()
        if forget and not self._thread.is_alive():
            forget_vim(self.vim)
        return self._thread


class PollerFleetDeployable:
    """`eventfed poll` with a VIMs file, in the deployable skeleton (bridge.deployable)."""

    name = "poller"
    handles_signals = False

    def __init__(self, settings: PollerSettings) -> None:
        assert settings.vims_file is not None
        self.settings = settings
        try:
            self.source = VimsSource(settings.vims_file, lambda entries: poller_settings(settings, entries))
        except VimsFileError as exc:
            LOG.error("cannot start: %s", exc)
            raise CannotStart(2) from None
        self.stop_requested = threading.Event()
        self.runs: dict[str, PollRun] = {}
        inflight = settings.vims_inflight_bytes
        self.shared = SharedProducer(
            Producer(shared_producer_config(settings, "poll", settings.delivery_timeout, inflight)),
            inflight // 2,
        )

    def readiness(self) -> tuple[bool, str]:
        return readiness_of({vim: run.state() for vim, run in list(self.runs.items())}, "polling")

    def start(self) -> None:
        check_topics(self.settings)
        self.shared.start()
        LOG.info("polling %d VIMs of %s", len(self.source.current), self.settings.vims_file)
        self.apply(self.source.current)

    def apply(self, wanted: Mapping[str, VimPollerSettings]) -> None:
        change = diff({vim: run.settings for vim, run in self.runs.items()}, wanted)
        for vim in change.removed:
            self.runs.pop(vim).stop(forget=True)
        for vim in change.changed + change.added:
            previous = self.runs.get(vim)
            run = self.runs[vim] = PollRun(wanted[vim], self.shared)
            run.start(after=previous.stop() if previous is not None else None)

    def work(self) -> int:
        while not self.stop_requested.wait(self.settings.vims_reload_seconds):
            wanted = self.source.read_if_changed()
            if wanted is not None:
                self.source.apply(wanted)
                self.apply(wanted)
        return 0

    def request_stop(self, signum: int) -> None:
        LOG.info("signal %d: stopping every VIM after its page in hand", signum)
        self.stop_requested.set()

    def drain(self) -> None:
        threads = [run.stop() for run in self.runs.values()]
        for thread in threads:
            if thread.is_alive():
                thread.join()
        self.shared.stop(self.settings.delivery_timeout)
