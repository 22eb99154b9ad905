"""The subscriptions in force for a running worker, reloaded from their file when it changes."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from streams.metrics import SUBSCRIPTION_RELOADS, SUBSCRIPTIONS
from streams.subscriptions import Subscription, SubscriptionError, load_subscriptions

LOG = logging.getLogger(__name__)


class SubscriptionSource:
    """The subscriptions in force, reloaded when the file's content changes.

    The content hash, not the mtime, decides: a Kubernetes ConfigMap update swaps a symlink.
    A new version that does not validate is rejected and the previous rules stay in force. The
    worker reads a new version (read_if_changed), makes its topics ready (created, and their
    schemas registered), and only then puts it in force (apply).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.current: list[Subscription] = []
        self._digest = ""
        if path is not None:
            data = path.read_bytes()
            self.current = load_subscriptions(data.decode("utf-8", errors="replace"), str(path))
            self._digest = hashlib.sha256(data).hexdigest()
        SUBSCRIPTIONS.set(len(self.current))

    def __call__(self) -> list[Subscription]:
        return self.current

    def reload_if_changed(self) -> bool:
        pending = self.read_if_changed()
        if pending is None:
            return False
        self.apply(pending)
        return True

    def read_if_changed(self) -> PendingSubscriptions | None:
        """The file's new subscriptions, validated but not yet in force; None when the file is
        unchanged, unreadable or invalid (then the previous rules stay, and the error is logged)."""
        if self.path is None:
            return None
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            LOG.error("cannot read subscriptions %s: %s; keeping the previous ones", self.path, exc)
            SUBSCRIPTION_RELOADS.labels("error").inc()
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return None
        try:
            subscriptions = load_subscriptions(data.decode("utf-8", errors="replace"), str(self.path))
        except SubscriptionError as exc:
            # Remembered, so that one bad version is reported once, not at every poll.
            self._digest = digest
            LOG.error("rejected new subscriptions, keeping the previous ones: %s", exc)
            SUBSCRIPTION_RELOADS.labels("rejected").inc()
            return None
        return PendingSubscriptions(subscriptions, digest)

    def apply(self, pending: PendingSubscriptions) -> None:
        """Put subscriptions read by :meth:`read_if_changed` in force (once their topics are ready)."""
        self._digest = pending.digest
        self.current = pending.subscriptions
        SUBSCRIPTIONS.set(len(pending.subscriptions))
        SUBSCRIPTION_RELOADS.labels("applied").inc()
        LOG.info("subscriptions reloaded: %s", ", ".join(s.name for s in pending.subscriptions) or "(none)")


@dataclass(frozen=True)
class PendingSubscriptions:
    """A new version of the subscriptions file, valid, not yet in force."""

    subscriptions: list[Subscription]
    digest: str
