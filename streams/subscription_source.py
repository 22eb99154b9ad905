"""The subscriptions in force for a running worker, reloaded from their file when it changes."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from streams.metrics import SUBSCRIPTION_RELOADS, SUBSCRIPTIONS
from streams.subscriptions import Subscription, SubscriptionError, load_subscriptions

LOG = logging.getLogger(__name__)


class SubscriptionSource:
    """The subscriptions in force, reloaded when the file's content changes.

    The content hash, not the mtime, decides: a Kubernetes ConfigMap update swaps a symlink.
    A new version that does not validate is rejected and the previous rules stay in force.
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
        if self.path is None:
            return False
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            LOG.error("cannot read subscriptions %s: %s; keeping the previous ones", self.path, exc)
            SUBSCRIPTION_RELOADS.labels("error").inc()
            return False
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            subscriptions = load_subscriptions(data.decode("utf-8", errors="replace"), str(self.path))
        except SubscriptionError as exc:
            LOG.error("rejected new subscriptions, keeping the previous ones: %s", exc)
            SUBSCRIPTION_RELOADS.labels("rejected").inc()
            return False
        self.current = subscriptions
        SUBSCRIPTIONS.set(len(subscriptions))
        SUBSCRIPTION_RELOADS.labels("applied").inc()
        LOG.info("subscriptions reloaded: %s", ", ".join(s.name for s in subscriptions) or "(none)")
        return True
