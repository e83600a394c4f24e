"""Hub OAuth in front of Streamlit, as ASGI middleware running in the app server's process.

Invariants (each has a test that attacks it):

1. No HTTP request and no websocket upgrade under the app's prefix reaches Streamlit unless it
   carries a session cookie or a token that the hub says belongs to a *user* whose expanded
   scopes cover one of ``JUPYTERHUB_OAUTH_ACCESS_SCOPES``.
2. Streamlit (and so the analyst's code) never sees the ``Authorization`` header or any cookie
   other than Streamlit's own ``_streamlit_*`` (plus names the operator lists). The browser
   holds only a random session id; the viewer's OAuth token stays in this process's memory.
3. ``X-Hub-User`` / ``X-Hub-Groups`` reaching Streamlit are always the verified identity:
   whatever the client sent under ``X-Hub-*`` is dropped first.
4. A cross-origin websocket is refused here, independently of Streamlit's own origin check.
5. A verdict about a token is reused for at most ``auth_cache_seconds`` (default 30 s): that
   bounds how long a revoked share keeps working, a group share included (a verdict that
   rests on the app's share list expires with that list's age, not after it).
6. Only credentials minted for this app are accepted. A token's own scopes must grant access
   to this app; the one exception, a member of a group this app is shared with (JupyterHub
   6.1.1 leaves group shares out of token scopes), holds only for tokens this app server
   obtained itself through its own OAuth client, i.e. after the hub's authorize step, which
   the hub records. A token another app's client was given is refused here.

The OAuth flow is the hub's own (authorization code with PKCE, the server's API token as the
client secret), spoken directly so the app server does not import ``jupyterhub`` (see
``spawner.app_server.__init__``).

Streamlit's own page (``index.html``, asked for by a browser navigating to the app) gets one
inline script (``templates/page_script.html``): when the app's connection drops it asks the
app's health path what happened and reloads the tab when the hub or this layer has a page to
show (the app is not running, a new sign-in, a refusal), instead of Streamlit's endless
"Connection error"; and it puts a small "Back to the hub" link in Streamlit's top bar. Every
page this layer shows itself links back to the hub.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote, urlencode

from starlette.requests import cookie_parser

from .activity import ActivityTracker
from .hub_client import HubClient, HubUnavailable
from .scopes import grants_access
from .settings import Settings

log = logging.getLogger("streamlit_hub.auth")

SESSION_COOKIE = "streamlit-hub-session"
STATE_COOKIE = "streamlit-hub-oauth-state"
USER_HEADER = "X-Hub-User"
GROUPS_HEADER = "X-Hub-Groups"
# Streamlit's st.user is filled from these (server.trustedUserHeaders).
TRUSTED_USER_HEADERS = {USER_HEADER: "name", GROUPS_HEADER: "groups"}

_MAX_SESSIONS = 10_000  # signed-in browsers (and verdicts) kept
_MAX_PENDING_LOGINS = 2_000
_LOGIN_TTL = 600.0
_SESSION_IDLE_TTL = 12 * 3600.0
# While the hub does not answer (a restart, an upgrade), a viewer it admitted within this
# many seconds keeps being served on that verdict. Refusals are never extended.
_STALE_WHILE_HUB_DOWN = 300.0
# Streamlit's page is ~7 kB; an HTML response larger than this passes through unchanged.
_MAX_PAGE = 512 * 1024
# Paths under the prefix that never serve Streamlit's page (assets, media, the API).
_NOT_PAGES = ("_stcore/", "static/", "media/", "component/", "app/static/")


@dataclass
class Viewer:
    name: str
    groups: tuple[str, ...]
    allowed: bool
    checked_at: float


class _Bounded(OrderedDict):
    """An LRU map that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def groups_header_value(groups) -> str:
    """``X-Hub-Groups``: the viewer's groups, comma-separated, each name percent-encoded.

    A group name may hold a comma (``viewers,admins``) or any Unicode; encoded, every name
    stays one item and the header stays ASCII. Names of letters, digits and ``-_.~`` are
    unchanged; an app decodes the others with ``urllib.parse.unquote``.
    """
    return ",".join(quote(g, safe="") for g in groups)


