"""An app server's token posts activity only for its own app.

JupyterHub 6.1.1 gives every server token ``users:activity!user`` (``User.spawn`` adds it
whatever ``Spawner.server_token_scopes`` says), and ``POST /hub/api/users/{name}/activity``
applies whatever ``servers`` its body names. So app code holding its server's token could
post activity for its owner's *other* apps and keep them from the idle culler.

``OwnServerActivityAPIHandler`` is JupyterHub's ``ActivityAPIHandler`` with one check first:
when the calling credentials may reach only named servers (their ``access:servers`` scope is
filtered by ``server`` and nothing broader: no ``user`` or ``group`` filter, not unfiltered),
the body's ``servers`` may name only those servers; anything else is a 403 naming the app the
token belongs to. An app server's token reaches exactly its own server, so it posts only for
its own app; the user-level ``last_activity`` is left as JupyterHub has it. People (cookies,
their own tokens), admins and services without a server-limited ``access:servers`` (the idle
culler) are not affected, and callers without ``users:activity`` on that user get
JupyterHub's own answer. ``policy_authenticator`` (spawner/sharing.py) serves it ahead of
JupyterHub's handler.
"""

from __future__ import annotations

import inspect

from jupyterhub.apihandlers.users import ActivityAPIHandler
from tornado import web


def reachable_servers(parsed_scopes) -> frozenset[str] | None:
    """The ``user/server`` names the credentials' ``access:servers`` is limited to, or None
    when it is not limited to named servers (absent, unfiltered, or filtered by user or
    group too)."""
    access = parsed_scopes.get("access:servers")
    if not isinstance(access, dict) or set(access) != {"server"}:
        return None
    return frozenset(access["server"])


def _names(names, most: int = 3) -> str:
    shown = [repr(n if len(n) <= 60 else n[:57] + "...") for n in names[:most]]
    more = len(names) - most
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def activity_problem(parsed_scopes, user_name: str, servers) -> str | None:
    """Why these credentials may not post activity for ``servers`` of ``user_name`` (a
    sentence for the 403), or None when they may (or the body is JupyterHub's to judge)."""
    reachable = reachable_servers(parsed_scopes)
    if reachable is None or not isinstance(servers, dict) or not servers:
        return None
    own = sorted(s.split("/", 1)[1] for s in reachable if s.split("/", 1)[0] == user_name)
    others = sorted(name for name in servers if name not in own)
    if not others:
        return None
    apps = _names(sorted(reachable))
    return (
        f"This token may post activity only for the app it belongs to ({apps}), not "
        f"for {user_name}'s {_names(others)}. Post each app's activity with that app's "
        "own token, or use a token of the person who owns the app."
    )


class OwnServerActivityAPIHandler(ActivityAPIHandler):
    async def post(self, user_name):
        if self.has_scope(f"users:activity!user={user_name}") and self.find_user(user_name):
            body = self.get_json_body()
            if isinstance(body, dict):
                problem = activity_problem(self.parsed_scopes, user_name, body.get("servers"))
                if problem:
                    raise web.HTTPError(403, problem)
        result = super().post(user_name)  # a plain method in 6.1.1
        if inspect.isawaitable(result):
            await result
