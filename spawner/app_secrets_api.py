"""The hub API for app secrets (``spawner/app_secrets.py``), next to JupyterHub's REST API:

- ``GET /hub/api/streamlit/apps/{user}/{app}/secrets``: the app's secrets, names, when each
  was set and by whom, never a value; whether the app runs with older ones
  (``restart_needed``: it started before the latest change);
- ``PUT .../secrets/{name}`` with ``{"value": "..."}``: set or replace one;
- ``DELETE .../secrets/{name}``: remove one.

Only the app's owner and admins, and only with a token (or session) that may start and stop
that app (``servers!server=<user>/<app>``): a viewer the app is shared with, the app server's
own token (the app's code holds it) and the OAuth tokens viewers hold for an app get a 403
with a sentence; someone who cannot even see the app a 404 that does not confirm it exists.
Every set and delete is in the audit trail (``app_secret_set`` / ``app_secret_deleted``:
who, which app, which secret, never the value). The body is read here, never logged, and no
answer or refusal holds a value. A change reaches the app at its next start.

``configure_app_secrets(c, data_dir)`` makes the hub's store and registers these handlers.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

from jupyterhub.apihandlers import APIHandler
from tornado import web

from .app_secrets import FOLDER, AppSecretStore, SecretError, use_store

NOT_YOURS = "No such app, or it is not yours."
OWNERS_ONLY = "Only the app's owner and admins manage its secrets."
RESTART_NOTE = "An app gets its secrets when it starts: restart it to apply a change."


class _SecretsHandler(APIHandler):
    def initialize(self, store: AppSecretStore):
        self.store = store

    def managed_app(self, user_name: str, app: str):
        """The app's spawner, if the caller may manage its secrets; else 404 (cannot see
        the app) or 403 (sees it, e.g. a viewer, but may not manage it)."""
        me = self.current_user
        target = f"{user_name}/{app}"
        if me is None or not any(
            self.has_scope(f"{s}!server={target}") for s in ("read:servers", "access:servers")
        ):
            raise web.HTTPError(404, NOT_YOURS)
        user = self.find_user(user_name)
        if user is None or app not in user.orm_spawners:
            raise web.HTTPError(404, NOT_YOURS)
        is_person = getattr(me, "kind", "user") == "user"
        if not (
            is_person
            and (me.name == user_name or getattr(me, "admin", False))
            and self.has_scope(f"servers!server={target}")
        ):
            raise web.HTTPError(403, OWNERS_ONLY)
        return user.spawners[app]

    def restart_needed(self, spawner) -> bool:
        """Does the app run with older secrets (it started before the latest change)?"""
        if not spawner.active:
            return False
        changed = self.store.changed_at(spawner.user.name, spawner.name)
        started = spawner.orm_spawner.started if spawner.orm_spawner is not None else None
        if changed is None or started is None:
            return False
        return changed > started.replace(tzinfo=UTC)

    def answer(self, body: dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))

    def audit(self, kind: str, owner: str, app: str, name: str) -> None:
        from .audit.hub_recorder import actor_of, reason_for, recorder

        r = recorder()
        if r is None:
            return
        actor, who, admin = actor_of(self)
        r.record(
            kind,
            owner=owner,
            app=app,
            actor=actor,
            reason=reason_for(actor, who, admin, owner),
            client=r.client(self),
            extra={"secret": name},
        )


class AppSecretsAPIHandler(_SecretsHandler):
    async def get(self, user_name: str, app: str):
        spawner = self.managed_app(user_name, app)
        try:
            listed = self.store.list_secrets(user_name, app)
        except SecretError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.answer(
            {
                "app": app,
                "owner": user_name,
                "secrets": [s.to_json() for s in listed],
                "running": bool(spawner.active),
                "restart_needed": self.restart_needed(spawner),
                "note": RESTART_NOTE,
            }
        )


class AppSecretAPIHandler(_SecretsHandler):
    def _value(self) -> object:
        """The request's ``value``; the body itself is never logged or echoed."""
        try:
            body = json.loads(self.request.body or b"")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or set(body) != {"value"}:
            raise web.HTTPError(400, 'Send a JSON object with one key: {"value": "..."}.')
        return body["value"]

    async def put(self, user_name: str, app: str, name: str):
        spawner = self.managed_app(user_name, app)
        value = self._value()
        try:
            info = self.store.set(user_name, app, name, value, by=self.current_user.name)
        except SecretError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.audit("app_secret_set", user_name, app, name)
        self.answer({**info.to_json(), "restart_needed": self.restart_needed(spawner)})

    async def delete(self, user_name: str, app: str, name: str):
        self.managed_app(user_name, app)
        try:
            self.store.delete(user_name, app, name)
        except SecretError as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.audit("app_secret_deleted", user_name, app, name)
        self.set_status(204)
        self.finish()


def configure_app_secrets(c, data_dir: str | Path) -> AppSecretStore:
    """The hub's store (``<data_dir>/app-secrets/``; the key: JupyterHub's, else the hub's
    own, read at first use) for the spawners and the API, and the API's handlers."""
    store = AppSecretStore(Path(data_dir).resolve() / FOLDER)
    use_store(store)
    existing = c.JupyterHub.extra_handlers if "extra_handlers" in c.JupyterHub else []
    base = r"/api/streamlit/apps/([^/]+)/([^/]+)/secrets"
    c.JupyterHub.extra_handlers = [
        *(h for h in existing if not str(h[0]).startswith(base)),
        (base, AppSecretsAPIHandler, {"store": store}),
        (base + r"/([^/]+)", AppSecretAPIHandler, {"store": store}),
    ]
    template_vars = c.JupyterHub.template_vars if "template_vars" in c.JupyterHub else {}
    c.JupyterHub.template_vars = {**dict(template_vars), "streamlit_app_secrets": True}
    return store