def _cookies(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's cookies, read as Starlette (and so Streamlit) reads them
    (``starlette.requests.cookie_parser``: values unquoted, the last of a name wins), from
    every ``Cookie`` header (HTTP/2 may split them)."""
    return cookie_parser(
        "; ".join(value.decode("latin-1") for name, value in headers if name == b"cookie")
    )


def _cookie_pair(name: str, value: str) -> str:
    """``name=value`` for a ``Cookie`` header, the value quoted as ``http.cookies`` quotes it
    (so a ``;`` inside a value cannot start another cookie)."""
    return f"{name}={SimpleCookie().value_encode(value)[1]}"


def page_script(prefix: str, hub_home: str) -> bytes:
    """The script put into Streamlit's page (``templates/page_script.html``)."""
    return (
        _pages()
        .get_template("page_script.html")
        .render(config={"prefix": prefix, "hub": hub_home})
        .strip()
        .encode()
    )


def with_page_script(body: bytes, script: bytes) -> bytes:
    """Streamlit's page with ``script`` just before ``</head>``; any other HTML unchanged."""
    end = body.find(b"</head>")
    if not script or end < 0 or b'<div id="root">' not in body:
        return body
    return body[:end] + script + body[end:]


@functools.cache
def _pages():
    """The refusal page's template (``app_server/templates/``), autoescaped. Loaded at the
    first page shown: most app servers never show one."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("spawner.app_server", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
    )


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of an ASGI header (``name`` lower-case bytes), or None."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _bearer(headers) -> str | None:
    value = header_value(headers, b"authorization")
    if not value:
        return None
    kind, _, token = value.strip().partition(" ")
    if kind.lower() in ("token", "bearer") and token.strip():
        return token.strip()
    return None


def _origin_matches_host(origin: str, host: str | None) -> bool:
    if not host:
        return False
    _, _, rest = origin.partition("://")
    return rest.rstrip("/").lower() == host.lower()


class HubAuthMiddleware:
    """ASGI middleware: authenticate, authorize, scrub, then hand over to Streamlit."""

    def __init__(
        self,
        app,
        settings: Settings,
        hub: HubClient | None = None,
        activity: ActivityTracker | None = None,
        audit=None,
    ):
        self.app = app
        self.s = settings
        self.audit = audit  # SessionAudit (audit_sessions.py), or None when audit is off
        self.hub = hub or HubClient(settings.api_url, settings.api_token)
        self.activity = activity or ActivityTracker(settings, self.hub)
        # signed-in browsers: session cookie -> [token, last used]
        self._logins: _Bounded = _Bounded(_MAX_SESSIONS)
        self._verdicts: _Bounded = _Bounded(_MAX_SESSIONS)  # sha256(token) -> Viewer
        self._invalid: _Bounded = _Bounded(_MAX_SESSIONS)  # sha256(token) -> when refused
        # sha256 of tokens this server got from the hub for its own OAuth client (invariant 6)
        self._minted: _Bounded = _Bounded(_MAX_SESSIONS)
        self._inflight: dict[str, asyncio.Future] = {}
        # sign-ins under way: OAuth state -> (next URL, PKCE verifier, started)
        self._pending_logins: _Bounded = _Bounded(_MAX_PENDING_LOGINS)
        self._pass_cookies = set(settings.pass_cookies)
        self._prefix_no_slash = settings.prefix.rstrip("/")
        self._stream_path = settings.prefix + "_stcore/stream"
        self._not_pages = tuple(settings.prefix + p for p in _NOT_PAGES)
        self._hub_home = settings.hub_url + "home"
        self._page_script: bytes | None = None
        self._audit_kicked = False

    # ---- ASGI entry -------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        if self.audit is not None and not self._audit_kicked:
            self._audit_kicked = True
            self.audit.sender.kick()  # resend what a previous run left in the spool
        path = scope.get("path", "")
        if kind == "http" and path == self._prefix_no_slash:
            await self._redirect(send, self.s.prefix + self._query_suffix(scope))
            return
        if not path.startswith(self.s.prefix):
            await self._refuse(scope, send, 404, "Not found", "Nothing is served here.")
            return
        if kind == "http" and path == self.s.callback_path:
            await self._oauth_callback(scope, send)
            return

        headers = scope.get("headers", [])
        if kind == "websocket":
            origin = header_value(headers, b"origin")
            if origin and not _origin_matches_host(origin, header_value(headers, b"host")):
                log.warning("refused cross-origin websocket from %s", origin[:100])
                await send({"type": "websocket.close", "code": 1008})
                return

        cookies = _cookies(headers)
        try:
            viewer, token = await self._viewer_for(headers, cookies)
        except HubUnavailable as e:
            log.warning("cannot authenticate a request: %s", e)
            await self._refuse(
                scope,
                send,
                503,
                "The hub is not answering",
                "Sign-in could not be checked. Try again in a minute.",
            )
            return
        if viewer is None:
            if kind == "http" and scope.get("method") in ("GET", "HEAD"):
                await self._start_login(scope, send)
            else:
                await self._refuse(
                    scope, send, 401, "Sign in required", "Sign in through the hub to use this app."
                )
            return
        if not viewer.allowed:
            await self._forbidden(scope, send, viewer)
            return

        scope = dict(scope)
        scope["headers"] = self._scrubbed_headers(headers, cookies, viewer)
        # which worker serves this viewer, with several (workers.py): their sign-in's hash
        scope["streamlit_hub.pin"] = _token_key(token)
        self.activity.touch()
        if kind == "websocket":
            await self._serve_websocket(scope, receive, send, token, viewer)
        elif self._may_be_page(scope):
            # uncompressed, so the page script can go in (Streamlit's page is small)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]
            await self.app(scope, receive, self._page_sender(send))
        else:
            await self.app(scope, receive, send)

    # ---- identity ---------------------------------------------------------------------
    async def _viewer_for(self, headers, cookies) -> tuple[Viewer | None, str | None]:
        token = _bearer(headers)
        sid = None
        if token is None:
            sid = cookies.get(SESSION_COOKIE)
            entry = self._logins.get(sid) if sid else None
            if entry is None:
                return None, None
            now = time.monotonic()
            if now - entry[1] > _SESSION_IDLE_TTL:
                self._logins.pop(sid, None)
                return None, None
            entry[1] = now
            token = entry[0]
        viewer = await self._verdict(token)
        if viewer is None and sid is not None:
            self._logins.pop(sid, None)  # its token is no longer valid: sign in again
        return viewer, token

    async def _verdict(self, token: str) -> Viewer | None:
        key = _token_key(token)
        refused_at = self._invalid.get(key)
        if refused_at is not None and time.monotonic() - refused_at < self.s.auth_cache_seconds:
            return None  # a token the hub just rejected is not sent to it again yet
        cached = self._verdicts.get(key)
        if cached is not None and time.monotonic() - cached.checked_at < self.s.auth_cache_seconds:
            return cached
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(token, minted_here=key in self._minted))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _f, k=key: self._inflight.pop(k, None))
        try:
            viewer = await asyncio.shield(pending)
        except HubUnavailable:
            if (
                cached is not None
                and cached.allowed
                and time.monotonic() - cached.checked_at < _STALE_WHILE_HUB_DOWN
            ):
                return cached
            raise
        if viewer is None:
            self._verdicts.pop(key, None)
            self._invalid.put(key, time.monotonic())
        else:
            self._verdicts.put(key, viewer)
        return viewer

    async def _lookup(self, token: str, minted_here: bool) -> Viewer | None:
        checked_at = time.monotonic()
        model = await self.hub.identify(token)
        if model is None or not model.get("name"):
            return None
        allowed = grants_access(model.get("scopes") or [], self.s.access_scopes)
        groups = tuple(sorted(g for g in model.get("groups") or [] if isinstance(g, str)))
        if not allowed and groups and minted_here:
            # JupyterHub 6.1.1 drops group-share scopes from OAuth and API tokens (its
            # get_scopes_for adds the owner's user shares but not their groups' shares), so
            # a member of a shared group is admitted by the hub's authorize page but their
            # token carries no access scope. Ask the hub which groups this app is shared with.
            # Only for a token this server's own OAuth client obtained (so the hub's
            # authorize step, and its audit event, came first): a token issued to another
            # app's client must not open this one (invariant 6).
            shared, fetched_at = await self._shared_groups()
            allowed = bool(set(groups) & shared)
            # The verdict is as old as the share list it rests on (invariant 5).
            checked_at = min(checked_at, fetched_at)
        if not allowed:
            log.info(
                "%s holds no access scope for this app (access scopes held: %s)",
                model["name"],
                sorted(x for x in model.get("scopes") or [] if x.startswith("access:")),
            )
        return Viewer(model["name"], groups, allowed, checked_at)

    async def _shared_groups(self) -> tuple[frozenset[str], float]:
        """Groups this app is shared with (for access) and when the hub said so; cached."""
        cached = getattr(self, "_groups_cache", None)
        if cached is not None and time.monotonic() - cached[1] < self.s.auth_cache_seconds:
            return cached
        fetched_at = time.monotonic()
        items = await self.hub.server_shares(self.s.owner, self.s.server_name) or []
        groups = frozenset(
            item["group"]["name"]
            for item in items
            if item.get("group") and grants_access(item.get("scopes") or [], self.s.access_scopes)
        )
        self._groups_cache = (groups, fetched_at)
        return self._groups_cache

    # ---- what Streamlit receives -------------------------------------------------------
    def _scrubbed_headers(self, headers, cookies, viewer: Viewer):
        kept = [
            (k, v)
            for k, v in headers
            if k not in (b"cookie", b"authorization") and not k.startswith(b"x-hub-")
        ]
        passed = [
            _cookie_pair(k, v)
            for k, v in cookies.items()
            if k and (k.startswith("_streamlit_") or k in self._pass_cookies)  # never nameless
        ]
        if passed:
            kept.append((b"cookie", "; ".join(passed).encode("latin-1")))
        kept.append((USER_HEADER.lower().encode(), viewer.name.encode("utf-8")))
        kept.append(
            (GROUPS_HEADER.lower().encode(), groups_header_value(viewer.groups).encode("ascii"))
        )
        return kept

    async def _serve_websocket(self, scope, receive, send, token, viewer):
        """Hand an upgraded websocket to Streamlit, re-checking access as messages arrive.

        Once the cached verdict is older than ``auth_cache_seconds``, the next message from
        the client re-asks the hub; if access is gone (a revoked share), the socket is closed
        and Streamlit sees a disconnect. So an open session ends within the same window as
        new requests do.
        """
        activity = self.activity
        checked = time.monotonic()
        closed = False
        stream = None
        if self.audit is not None and scope.get("path") == self._stream_path:
            stream = self.audit.open(viewer, scope)

        async def counted_receive():
            nonlocal checked, closed
            message = await receive()
            if message["type"] != "websocket.receive":
                return message
            if stream is not None:
                stream.client_frame(message.get("bytes"))
            if time.monotonic() - checked >= self.s.auth_cache_seconds:
                try:
                    viewer = await self._verdict(token)
                except HubUnavailable:
                    viewer = Viewer("", (), True, 0)  # keep serving through a hub restart
                checked = time.monotonic()
                if viewer is None or not viewer.allowed:
                    log.info(
                        "closing a websocket: access to %s/%s was withdrawn",
                        self.s.owner,
                        self.s.server_name,
                    )
                    if not closed:
                        closed = True
                        await send({"type": "websocket.close", "code": 1008})
                    return {"type": "websocket.disconnect", "code": 1008}
            activity.touch()
            return message

        async def guarded_send(message):
            if closed:
                return  # the socket is closed: drop what Streamlit still sends
            if stream is not None and message["type"] == "websocket.send":
                stream.server_frame(message.get("bytes"))
            await send(message)

        activity.websocket_opened()
        try:
            await self.app(scope, counted_receive, guarded_send)
        finally:
            activity.websocket_closed()
            if stream is not None:
                stream.end("access withdrawn" if closed else "closed")

    # ---- Streamlit's page ---------------------------------------------------------------
    def _may_be_page(self, scope) -> bool:
        """A browser navigating to a page of the app (Streamlit answers its index.html)."""
        if scope.get("method") != "GET" or scope.get("path", "").startswith(self._not_pages):
            return False
        headers = scope["headers"]
        dest = header_value(headers, b"sec-fetch-dest")
        if dest is not None:
            return dest in ("document", "iframe")
        return "text/html" in (header_value(headers, b"accept") or "")

    def _page_sender(self, send):
        """``send`` that gives Streamlit's page the page script (``with_page_script``); every
        other response passes unchanged. The page's body is held until complete (at most
        ``_MAX_PAGE`` bytes), then sent with its new length; its validators (ETag,
        Last-Modified) are dropped, as they describe the file, not what is sent."""
        held = None  # the response start, while its body is held
        chunks: list[bytes] = []
        size = 0

        async def sender(message):
            nonlocal held, size
            kind = message["type"]
            if kind == "http.response.start":
                headers = message.get("headers", [])
                if (
                    message.get("status") == 200
                    and (header_value(headers, b"content-type") or "").startswith("text/html")
                    and header_value(headers, b"content-encoding") is None
                ):
                    held = message
                    return
                await send(message)
                return
            if held is None:
                await send(message)
                return
            if kind != "http.response.body":  # not a page after all: what was held goes first
                start, body = held, b"".join(chunks)
                held = None
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                await send(message)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if more and size <= _MAX_PAGE:
                return
            start, body = held, b"".join(chunks)
            held = None
            chunks.clear()
            if more:  # too large to be Streamlit's page: send it on as it is
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                return
            new = with_page_script(body, self._script())
            headers = start.get("headers", [])
            if new is not body:
                drop = (b"content-length", b"etag", b"last-modified")
                headers = [(k, v) for k, v in headers if k not in drop]
                headers.append((b"content-length", str(len(new)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": new})

        return sender

    def _script(self) -> bytes:
        """The page script, made once; nothing (the page as Streamlit sent it) if it cannot
        be made: the app must never fail for it."""
        if self._page_script is None:
            try:
                self._page_script = page_script(self.s.prefix, self._hub_home)
            except Exception:
                log.exception("the page script could not be made; pages are sent without it")
                self._page_script = b""
        return self._page_script

    # ---- OAuth login ------------------------------------------------------------------
    @staticmethod
    def _query_suffix(scope) -> str:
        qs = scope.get("query_string", b"")
        return ("?" + qs.decode("latin-1")) if qs else ""

    def _cookie(self, name: str, value: str, max_age: int | None = None) -> tuple[bytes, bytes]:
        """A ``Set-Cookie`` header for this app only, formatted by ``http.cookies`` as
        Starlette's ``Response.set_cookie`` does: ``Path`` the app's prefix, ``HttpOnly``,
        ``SameSite=Lax``, ``Secure`` when the hub is served over HTTPS; ``Max-Age`` if given
        (0 deletes it)."""
        cookie = SimpleCookie()
        cookie[name] = value
        morsel = cookie[name]
        morsel["path"] = self.s.prefix
        morsel["httponly"] = True
        morsel["samesite"] = "Lax"
        if max_age is not None:
            morsel["max-age"] = max_age
        if self.s.secure_cookies:
            morsel["secure"] = True
        return (b"set-cookie", morsel.OutputString().encode("latin-1"))

    async def _start_login(self, scope, send):
        raw_path = scope.get("raw_path") or scope["path"].encode()
        next_url = raw_path.decode("latin-1") + self._query_suffix(scope)
        state = secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        self._pending_logins.put(state, (next_url, verifier, time.monotonic()))
        url = (
            self.s.authorize_url
            + "?"
            + urlencode(
                {
                    "client_id": self.s.client_id,
                    "redirect_uri": self.s.callback_url,
                    "response_type": "code",
                    "state": state,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                }
            )
        )
        await self._redirect(send, url, [self._cookie(STATE_COOKIE, state, int(_LOGIN_TTL))])

    async def _oauth_callback(self, scope, send):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        code = (query.get("code") or [""])[0]
        state = (query.get("state") or [""])[0]
        cookie_state = _cookies(scope.get("headers", [])).get(STATE_COOKIE)
        pending = self._pending_logins.pop(state, None) if state else None
        if (
            not code
            or pending is None
            or cookie_state is None
            or not secrets.compare_digest(cookie_state.encode(), state.encode())
            or time.monotonic() - pending[2] > _LOGIN_TTL
        ):
            await self._refuse(
                scope,
                send,
                400,
                "Sign-in did not complete",
                "This sign-in link is stale or was opened in another browser. "
                "Open the app again to sign in.",
                link=(self.s.prefix, "Open the app again"),
            )
            return
        next_url, verifier, _ = pending
        try:
            token = await self.hub.token_for_code(
                code=code,
                client_id=self.s.client_id,
                redirect_uri=self.s.callback_url,
                code_verifier=verifier,
            )
            if token:
                self._minted.put(_token_key(token), True)
            viewer = await self._verdict(token) if token else None
        except HubUnavailable:
            await self._refuse(
                scope,
                send,
                503,
                "The hub is not answering",
                "Sign-in could not be completed. Try again in a minute.",
            )
            return
        if viewer is None:
            await self._refuse(
                scope,
                send,
                403,
                "Sign-in refused",
                "The hub did not confirm your sign-in. Open the app again.",
                link=(self.s.prefix, "Open the app again"),
            )
            return
        sid = secrets.token_urlsafe(32)
        self._logins.put(sid, [token, time.monotonic()])
        log.info("viewer %s signed in to %s/%s", viewer.name, self.s.owner, self.s.server_name)
        if not next_url.startswith(self.s.prefix):
            next_url = self.s.prefix
        await self._redirect(
            send,
            next_url,
            [
                self._cookie(SESSION_COOKIE, sid),
                self._cookie(STATE_COOKIE, "", 0),
            ],
        )

    # ---- responses --------------------------------------------------------------------
    async def _redirect(self, send, location: str, extra_headers=()):
        await send(
            {
                "type": "http.response.start",
                "status": 302,
                "headers": [
                    (b"location", location.encode("latin-1", "replace")),
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                    *extra_headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _forbidden(self, scope, send, viewer: Viewer):
        owner = self.s.owner
        app = self.s.server_name or "default"
        message = (
            f"You are signed in as {viewer.name}, but {owner} has not shared the app "
            f"“{app}” with you. Ask {owner} to share it with you or with one of your groups."
        )
        log.info("refused %s: no access to %s/%s", viewer.name, owner, app)
        await self._refuse(
            scope,
            send,
            403,
            f"This app belongs to {owner}",
            message,
            link=(self._hub_home, "Back to the hub"),
        )

    async def _refuse(self, scope, send, status: int, title: str, message: str, link=None):
        """A refusal: a page for a browser that asked for HTML (with ``link``, and always a
        way back to the hub), else JSON; a websocket is closed (1008)."""
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        accept = header_value(scope.get("headers", []), b"accept") or ""
        if "text/html" in accept:
            body = (
                _pages()
                .get_template("refusal.html")
                .render(
                    title=title,
                    message=message,
                    link={"href": link[0], "text": link[1]} if link else None,
                    back=None if link and link[0] == self._hub_home else self._hub_home,
                )
                .encode()
            )
            ctype = b"text/html; charset=utf-8"
        else:
            body = json.dumps({"status": status, "message": f"{title}. {message}"}).encode()
            ctype = b"application/json"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", ctype),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""}
        )
