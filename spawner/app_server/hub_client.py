"""The few hub API calls an app server makes, asynchronously, with tornado's HTTP client.

- ``token_for_code``: finish an OAuth login (``POST /hub/api/oauth2/token``, PKCE).
- ``identify``: who owns a token, with its expanded scopes (``GET /hub/api/user``).
- ``post_activity``: tell the hub viewers used this app (``POST .../activity``).

Nothing here logs a token or puts one in a URL.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger("streamlit_hub.auth")


class HubUnavailable(RuntimeError):
    """The hub did not answer; the request cannot be authenticated right now."""


class HubClient:
    def __init__(self, api_url: str, api_token: str, timeout: float = 10.0):
        self._api_url = api_url.rstrip("/")
        self._token = api_token
        self._timeout = timeout
        self._http = AsyncHTTPClient()

    async def _fetch(self, url: str, *, method="GET", body=None, headers=None):
        req = HTTPRequest(
            url,
            method=method,
            body=body,
            headers=headers or {},
            request_timeout=self._timeout,
            connect_timeout=self._timeout,
            follow_redirects=False,
        )
        try:
            return await self._http.fetch(req, raise_error=False)
        except (OSError, HTTPClientError) as e:
            raise HubUnavailable(f"hub API unreachable: {e.__class__.__name__}") from None

    async def token_for_code(
        self, *, code: str, client_id: str, redirect_uri: str, code_verifier: str
    ) -> str | None:
        body = urlencode(
            {
                "client_id": client_id,
                "client_secret": self._token,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )
        resp = await self._fetch(
            f"{self._api_url}/oauth2/token",
            method="POST",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        if resp.code != 200:
            log.warning("OAuth code exchange refused by the hub: HTTP %s", resp.code)
            return None
        return json.loads(resp.body).get("access_token")

    async def identify(self, token: str) -> dict | None:
        """The user model owning ``token`` (with ``scopes``), or None if the token is invalid."""
        resp = await self._fetch(
            f"{self._api_url}/user", headers={"Authorization": f"token {token}"}
        )
        if resp.code in (401, 403, 404):
            return None
        if resp.code != 200:
            raise HubUnavailable(f"hub API answered HTTP {resp.code}")
        model = json.loads(resp.body)
        if model.get("kind", "user") != "user":
            return None  # services have no business viewing an app as a person
        return model

    async def server_shares(self, owner: str, server: str) -> list[dict] | None:
        """The shares of one server (needs ``read:shares!server`` on this server's token)."""
        resp = await self._fetch(
            f"{self._api_url}/shares/{owner}/{server}",
            headers={"Authorization": f"token {self._token}"},
        )
        if resp.code in (403, 404):
            return None
        if resp.code != 200:
            raise HubUnavailable(f"hub API answered HTTP {resp.code}")
        return json.loads(resp.body).get("items", [])

    async def post_activity(self, url: str, server_name: str, when_iso: str) -> bool:
        body = json.dumps(
            {"last_activity": when_iso, "servers": {server_name: {"last_activity": when_iso}}}
        )
        resp = await self._fetch(
            url,
            method="POST",
            body=body,
            headers={"Authorization": f"token {self._token}", "Content-Type": "application/json"},
        )
        if resp.code >= 300:
            log.warning("activity post refused by the hub: HTTP %s", resp.code)
            return False
        return True
