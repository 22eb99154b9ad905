"""Optional authentication: a bearer token, HTTP basic credentials, or both.

Probes and metrics stay open so Kubernetes and Prometheus need no secret. Secrets are compared
with `hmac.compare_digest` so the time taken does not reveal how much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from bridge.api.errors import ApiError
from bridge.settings import ENV_PREFIX, ApiSettings, SettingsError

REALM = "eventfed"


@dataclass(frozen=True, slots=True)
class Authenticator:
    token: bytes | None
    basic_user: bytes | None
    basic_password: bytes | None

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Authenticator:
        user, password = settings.api_basic_user, settings.api_basic_password
        if (user is None) != (password is None):
            raise SettingsError(
                f"{ENV_PREFIX}API_BASIC_USER and {ENV_PREFIX}API_BASIC_PASSWORD must be set together"
            )
        token = settings.api_auth_token
        if token is not None and not token.get_secret_value():
            raise SettingsError(f"{ENV_PREFIX}API_AUTH_TOKEN must not be empty when set")
        return cls(
            token=token.get_secret_value().encode("utf-8") if token is not None else None,
            basic_user=user.encode("utf-8") if user is not None else None,
            basic_password=password.get_secret_value().encode("utf-8") if password is not None else None,
        )

    @property
    def enabled(self) -> bool:
        return self.token is not None or self.basic_user is not None

    def schemes(self) -> list[str]:
        """The enabled schemes, as the OpenAPI document names them."""
        return [name for name, on in (("bearer", self.token), ("basic", self.basic_user)) if on is not None]

    def challenges(self) -> str:
        schemes = []
        if self.token is not None:
            schemes.append(f'Bearer realm="{REALM}"')
        if self.basic_user is not None:
            schemes.append(f'Basic realm="{REALM}", charset="UTF-8"')
        return ", ".join(schemes)

    def is_authorized(self, authorization: str | None) -> bool:
        if not self.enabled:
            return True
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer" and self.token is not None:
            # WSGI hands headers over as latin-1 decoded text: encoding back gives the bytes sent.
            return hmac.compare_digest(credentials.encode("latin-1", "replace"), self.token)
        if scheme == "basic" and self.basic_user is not None and self.basic_password is not None:
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, colon, password = decoded.partition(b":")
            # Both comparisons always run, so a right user name is not told apart by timing.
            user_ok = hmac.compare_digest(user, self.basic_user)
            password_ok = hmac.compare_digest(password, self.basic_password)
            return bool(colon) and user_ok and password_ok
        return False

    def require(self, authorization: str | None) -> None:
        if not self.is_authorized(authorization):
            raise ApiError(
                401,
                "authentication required" if not authorization else "invalid credentials",
                headers={"WWW-Authenticate": self.challenges()},
            )
