"""The group policy at the hub: what each start path and page asks (thin I/O edge).

- ``running_apps(user, exclude)``: the user's apps that count against their limits: ready,
  or admitted by the policy and still starting.
- ``QuotaAPIHandler``: ``GET /hub/api/streamlit/quota``, the signed-in user's limits and use.
- ``named_server_limit(handler)``: ``JupyterHub.named_server_limit_per_user`` from ``max_apps``
  of the app's owner (the request's route, ``spawner.routes``, names the owner and the app).
- ``template_quota(user)``: the home page's "2 of 3 apps running; sizes: Small, Medium" (the
  page refreshes it from the quota API after each start, stop or delete, and when shown again).
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers import APIHandler
from tornado import web

from .policy import PolicyFile, RunningApp, group_names, limits_for, quota_summary, summary_line
from .routes import SERVER_API, SPAWN, route_of


def running_apps(user, exclude=None) -> list[RunningApp]:
    out = []
    for name, sp in user.spawners.items():
        if not name or sp is exclude:
            continue
        if sp.ready or getattr(sp, "_quota_admitted", False):
            out.append(RunningApp(name, getattr(sp, "app_profile", None)))
    return out


def summary_for(policy: PolicyFile, user) -> dict:
    policy = policy.current
    kept = len([n for n in user.orm_spawners if n])
    s = quota_summary(policy, group_names(user), running_apps(user), kept)
    s["line"] = summary_line(s)
    return s


class QuotaAPIHandler(APIHandler):
    """GET /hub/api/streamlit/quota: the current user's effective limits and usage."""

    def initialize(self, policy: PolicyFile):
        self.policy = policy

    async def get(self):
        user = self.current_user
        if user is None or getattr(user, "kind", "user") != "user":
            raise web.HTTPError(403, "Sign in as a user to see your app quota.")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(summary_for(self.policy, user)))


def make_named_server_limit(policy: PolicyFile):
    def named_server_limit(handler) -> int:
        user = handler.current_user
        server = None
        route = route_of(handler)
        if route is not None and route.name in (SPAWN, SERVER_API):
            # a start or create names the app and its owner: theirs is the limit
            user = handler.find_user(route.user) or user
            server = route.server
        if user is None:
            return 1
        limits = limits_for(policy.current, group_names(user))
        if limits.rule.max_apps > 0:
            return limits.rule.max_apps
        exists = server is not None and server in getattr(user, "orm_spawners", {})
        if handler.request.method in ("POST", "PUT") and not exists:
            raise web.HTTPError(
                403, f"{user.name} may open apps shared with them but not create apps."
            )
        return 1  # pages only display this number

    return named_server_limit


def make_template_quota(policy: PolicyFile):
    def template_quota(user):
        if user is None or getattr(user, "kind", "user") != "user":
            return None
        return summary_for(policy, user)

    return template_quota
