"""TLS client material for Kafka and RabbitMQ: checked once at start-up, turned into SSL contexts.

Settings name files (PEM: a CA bundle, a client certificate, its private key); this module says
what is wrong with them (every problem, so that one restart fixes them all) and builds the
``ssl.SSLContext`` that aiokafka (Faust) and the RabbitMQ readiness probe use. librdkafka and
oslo.messaging take the file names themselves (bridge.kafka_config, bridge.rabbit_tls).

Loading the certificate and key here, before any client is built, turns a key that does not match
its certificate, a wrong key password or a file that is not PEM into one line naming the setting,
instead of a handshake error from inside a library later. A key is never loaded without a password
callback: OpenSSL would otherwise ask for the password on the terminal and hang a process that
has none.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ClientTls:
    """The TLS material of one client, with the setting names used in error messages."""

    ca: Path | None = None
    certificate: Path | None = None
    key: Path | None = None
    key_password: str | None = None
    # Setting names (environment variables) for messages: ca, certificate, key, key password.
    names: tuple[str, str, str, str] = ("ca", "certificate", "key", "key password")

    @property
    def has_any_file(self) -> bool:
        return any(path is not None for path in (self.ca, self.certificate, self.key))

    @property
    def has_client_certificate(self) -> bool:
        return self.certificate is not None and self.key is not None


def _file_problem(name: str, path: Path) -> str | None:
    if not path.exists():
        return f"{name}: no such file {path}"
    if not path.is_file():
        return f"{name}: {path} is not a file"
    if not os.access(path, os.R_OK):
        return f"{name}: {path} is not readable by this process (uid {os.getuid()})"
    return None


class _PasswordAsked(Exception):
    """OpenSSL asked for a password for a key that was given none."""


def problems(tls: ClientTls, allow_key_password: bool = True, files_here: bool = True) -> list[str]:
    """Everything wrong with this TLS material, as one message per problem; [] when usable.

    files_here: False for settings that describe another host (a pod's environment): its files
    are there, not here, so only the settings themselves are checked."""
    ca_name, cert_name, key_name, password_name = tls.names
    found: list[str] = []
    if tls.certificate is not None and tls.key is None:
        found.append(f"{cert_name} is set but {key_name} is not: a client certificate needs its key")
    if tls.key is not None and tls.certificate is None:
        found.append(f"{key_name} is set but {cert_name} is not: a client key needs its certificate")
    if tls.key_password is not None and tls.key is None:
        found.append(f"{password_name} is set but {key_name} is not")
    if not files_here:
        return found
    readable = {}
    for name, path in ((ca_name, tls.ca), (cert_name, tls.certificate), (key_name, tls.key)):
        if path is not None:
            problem = _file_problem(name, path)
            readable[name] = problem is None
            if problem:
                found.append(problem)
    if tls.ca is not None and readable.get(ca_name):
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(tls.ca))
        except ssl.SSLError as exc:
            found.append(f"{ca_name}: {tls.ca} holds no PEM CA certificate ({_reason(exc)})")
    if tls.has_client_certificate and readable.get(cert_name) and readable.get(key_name):
        found.extend(_key_pair_problems(tls, allow_key_password))
    return found


def _key_pair_problems(tls: ClientTls, allow_key_password: bool) -> list[str]:
    _, cert_name, key_name, password_name = tls.names
    assert tls.certificate is not None and tls.key is not None

    def password() -> bytes:
        if tls.key_password is None:
            raise _PasswordAsked
        return tls.key_password.encode()

    try:
        ssl.create_default_context().load_cert_chain(str(tls.certificate), str(tls.key), password)
    except _PasswordAsked:
        if allow_key_password:
            return [f"{key_name}: {tls.key} is encrypted: set {password_name}"]
        return [f"{key_name}: {tls.key} is encrypted, and this client cannot take a key password"]
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return [f"{key_name}: {tls.key} is not the key of the certificate {tls.certificate}"]
        if tls.key_password is not None and exc.reason in ("BAD_DECRYPT", "BAD_PASSWORD_READ"):
            return [f"{password_name}: wrong password for {tls.key}"]
        # OpenSSL says only "PEM lib" for a bad certificate, a bad key and a wrong password alike.
        try:
            ssl.create_default_context().load_verify_locations(cafile=str(tls.certificate))
        except ssl.SSLError:
            return [f"{cert_name}: {tls.certificate} holds no PEM certificate"]
        if tls.key_password is not None:
            return [f"{password_name}: wrong password for {tls.key}, or it is no PEM private key"]
        return [f"{key_name}: {tls.key} holds no PEM private key ({_reason(exc)})"]
    return []


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's words without the C source location: '[SSL: X] words (_ssl.c:4123)' -> 'words'."""
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    return text.split("] ", 1)[-1].rsplit(" (_ssl.c", 1)[0]


def client_context(tls: ClientTls, check_hostname: bool = True) -> ssl.SSLContext:
    """A client context that verifies the server against the CA (the system's when none is given)
    and presents the client certificate when there is one."""
    context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca is not None else None)
    context.check_hostname = check_hostname
    if tls.has_client_certificate:
        assert tls.certificate is not None and tls.key is not None
        password = tls.key_password
        context.load_cert_chain(str(tls.certificate), str(tls.key), lambda: (password or "").encode())
    return context
