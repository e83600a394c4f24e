"""The hub's half of the audit trail, running inside the hub process.

It sees what only the hub can see, outside the analyst's code, so an app cannot suppress it:

- ``authorize``: every OAuth authorization of a viewer for an app server (the hub's
  ``/hub/api/oauth2/authorize``): ``allowed`` when the hub issued a code (its database holds
  it when the redirect carrying it goes out), ``refused`` when it answered 403;
- ``app_stop`` requested through the REST API (owner, admin, the idle culler), with who asked;
- ``share_granted`` / ``share_revoked``: shares with users and groups, share links made,
  revoked and accepted.

``app_start`` (with who asked, and quota refusals) and crashes are recorded by the spawner
mixin through ``record``. Everything goes through ``AuditSender``: spooled on disk first,
delivered to the audit service with backoff.

The hook is tornado's ``log_function`` (``JupyterHub.tornado_settings``): it runs once per
finished request, after JupyterHub's own request log line, and never changes a response.
Which request it was, and the owner and app it names, come from the route table
(``spawner.routes``), as JupyterHub's handler saw them.

Every event's ``client`` is the address the outermost trusted proxy saw
(``spawner.client_address``): the TCP peer, walked through ``X-Forwarded-For`` with the
spawners' ``trusted_proxies`` (the list app servers get), so the hub and the app server name
the same address for one visit. Tornado's ``remote_ip`` is never used: JupyterHub runs
tornado with ``xheaders``, which takes a client's ``X-Real-Ip`` as is.
"""

from __future__ import annotations

import json
import logging
import os
import socket

from ..client_address import client_address, configured_networks, parse_networks
from ..policy import group_names
from ..routes import ACCEPT_SHARE, OAUTH_AUTHORIZE, SERVER_API, SHARE_CODES, SHARES, route_of
from .client import AuditSender, AuditSpool, new_event

log = logging.getLogger("streamlit_hub.audit.hub")

_recorder: HubAuditRecorder | None = None


def recorder() -> HubAuditRecorder | None:
    return _recorder


def actor_of(handler) -> tuple[str | None, str, bool]:
    """(name, kind, is_admin) of whoever made the request."""
    try:
        who = handler.current_user
    except Exception:
        who = None
    if who is None:
        return None, "anonymous", False
    kind = getattr(who, "kind", None) or ("service" if type(who).__name__ == "Service" else "user")
    return who.name, kind, bool(getattr(who, "admin", False))


def reason_for(actor: str | None, kind: str, admin: bool, owner: str) -> str:
    if kind == "service":
        return "culler" if "cull" in (actor or "") else "service"
    if actor == owner:
        return "user"
    if admin:
        return "admin"
    return "viewer"


def _groups(user) -> list[str]:
    try:
        return sorted(group_names(user))
    except Exception:
        return []


def _profile_of(handler, owner: str, app: str) -> str | None:
    try:
        user = handler.find_user(owner)
        if user is None:
            return None
        spawner = user.spawners.get(app)  # gone once stopped: then the database's record
        profile = getattr(spawner, "app_profile", None)
        if not profile and app in user.orm_spawners:
            orm_spawner = user.orm_spawners[app]
            profile = (orm_spawner.state or {}).get("app_profile") or (
                orm_spawner.user_options or {}
            ).get("profile")
        return profile if isinstance(profile, str) else None
    except Exception:
        return None


def _json_body(request) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _peer(request) -> str | None:
    """The TCP peer's address, as the socket saw it (before tornado applied any header)."""
    context = getattr(getattr(request, "connection", None), "context", None)
    address = getattr(context, "address", None)
    if (
        getattr(context, "address_family", None) in (socket.AF_INET, socket.AF_INET6)
        and isinstance(address, tuple)
        and address
    ):
        return address[0]
    return None  # a Unix socket: no address to record


def _code_issued(handler, client_id: str, user) -> bool:
    """Did this authorize request make the hub issue a code to ``client_id`` for ``user``?

    The hub saves the code (``orm.OAuthCode``) before it sends the redirect that carries it,
    and an app server redeems it (which deletes it) only once the browser has followed that
    redirect, after this hook has run. The code is the one for this request's PKCE challenge
    (an app server's sign-in always sends one, new each time), so neither an earlier code nor
    an OAuth error redirect (invalid scope, ...: no code) counts as this request's.
    """
    from jupyterhub import orm

    challenge = handler.get_argument("code_challenge", None)
    return (
        handler.db.query(orm.OAuthCode)
        .filter_by(client_id=client_id, user_id=user.id, code_challenge=challenge)
        .filter(orm.OAuthCode.expires_at >= orm.OAuthCode.now())
        .first()
        is not None
    )


def configured_trusted_proxies(config, spawner_class) -> tuple:
    """The spawners' ``trusted_proxies`` under the hub's configuration: set on
    ``StreamlitSpawnerMixin`` or on any class of the spawner's, else its default (the
    ``STREAMLIT_HUB_TRUSTED_PROXIES`` environment variable, else loopback)."""
    from traitlets.config import Config

    from ..mixin import StreamlitSpawnerMixin

    sections = ["StreamlitSpawnerMixin"]
    if isinstance(spawner_class, type) and issubclass(spawner_class, StreamlitSpawnerMixin):
        sections = spawner_class.section_names()  # least specific first, as traitlets merges
    value = None
    for name in sections:
        if config is not None and name in config and "trusted_proxies" in config[name]:
            value = config[name]["trusted_proxies"]
    mine = Config()
    if value is not None:
        mine.StreamlitSpawnerMixin.trusted_proxies = value
    return parse_networks(StreamlitSpawnerMixin(config=mine).trusted_proxies)


