"""Nova's servers API through python-novaclient and a keystoneauth1 session: the only module of
`eventfed poll` that talks to Nova.

It lists `GET /servers/detail?all_tenants=1[&changes-since=...]` page by page, following the
`servers_links` "next" link Nova gives when a page is full (its marker), and counts the calls.
Failures are sorted in two: NovaAuthError (Nova or Keystone refused the credentials: 401 or 403,
after keystoneauth's own re-authentication) and NovaUnavailable (everything a retry may cure:
refused connections, time-outs, 5xx, a body that is not a server list).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from bridge.poller.snapshot import api_time
from bridge.settings import VimPollerSettings

LOG = logging.getLogger(__name__)


class NovaAuthError(Exception):
    """The credentials were refused: retrying will not help."""


class NovaUnavailable(Exception):
    """Nova (or Keystone) cannot answer now."""


@dataclass
class Page:
    servers: list[dict[str, Any]]
    date: datetime | None  # Nova's clock: the HTTP Date of the answer


@dataclass
class Listing:
    """What one listing asked and got: the calls made and Nova's time at its first answer."""

    calls: int = 0
    first_date: datetime | None = None
    servers: int = 0
    pages: list[int] = field(default_factory=list)


def build_client(settings: VimPollerSettings) -> Any:
    """A novaclient Client on a keystoneauth1 session: Keystone v3 password, or a fixed endpoint
    and token for a Nova served without Keystone (noauth2)."""
    from keystoneauth1 import session as ks_session
    from keystoneauth1 import token_endpoint
    from keystoneauth1.identity import v3
    from novaclient import client as nova_client

    verify: bool | str = str(settings.os_cacert) if settings.os_cacert is not None else True
    if settings.nova_auth == "token":
        assert settings.nova_endpoint and settings.nova_token is not None  # PollerSettings.check
        auth: Any = token_endpoint.Token(settings.nova_endpoint, settings.nova_token.get_secret_value())
        session = ks_session.Session(auth=auth, verify=verify, timeout=settings.poll_request_timeout)
        return nova_client.Client(
            settings.nova_api_version, session=session, endpoint_override=settings.nova_endpoint
        )
    assert settings.os_auth_url and settings.os_password is not None  # PollerSettings.check
    auth = v3.Password(
        auth_url=settings.os_auth_url,
        username=settings.os_username,
        password=settings.os_password.get_secret_value(),
        project_name=settings.os_project_name,
        user_domain_name=settings.os_user_domain_name,
        project_domain_name=settings.os_project_domain_name,
    )
    session = ks_session.Session(auth=auth, verify=verify, timeout=settings.poll_request_timeout)
    return nova_client.Client(
        settings.nova_api_version,
        session=session,
        region_name=settings.os_region_name,
        endpoint_type=settings.os_interface,
    )


def _next_marker(body: dict[str, Any]) -> str | None:
    """The marker of the `servers_links` "next" link, when Nova says there is a next page."""
    for link in body.get("servers_links") or ():
        if isinstance(link, dict) and link.get("rel") == "next":
            markers = parse_qs(urlsplit(str(link.get("href") or "")).query).get("marker")
            if markers:
                return markers[0]
    return None


def _date(response: Any) -> datetime | None:
    text = getattr(response, "headers", {}).get("Date")
    if not text:
        return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None


class NovaServers:
    """Lists servers changed since a time (or all live servers), page by page."""

    def __init__(self, client: Any, page_size: int) -> None:
        self._client = client
        self._page_size = page_size

    def pages(self, since: datetime | None, listing: Listing) -> Iterator[Page]:
        """Every page of `/servers/detail` for all tenants, deleted servers included when `since`
        is given (Nova lists them with changes-since), as Nova sorts them (created_at, id)."""
        query: dict[str, str] = {"all_tenants": "1", "limit": str(self._page_size)}
        if since is not None:
            query["changes-since"] = api_time(since)
        marker: str | None = None
        while True:
            params = dict(query, marker=marker) if marker else query
            response, body = self._get("/servers/detail?" + urlencode(sorted(params.items())))
            listing.calls += 1
            date = _date(response)
            if listing.first_date is None:
                listing.first_date = date
            servers = body.get("servers") if isinstance(body, dict) else None
            if not isinstance(servers, list):
                raise NovaUnavailable("Nova answered /servers/detail without a server list")
            listing.servers += len(servers)
            listing.pages.append(len(servers))
            yield Page([s for s in servers if isinstance(s, dict)], date)
            marker = _next_marker(body)
            if not marker or not servers:
                return

    def _get(self, url: str) -> tuple[Any, Any]:
        from keystoneauth1 import exceptions as ks_exceptions
        from novaclient import exceptions as nova_exceptions

        try:
            return self._client.client.get(url)
        except (nova_exceptions.Unauthorized, nova_exceptions.Forbidden) as exc:
            raise NovaAuthError(f"Nova refused the credentials: HTTP {exc.code} {exc.message}") from None
        except (ks_exceptions.Unauthorized, ks_exceptions.Forbidden) as exc:
            raise NovaAuthError(f"Keystone refused the credentials: {exc}") from None
        except nova_exceptions.ClientException as exc:
            raise NovaUnavailable(f"Nova answered HTTP {exc.code}: {exc.message}") from None
        except ks_exceptions.ClientException as exc:
            # Connection refused, time-outs, TLS, an unreachable Keystone, its 5xx.
            raise NovaUnavailable(f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:
            raise NovaUnavailable(f"Nova's answer is not JSON: {exc}") from None
