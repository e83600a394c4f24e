"""Names to suggest in the share dialog (the home page's ``<datalist>``, issue #15.14).

``GET /hub/api/streamlit/share-names/{owner}/{app}?kind=user|group&prefix=al``
answers ``{"kind": "user", "names": ["albert", "alex"], "more": false}``: at most
``LIMIT`` names, sorted, starting with ``prefix`` (any case), and whether more match.

Who may ask: whoever may manage the app's shares, i.e. holds JupyterHub's ``shares`` scope on
that server: its owner when the group policy lets their groups share
(``spawner.hubconfig.sharing_roles``), and admins. Anyone else gets the hub's own answer
to a missing scope (a 404 that does not confirm the app exists, or a 403), as from the
shares API.

Which names, with privacy in mind: only names the asker's own roles let them read
(``read:users:name`` / ``read:groups:name``, the scopes the sharing role grants so that a
sharer can name whom to share with), checked with JupyterHub's own scope filter for each
name. So a deployment that narrows those scopes (``read:users:name!group=sales``) narrows
the suggestions with them, and nobody learns a name they could not already share with. Only
names: not JupyterHub's user list (which needs ``list:users`` and also tells who is an
admin), no groups of a user, no activity. Users are people only (no services), neither the
owner nor the asker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from jupyterhub import orm
from jupyterhub.apihandlers import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

LIMIT = 50
PREFIX_MAX = 100  # longer than any name JupyterHub accepts


def pick(
    rows: Iterable, may_read: Callable[[object], bool], exclude=(), limit: int = LIMIT
) -> tuple[list[str], bool]:
    """The names of the first ``limit`` of ``rows`` (ordered, each with ``.name``) that
    ``may_read`` allows, leaving out ``exclude``; and whether another one followed."""
    names: list[str] = []
    for row in rows:
        if row.name in exclude or not may_read(row):
            continue
        if len(names) == limit:
            return names, True
        names.append(row.name)
    return names, False


def candidates(db, kind: str, prefix: str):
    """The hub's users (``kind="user"``, people only) or groups whose names start with
    ``prefix`` (any case; ``%`` and ``_`` are plain characters), ordered by name in any case."""
    table = orm.User if kind == "user" else orm.Group
    query = db.query(table)
    if prefix:
        query = query.filter(sa.func.lower(table.name).startswith(prefix.lower(), autoescape=True))
    return query.order_by(sa.func.lower(table.name), table.name)


class ShareNamesAPIHandler(APIHandler):
    @needs_scope("shares")
    def get(self, user_name: str, server_name: str):
        owner = self.find_user(user_name)
        if owner is None or server_name not in owner.orm_spawners:
            raise web.HTTPError(404, f"{user_name} has no app named {server_name!r}.")
        kind = self.get_argument("kind", "user")
        if kind not in ("user", "group"):
            raise web.HTTPError(400, "kind must be user or group.")
        prefix = self.get_argument("prefix", "").strip()[:PREFIX_MAX]
        allowed = self.get_scope_filter(f"read:{kind}s:name")
        exclude = {owner.name, self.current_user.name} if kind == "user" else set()
        names, more = pick(
            candidates(self.db, kind, prefix), lambda row: bool(allowed(row, kind)), exclude
        )
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps({"kind": kind, "names": names, "more": more}))
