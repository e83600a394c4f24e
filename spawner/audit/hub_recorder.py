"""The hub's half of the audit trail, running inside the hub process.

It sees what only the hub can see, outside the analyst's code, so an app cannot suppress it:

- ``authorize``: every OAuth authorization of a viewer for an app server (the hub's
  ``/hub/api/oauth2/authorize``): ``allowed`` when the hub issued a code, ``refused`` when it
  answered 403;
- ``app_stop`` requested through the REST API (owner, admin, the idle culler), with who asked;
- ``share_granted`` / ``share_revoked``: shares with users and groups, share links made,
  revoked and accepted.

``app_start`` (with who asked, and quota refusals) and crashes are recorded by the spawner
mixin through ``record``. Everything goes through ``AuditSender``: spooled on disk first,
delivered to the audit service with backoff.

The hook is tornado's ``log_function`` (``JupyterHub.tornado_settings``): it runs once per
finished request, after JupyterHub's own request log line, and never changes a response.
"""

from __future__ import annotations

import json
import logging
import re

from .client import AuditSender, AuditSpool, new_event

log = logging.getLogger("streamlit_hub.audit.hub")

_AUTHORIZE = re.compile(r"/hub/api/oauth2/authorize$")
_SERVER = re.compile(r"/hub/api/users/([^/]+)/servers/([^/]+)/?$")
_SHARES = re.compile(r"/hub/api/shares/([^/]+)/([^/]+)/?$")
_CODES = re.compile(r"/hub/api/share-codes/([^/]+)/([^/]+)/?$")
_ACCEPT = re.compile(r"/hub/accept-share/?$")

_recorder: "HubAuditRecorder | None" = None


def recorder() -> "HubAuditRecorder | None":
    return _recorder


def actor_of(handler) -> tuple[str | None, str, bool]:
    """(name, kind, is_admin) of whoever made the request."""
    try:
        who = handler.current_user
    except Exception:  # noqa: BLE001 - a failed lookup means "nobody"
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
        return sorted(g.name for g in user.groups)
    except Exception:  # noqa: BLE001
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
            profile = ((orm_spawner.state or {}).get("app_profile")
                       or (orm_spawner.user_options or {}).get("profile"))
        return profile if isinstance(profile, str) else None
    except Exception:  # noqa: BLE001 - a missing profile must not lose the event
        return None


def _json_body(request) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class HubAuditRecorder:
    def __init__(self, spool_dir: str, url: str, token: str):
        self.sender = AuditSender(AuditSpool(spool_dir), url, token)

    def record(self, kind: str, **fields) -> None:
        try:
            self.sender.emit(new_event(kind, **fields))
        except Exception:  # noqa: BLE001 - auditing must never break the hub
            log.exception("could not record a %s audit event", kind)

    def log_function(self, handler) -> None:
        from jupyterhub.log import log_request

        log_request(handler)
        try:
            self.observe(handler)
        except Exception:  # noqa: BLE001
            log.exception("audit recorder failed on %s", handler.request.path)

    def observe(self, handler) -> None:
        request = handler.request
        status = handler.get_status()
        path = request.path
        method = request.method
        if _AUTHORIZE.search(path):
            self._authorize(handler, status)
            return
        if status >= 300:
            return
        m = _SERVER.search(path)
        if m and method == "DELETE":
            owner, app = m.groups()
            actor, kind, admin = actor_of(handler)
            self.record("app_stop", owner=owner, app=app, actor=actor,
                        reason=reason_for(actor, kind, admin, owner),
                        profile=_profile_of(handler, owner, app), client=request.remote_ip)
            return
        m = _SHARES.search(path) or _CODES.search(path)
        if m and method in ("POST", "PATCH", "DELETE"):
            owner, app = m.groups()
            actor, _, _ = actor_of(handler)
            body = _json_body(request)
            extra = {k: body[k] for k in ("user", "group") if isinstance(body.get(k), str)}
            if _CODES.search(path):
                extra["link"] = True
                if isinstance(body.get("expires_in"), int):
                    extra["expires_in"] = body["expires_in"]
            kind = "share_granted" if method == "POST" else "share_revoked"
            self.record(kind, owner=owner, app=app, actor=actor, extra=extra,
                        client=request.remote_ip)
            return
        if _ACCEPT.search(path) and method == "POST":
            self._accepted(handler)

    def _authorize(self, handler, status: int) -> None:
        if status == 302:
            location = handler._headers.get("Location", "")
            if "code=" not in location:
                return  # a redirect to the login page: nobody to authorize yet
            outcome = "allowed"
        elif status == 403:
            outcome = "refused"
        else:
            return  # 200: the consent page; the POST that follows decides
        client_id = handler.get_argument("client_id", None)
        if not client_id:
            return
        from jupyterhub import orm

        client = handler.db.query(orm.OAuthClient).filter_by(identifier=client_id).first()
        spawner = client.spawner if client is not None else None
        if spawner is None:
            return  # a service's client, not an app
        user = handler.current_user
        if user is None:
            return
        profile = (spawner.user_options or {}).get("profile")
        self.record("authorize", owner=spawner.user.name, app=spawner.name, viewer=user.name,
                    viewer_groups=_groups(user), outcome=outcome,
                    profile=profile if isinstance(profile, str) else None,
                    client=handler.request.remote_ip,
                    user_agent=(handler.request.headers.get("User-Agent") or "")[:512] or None)

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
        self.record("share_granted", owner=spawner.user.name, app=spawner.name, actor=user.name,
                    extra={"user": user.name, "via": "link"}, client=handler.request.remote_ip)


def install(c, *, spool_dir: str, url: str, token: str) -> HubAuditRecorder:
    """Create the hub's recorder and hook it into the hub's request log."""
    global _recorder
    _recorder = HubAuditRecorder(spool_dir, url, token)
    # update(), not assignment: keep tornado_settings set elsewhere in the config
    c.JupyterHub.tornado_settings.update({"log_function": _recorder.log_function})
    return _recorder
