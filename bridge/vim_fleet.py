"""The VIMs of a VIMs file (bridge.vims) served in one process, the same way whatever serves each
VIM: the listener's runs (bridge.listener.fleet) and the poller's (bridge.poller.fleet).

The file is read at start and again every VIMS_RELOAD_SECONDS; a file that cannot be used is
rejected whole (at start the process does not start). A VIM added starts; a VIM removed stops
after its work in hand and its metric series go with it; a VIM whose entry changed is stopped the
same way before its new run starts, so that two runs never serve one VIM at once; the others are
not touched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Generic, Protocol, TypeVar

from bridge.deployable import CannotStart
from bridge.settings import CommonSettings, ListenerSettings, PollerSettings
from bridge.vims import VimEntry, VimsFileError, VimsSource, diff

LOG = logging.getLogger(__name__)


class OneVimRun(Protocol):
    """What serves one VIM, in threads of its own."""

    @property
    def settings(self) -> CommonSettings: ...

    def start(self, after: threading.Thread | None = None) -> None:
        """Start serving; `after`: a stop to wait for first."""

    def stop(self, forget: bool) -> threading.Thread:
        """Stop after the work in hand; the thread to join for it. `forget`: the VIM is no longer
        served, its metric series go too."""

    def state(self) -> tuple[bool, str]:
        """(working, why not)."""


VimSettingsT = TypeVar("VimSettingsT", bound=CommonSettings)
RunT = TypeVar("RunT", bound=OneVimRun)
ProcessSettingsT = TypeVar("ProcessSettingsT", ListenerSettings, PollerSettings)


class VimFleet(Generic[VimSettingsT, RunT]):
    """The running VIMs, changed to match a new set by starting, stopping and restarting VIMs."""

    def __init__(self, new_run: Callable[[VimSettingsT], RunT]) -> None:
        self._new_run = new_run
        self.runs: dict[str, RunT] = {}
        self._lock = threading.Lock()

    def apply(self, wanted: Mapping[str, VimSettingsT]) -> None:
        with self._lock:
            change = diff({vim: run.settings for vim, run in self.runs.items()}, wanted)
            for vim in change.removed:
                self.runs.pop(vim).stop(forget=True)
            for vim in change.changed:
                stopped = self.runs[vim].stop(forget=False)
                self.runs[vim] = self._start(wanted[vim], after=stopped)
            for vim in change.added:
                self.runs[vim] = self._start(wanted[vim])

    def _start(self, settings: VimSettingsT, after: threading.Thread | None = None) -> RunT:
        run = self._new_run(settings)
        run.start(after)
        return run

    def stop_all(self) -> None:
        """Every VIM stops after its work in hand, all at once."""
        with self._lock:
            stoppers = [run.stop(forget=False) for run in self.runs.values()]
            self.runs = {}
        for stopper in stoppers:
            stopper.join()

    def states(self) -> dict[str, tuple[bool, str]]:
        return {vim: run.state() for vim, run in list(self.runs.items())}


class VimFleetDeployable(Generic[ProcessSettingsT, VimSettingsT]):
    """A command with a VIMs file, in the deployable skeleton (bridge.deployable): the file read
    at start, and again until a signal asks to stop."""

    name: str
    handles_signals = False
    # What each VIM finishes before it stops ("batch", "page"), for the log.
    work_in_hand: str

    def __init__(
        self,
        settings: ProcessSettingsT,
        build: Callable[[dict[str, VimEntry]], dict[str, VimSettingsT]],
    ) -> None:
        assert settings.vims_file is not None
        self.settings: ProcessSettingsT = settings
        try:
            self.source = VimsSource(settings.vims_file, build)
        except VimsFileError as exc:
            LOG.error("cannot start: %s", exc)
            raise CannotStart(2) from None
        self.stop_requested = threading.Event()

    def reload_until_stopped(self, fleet: VimFleet[VimSettingsT, RunT]) -> int:
        """Read the VIMs file every VIMS_RELOAD_SECONDS and apply a change to `fleet`."""
        while not self.stop_requested.wait(self.settings.vims_reload_seconds):
            wanted = self.source.read_if_changed()
            if wanted is not None:
                self.source.apply(wanted)
                fleet.apply(wanted)
        return 0

    def request_stop(self, signum: int) -> None:
        LOG.info("signal %d: stopping every VIM after its %s in hand", signum, self.work_in_hand)
        self.stop_requested.set()