class HubAuditRecorder:
    def __init__(self, spool_dir: str, url: str, token: str, trusted_proxies=None):
        self.sender = AuditSender(AuditSpool(spool_dir), url, token)
        # None: the spawners' setting, read from the hub's config at the first request
        self._trusted = None if trusted_proxies is None else parse_networks(trusted_proxies)

    def trusted_proxies(self, handler) -> tuple:
        if self._trusted is None:
            settings = getattr(handler, "settings", None) or {}
            try:
                self._trusted = configured_trusted_proxies(
                    settings.get("config"), settings.get("spawner_class")
                )
            except Exception:
                log.exception("trusted_proxies unreadable: recording TCP peers only")
                self._trusted = ()
        return self._trusted

    def client(self, handler) -> str | None:
        """The address the outermost trusted proxy saw for this request."""
        request = handler.request
        return client_address(
            _peer(request),
            request.headers.get_list("X-Forwarded-For"),
            self.trusted_proxies(handler),
        )

    def record(self, kind: str, **fields) -> None:
        try:
            self.sender.emit(new_event(kind, **fields))
        except Exception:
            log.exception("could not record a %s audit event", kind)

    def log_function(self, handler) -> None:
        from jupyterhub.log import log_request

        log_request(handler)
        try:
            self.observe(handler)
        except Exception:
            log.exception("audit recorder failed on %s", handler.request.path)

    def observe(self, handler) -> None:
        request = handler.request
        status = handler.get_status()
        method = request.method
        route = route_of(handler)
        if route is None:
            return
        if route.name == OAUTH_AUTHORIZE:
            self._authorize(handler, status)
            return
        if status >= 300:
            return
        owner, app = route.user, route.server
        if route.name == SERVER_API and app and method == "DELETE":
            actor, kind, admin = actor_of(handler)
            self.record(
                "app_stop",
                owner=owner,
                app=app,
                actor=actor,
                reason=reason_for(actor, kind, admin, owner),
                profile=_profile_of(handler, owner, app),
                client=self.client(handler),
            )
            return
        if route.name in (SHARES, SHARE_CODES) and app and method in ("POST", "PATCH", "DELETE"):
            actor, _, _ = actor_of(handler)
            body = _json_body(request)
            extra = {k: body[k] for k in ("user", "group") if isinstance(body.get(k), str)}
            if route.name == SHARE_CODES:
                extra["link"] = True
                if isinstance(body.get("expires_in"), int):
                    extra["expires_in"] = body["expires_in"]
            kind = "share_granted" if method == "POST" else "share_revoked"
            self.record(
                kind, owner=owner, app=app, actor=actor, extra=extra, client=self.client(handler)
            )
            return
        if route.name == ACCEPT_SHARE and method == "POST":
            self._accepted(handler)

    def _authorize(self, handler, status: int) -> None:
        if status == 302:
            outcome = "allowed"  # if the hub issued a code: checked below
        elif status == 403:
            outcome = "refused"
        else:
            return  # 200: the consent page; the POST that follows decides
        user = handler.current_user
        if user is None:
            return  # a redirect to the login page: nobody to authorize yet
        client_id = handler.get_argument("client_id", None)
        if not client_id:
            return
        from jupyterhub import orm

        client = handler.db.query(orm.OAuthClient).filter_by(identifier=client_id).first()
        spawner = client.spawner if client is not None else None
        if spawner is None:
            return  # a service's client, not an app
        if outcome == "allowed" and not _code_issued(handler, client_id, user):
            return  # a redirect carrying an OAuth error back to the app: no code, no access
        profile = (spawner.user_options or {}).get("profile")
        self.record(
            "authorize",
            owner=spawner.user.name,
            app=spawner.name,
            viewer=user.name,
            viewer_groups=_groups(user),
            outcome=outcome,
            profile=profile if isinstance(profile, str) else None,
            client=self.client(handler),
            user_agent=(handler.request.headers.get("User-Agent") or "")[:512] or None,
        )

    def _accepted(self, handler) -> None:
        code = handler.get_argument("code", None)
        if not code:
            return
        from jupyterhub import orm

        share_code = orm.ShareCode.find(handler.db, code)
        spawner = share_code.spawner if share_code is not None else None
        user = handler.current_user
        if spawner is None or user is None:
            return
        self.record(
            "share_granted",
            owner=spawner.user.name,
            app=spawner.name,
            actor=user.name,
            extra={"user": user.name, "via": "link"},
            client=self.client(handler),
        )


def install(c, *, spool_dir: str, url: str, token: str, trusted_proxies=None) -> HubAuditRecorder:
    """Create the hub's recorder and hook it into the hub's request log.

    ``trusted_proxies``: None (the spawners' ``trusted_proxies``, read at the first request,
    once the whole configuration is loaded). A bad ``STREAMLIT_HUB_TRUSTED_PROXIES`` stops
    the hub here, at start-up, naming the variable.
    """
    global _recorder
    configured_networks(os.environ)  # raises ValueError naming the variable
    _recorder = HubAuditRecorder(spool_dir, url, token, trusted_proxies)
    # update(), not assignment: keep tornado_settings set elsewhere in the config
    c.JupyterHub.tornado_settings.update({"log_function": _recorder.log_function})
    return _recorder
