"""Queue durability on RabbitMQ: Nova's exchange and eventfed's queue must agree, or nothing flows.

oslo.messaging declares the control exchange (`nova`) and every queue bound to it as durable or
not according to `[oslo_messaging_rabbit] amqp_durable_queues`. RabbitMQ refuses a declaration
whose durability differs from the existing one (PRECONDITION_FAILED), and oslo 18.x then hides the
mismatch: a listener silently falls back to a non-durable queue, and a Notifier whose exchange
declaration is refused drops the notification after logging it. So each eventfed process declares
the exchange (and the listener its queue) once, itself, before oslo does, and a mismatch stops it
with one line that says which side to change. Checked against oslo.messaging 18.3.1.

With durable declarations (and oslo's persistent messages) the queue and what it holds survive a
RabbitMQ restart; with non-durable ones both are gone after it.
"""

from __future__ import annotations

import logging
from typing import Any

LOG = logging.getLogger(__name__)

SETTING = "EVENTFED_DURABLE_QUEUES"
NOVA_OPTION = "[oslo_messaging_rabbit] amqp_durable_queues"


class DurabilityMismatch(Exception):
    """The exchange or queue exists on RabbitMQ with the other durability; the message says so."""


def _word(durable: bool) -> str:
    return "durable" if durable else "non-durable"


def describe_mismatch(kind: str, name: str, virtual_host: str, durable: bool, who: str = f"{SETTING}") -> str:
    """One line: what exists, what this process wants, and the two ways out."""
    if kind == "exchange":
        fix = (
            f"set {who} to {str(not durable).lower()}, or make Nova's {NOVA_OPTION} "
            f"{str(durable).lower()} and re-create the exchange"
        )
    else:
        fix = (
            f"set {who} to {str(not durable).lower()}, or drain and delete the queue "
            f"(rabbitmqctl delete_queue -p {virtual_host} {name}) so that it is declared again"
        )
    return (
        f"RabbitMQ {kind} {name!r} on virtual host {virtual_host!r} is {_word(not durable)}, "
        f"but this process declares it {_word(durable)}: {fix}"
    )


def _is_durability_refusal(exc: BaseException) -> bool:
    text = str(exc)
    return "PRECONDITION_FAILED" in text and "durable" in text


def declare(
    connection: Any,
    virtual_host: str,
    exchange: str,
    durable: bool,
    queue: str | None = None,
    who: str = SETTING,
) -> bool:
    """Declare the topic exchange (and `queue`, unbound) with `durable` on an open kombu connection.

    Returns whether the exchange existed before. Raises DurabilityMismatch when RabbitMQ holds
    either with the other durability. A new exchange is declared with `durable`, which Nova's own
    declarations must then match (a Notifier refused by RabbitMQ drops its notifications).
    """
    import kombu
    from amqp import exceptions as amqp_exceptions

    existed = True
    channel = connection.channel()
    try:
        kombu.Exchange(exchange, "topic", passive=True)(channel).declare()
    except amqp_exceptions.NotFound:
        existed = False
        channel = connection.channel()  # the refusal closed the channel
    for kind, name, entity in (
        ("exchange", exchange, kombu.Exchange(exchange, "topic", durable=durable, auto_delete=False)),
        ("queue", queue, kombu.Queue(queue, durable=durable, auto_delete=False) if queue else None),
    ):
        if entity is None:
            continue
        try:
            entity(channel).declare()
        except amqp_exceptions.PreconditionFailed as exc:
            if _is_durability_refusal(exc):
                raise DurabilityMismatch(
                    describe_mismatch(kind, str(name), virtual_host, durable, who)
                ) from None
            raise
    if not existed:
        LOG.warning(
            "RabbitMQ exchange %r on virtual host %r did not exist; declared it %s: Nova's %s must be %s",
            exchange,
            virtual_host,
            _word(durable),
            NOVA_OPTION,
            str(durable).lower(),
        )
    return existed


def oslo_override(conf: Any, durable: bool) -> None:
    """Set oslo's `amqp_durable_queues` on a ConfigOpts whose rabbit options are registered."""
    conf.set_override("amqp_durable_queues", durable, group="oslo_messaging_rabbit")
