"""Connecting the listener to RabbitMQ: why it cannot, in one line, and trying again with backoff.

oslo's driver retries a refused TCP connection for ever, but a refused login (wrong password,
unknown virtual host, missing permissions) is an error it raises once: the listener would stay
alive and unready for ever, even after the credentials are fixed. So each attempt first logs in
and declares what the listener needs with kombu (as oslo would), and starts oslo's server only
once that works; between attempts it waits by the project's one backoff (bridge.retry).

One ERROR line per kind of problem (`ConnectProblem.kind`), not one per attempt: a wrong password
retried every 30 s for a night is one line, and a change of cause (the password fixed, the
virtual host still missing) is a new one. `/readyz` says the current reason at every probe.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from bridge.durability import DurabilityMismatch
from bridge.retry import Backoff

LOG = logging.getLogger(__name__)

CONNECT_FAILURES = Counter(
    "eventfed_listener_rabbit_connect_failures_total",
    "Attempts to log in to RabbitMQ and declare the pool queue that failed, by VIM and kind of problem",
    ["vim", "kind"],
)

# The kinds of problem, a bounded label set.
UNREACHABLE = "unreachable"
LOGIN_REFUSED = "login_refused"
VHOST = "virtual_host"
PERMISSION = "permission"
OTHER = "other"


_KINDS = (UNREACHABLE, LOGIN_REFUSED, VHOST, PERMISSION, OTHER)


def forget_vim(vim: str) -> None:
    """Drop the connect-failure series of a VIM this process no longer serves."""
    for kind in _KINDS:
        with contextlib.suppress(KeyError):
            CONNECT_FAILURES.remove(vim, kind)


@dataclass(frozen=True)
class ConnectProblem:
    kind: str
    reason: str


def classify(exc: BaseException, user: str, virtual_host: str) -> ConnectProblem:
    """What an exception from logging in or declaring means for the operator, in one line."""
    from amqp import exceptions as amqp_exceptions

    text = str(getattr(exc, "reply_text", "") or exc)
    if isinstance(exc, amqp_exceptions.AccessRefused) and "Login was refused" in text:
        return ConnectProblem(
            LOGIN_REFUSED,
            f"RabbitMQ refused the login of user {user!r}: check the user name and password in "
            "EVENTFED_TRANSPORT_URL",
        )
    if isinstance(exc, amqp_exceptions.NotAllowed) and "not found" in text:
        return ConnectProblem(
            VHOST,
            f"RabbitMQ has no virtual host {virtual_host!r}: check the path of EVENTFED_TRANSPORT_URL "
            "(Nova's transport_url names the one it publishes to)",
        )
    if isinstance(exc, amqp_exceptions.NotAllowed):
        return ConnectProblem(
            VHOST,
            f"user {user!r} has no permissions on RabbitMQ virtual host {virtual_host!r}: "
            f"rabbitmqctl set_permissions -p {virtual_host} {user} <configure> <write> <read>",
        )
    if isinstance(exc, amqp_exceptions.AccessRefused):
        return ConnectProblem(
            PERMISSION,
            f"user {user!r} may not declare or bind the listener's exchange and queue on virtual host "
            f"{virtual_host!r} ({text}): its configure, write and read permissions must match them",
        )
    if isinstance(exc, OSError):
        return ConnectProblem(UNREACHABLE, f"rabbitmq unreachable: {exc.strerror or exc}")
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return ConnectProblem(OTHER, detail)


class Connector:
    """Runs `attempt` until it returns without raising, or `stop` is set.

    `attempt` raises what went wrong (or returns a ready-made ConnectProblem from a check that
    does not raise); DurabilityMismatch is not retried: a retry cannot fix a configuration that
    disagrees with Nova's, so it goes up to stop the listener with its one line.
    """

    def __init__(
        self,
        attempt: Callable[[], ConnectProblem | None],
        classify_error: Callable[[BaseException], ConnectProblem],
        backoff: Backoff,
        stop: threading.Event,
        vim: str = "",
    ) -> None:
        self._attempt = attempt
        self._vim = vim
        self._classify = classify_error
        self._backoff = backoff
        self._stop = stop
        self.problem: ConnectProblem | None = None
        self.attempts = 0

    def run(self) -> bool:
        """True once connected; False when stopped first."""
        while not self._stop.is_set():
            self.attempts += 1
            try:
                problem = self._attempt()
            except DurabilityMismatch:
                raise
            except Exception as exc:
                problem = self._classify(exc)
            if problem is None:
                if self.problem is not None:
                    LOG.info("connected to RabbitMQ after %d attempts", self.attempts)
                self.problem = None
                self._backoff.reset()
                return True
            CONNECT_FAILURES.labels(self._vim, problem.kind).inc()
            delay = self._backoff.next_delay()
            if self.problem is None or self.problem.kind != problem.kind:
                LOG.error(
                    "cannot connect to RabbitMQ: %s; retrying with backoff (up to %.0fs apart), "
                    "not ready meanwhile",
                    problem.reason,
                    self._backoff.maximum,
                )
            else:
                LOG.debug("cannot connect to RabbitMQ (attempt %d): %s", self.attempts, problem.reason)
            self.problem = problem
            self._stop.wait(delay)
        return False
