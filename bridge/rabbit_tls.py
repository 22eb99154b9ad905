"""RabbitMQ over TLS: eventfed's settings given to oslo.messaging's rabbit driver, and a probe.

oslo.messaging (checked against 18.3.1) reads TLS from ``[oslo_messaging_rabbit]``: ``ssl``,
``ssl_ca_file``, ``ssl_cert_file``, ``ssl_key_file`` (and ``ssl_version``, which pins one old
protocol constant and so is left at its default: Python negotiates TLS 1.2 or 1.3). With a CA file
the driver verifies the broker's certificate and, for a single host, its host name. It has no key
password option, so the key must be unencrypted (bridge.settings refuses an encrypted one).

The driver retries a failed TLS handshake forever, one log line per attempt; :func:`handshake`
lets the listener say once, at start-up and in its readiness, what is wrong in plain words.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from bridge.settings import RabbitSettings, SettingsError
from bridge.tls import client_context

RABBIT_GROUP = "oslo_messaging_rabbit"


def oslo_overrides(settings: RabbitSettings) -> dict[str, Any]:
    """The ``[oslo_messaging_rabbit]`` options for these settings."""
    if not settings.rabbit_ssl:
        return {"ssl": False}
    return {
        "ssl": True,
        "ssl_ca_file": str(settings.rabbit_ssl_ca_file or ""),
        "ssl_cert_file": str(settings.rabbit_ssl_cert_file or ""),
        "ssl_key_file": str(settings.rabbit_ssl_key_file or ""),
    }


def apply_to_oslo(conf: Any, settings: RabbitSettings) -> None:
    """Set the TLS options on an oslo ConfigOpts whose rabbit options are registered, that is after
    ``get_notification_transport`` (the driver registers them) and before the first connection."""
    from oslo_config import cfg

    if not settings.rabbit_ssl:
        return  # the driver's default; other transports (fake:// in tests) have no rabbit group
    try:
        for name, value in oslo_overrides(settings).items():
            conf.set_override(name, value, group=RABBIT_GROUP)
    except cfg.NoSuchGroupError:
        raise SettingsError("EVENTFED_RABBIT_SSL is true but the transport URL is not rabbit://") from None


def kombu_ssl(settings: RabbitSettings, hostname: str | None) -> dict[str, Any] | bool:
    """kombu's ``ssl`` argument for a direct connection, as oslo's driver builds it."""
    if not settings.rabbit_ssl:
        return False
    options: dict[str, Any] = {}
    if settings.rabbit_ssl_cert_file is not None:
        options["certfile"] = str(settings.rabbit_ssl_cert_file)
    if settings.rabbit_ssl_key_file is not None:
        options["keyfile"] = str(settings.rabbit_ssl_key_file)
    if settings.rabbit_ssl_ca_file is not None:
        options["ca_certs"] = str(settings.rabbit_ssl_ca_file)
        options["cert_reqs"] = ssl.CERT_REQUIRED
        options["server_hostname"] = hostname
    return options or True


def kombu_connection(host: Any, virtual_host: str, timeout: float, settings: RabbitSettings | None) -> Any:
    """A kombu connection (not yet open) to one host of a parsed transport URL, with the TLS of
    `settings` (None: plain AMQP), for the checks made before oslo connects."""
    import kombu

    return kombu.Connection(
        hostname=host.hostname or "127.0.0.1",
        port=host.port or 5672,
        userid=host.username or "guest",
        password=host.password or "guest",
        virtual_host=virtual_host,
        connect_timeout=timeout,
        ssl=kombu_ssl(settings, host.hostname) if settings is not None else False,
    )


def handshake(settings: RabbitSettings, hosts: list[tuple[str, int]], timeout: float = 3.0) -> str | None:
    """None when one of the hosts accepts a connection (a TLS handshake when TLS is on, checked as
    oslo's driver checks it); otherwise why the last one did not, in one line."""
    context = None
    if settings.rabbit_ssl:
        # oslo checks the host name only with a CA file and a single host.
        check_hostname = settings.rabbit_ssl_ca_file is not None and len(hosts) == 1
        context = client_context(settings.rabbit_tls(), check_hostname=check_hostname)
    reason = "no host in the transport URL"
    for host, port in hosts:
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                if context is not None:
                    with context.wrap_socket(sock, server_hostname=host):
                        pass
            return None
        except ssl.SSLCertVerificationError as exc:
            reason = (
                f"{host}:{port}: TLS: the broker's certificate is not trusted ({exc.verify_message}): "
                "check EVENTFED_RABBIT_SSL_CA_FILE"
            )
        except ssl.SSLError as exc:
            reason = f"{host}:{port}: TLS handshake failed: {exc.reason or exc}"
        except OSError as exc:
            reason = f"{host}:{port}: {exc.strerror or exc}"
    return reason
