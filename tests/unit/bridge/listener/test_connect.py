"""The listener's connection attempts: the reason in one line, one ERROR line per kind, backoff."""

from __future__ import annotations

import logging
import threading

import pytest
from amqp import exceptions as amqp_exceptions

from bridge.durability import DurabilityMismatch
from bridge.listener.connect import (
    LOGIN_REFUSED,
    PERMISSION,
    UNREACHABLE,
    VHOST,
    Connector,
    ConnectProblem,
    classify,
)
from bridge.retry import Backoff


def test_a_refused_login_names_the_user_and_the_setting():
    exc = amqp_exceptions.AccessRefused(
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN."
    )
    problem = classify(exc, "nova-reader", "/")
    assert problem.kind == LOGIN_REFUSED
    assert "'nova-reader'" in problem.reason and "EVENTFED_TRANSPORT_URL" in problem.reason


def test_an_unknown_virtual_host_and_a_missing_permission_are_told_apart():
    missing = classify(amqp_exceptions.NotAllowed("NOT_ALLOWED - vhost region-9 not found"), "u", "region-9")
    assert missing.kind == VHOST and "no virtual host 'region-9'" in missing.reason
    no_rights = classify(
        amqp_exceptions.NotAllowed("NOT_ALLOWED - access to vhost 'r' refused for user 'u'"), "u", "r"
    )
    assert no_rights.kind == VHOST and "set_permissions -p r u" in no_rights.reason
    declare = classify(
        amqp_exceptions.AccessRefused("ACCESS_REFUSED - access to queue 'eventfed' in vhost '/' refused"),
        "u",
        "/",
    )
    assert declare.kind == PERMISSION and "configure, write and read" in declare.reason


def test_an_unreachable_broker_is_one_line():
    problem = classify(ConnectionRefusedError(111, "Connection refused"), "u", "/")
    assert problem == ConnectProblem(UNREACHABLE, "rabbitmq unreachable: Connection refused")


class Attempts:
    """Fails with each exception in turn, then succeeds."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> ConnectProblem | None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return None


def _connector(attempt: Attempts, stop: threading.Event | None = None) -> Connector:
    return Connector(
        attempt, lambda exc: classify(exc, "u", "/"), Backoff(0.001, 0.002), stop or threading.Event()
    )


def test_it_retries_until_the_login_works_with_one_error_line_per_kind(caplog):
    refused = amqp_exceptions.AccessRefused("ACCESS_REFUSED - Login was refused")
    attempt = Attempts(refused, refused, refused, ConnectionRefusedError(111, "Connection refused"), refused)
    connector = _connector(attempt)
    with caplog.at_level(logging.DEBUG, logger="bridge.listener.connect"):
        assert connector.run() is True
    assert attempt.calls == 6
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    # login refused, then unreachable, then login refused again: three changes of cause.
    assert len(errors) == 3, errors
    assert "refused the login" in errors[0] and "unreachable" in errors[1]
    assert not any(r.exc_info for r in caplog.records), "no traceback per attempt"
    assert any("connected to RabbitMQ after 6 attempts" in r.getMessage() for r in caplog.records)
    assert connector.problem is None


def test_the_current_problem_is_kept_for_readiness_and_a_stop_ends_the_retries():
    stop = threading.Event()
    attempt = Attempts(*[amqp_exceptions.NotAllowed("NOT_ALLOWED - vhost x not found")] * 1000)
    connector = Connector(attempt, lambda exc: classify(exc, "u", "x"), Backoff(0.05, 0.05), stop)
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(connector.run()))
    thread.start()
    try:
        for _ in range(100):
            if connector.problem is not None:
                break
            stop.wait(0.01)
        assert connector.problem is not None and connector.problem.kind == VHOST
    finally:
        stop.set()
        thread.join(5)
    assert result == [False]


def test_a_durability_mismatch_is_not_retried():
    attempt = Attempts(DurabilityMismatch("exchange 'nova' is durable"))
    with pytest.raises(DurabilityMismatch):
        _connector(attempt).run()
    assert attempt.calls == 1
