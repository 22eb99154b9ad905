"""`eventfed poll` for the VIMs of a VIMs file in poll or both mode (bridge.vims), in one process.

Each VIM polls in a thread of its own, with its own Nova client, its own checkpoint (the
checkpoint topic is keyed by vim_id) and its own backoff, so a slow or failing Nova API delays
only its own cycles. The VIMs share the Kafka producer, each through a lane that waits only for
its own delivery reports (bridge.shared_producer). Credentials Nova or Keystone refuse stop that
VIM alone (the single-VIM process exits instead); the file is reloaded as the listener's is
(bridge.vim_fleet).
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Producer

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
from bridge.vim_fleet import VimFleet, VimFleetDeployable
from bridge.vims import poller_settings, readiness_of

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


class PollerFleetDeployable(VimFleetDeployable[PollerSettings, VimPollerSettings]):
    """`eventfed poll` with a VIMs file, in the deployable skeleton (bridge.deployable)."""

    name = "poller"
    work_in_hand = "page"

    def __init__(self, settings: PollerSettings) -> None:
        super().__init__(settings, lambda entries: poller_settings(settings, entries))
        inflight = settings.vims_inflight_bytes
        self.shared = SharedProducer(
            Producer(shared_producer_config(settings, "poll", settings.delivery_timeout, inflight)),
            inflight // 2,
        )
        self.fleet: VimFleet[VimPollerSettings, PollRun] = VimFleet(
            lambda vim_settings: PollRun(vim_settings, self.shared)
        )

    def readiness(self) -> tuple[bool, str]:
        return readiness_of(self.fleet.states(), "polling")

    def start(self) -> None:
        check_topics(self.settings)
        self.shared.start()
        LOG.info("polling %d VIMs of %s", len(self.source.current), self.settings.vims_file)
        self.fleet.apply(self.source.current)

    def work(self) -> int:
        return self.reload_until_stopped(self.fleet)

    def drain(self) -> None:
        self.fleet.stop_all()
        self.shared.stop(self.settings.delivery_timeout)
