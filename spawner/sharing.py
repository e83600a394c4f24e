"""The group policy's link rules, enforced on JupyterHub's own share-codes API.

JupyterHub lets anyone holding ``shares`` on a server make share links (share codes) lasting
up to a year. The policy narrows that per group: ``may_share_links`` and ``max_link_days``
(most permissive across the *owner's* groups: the rules are about whose app is shared, so an
admin making a link for alice's app gets alice's limits).

How: ``Authenticator.get_handlers`` is the one hook whose routes tornado matches before
JupyterHub's default ones, so ``policy_authenticator`` subclasses the configured
authenticator to serve ``/hub/api/share-codes/{user}/{server}`` with
``PolicyShareCodeAPIHandler``: JupyterHub's handler, with the policy checked first on
``POST``. Listing and revoking links are JupyterHub's, unchanged. Callers without the
``shares`` scope on that server get JupyterHub's own answer, so the policy is not disclosed
to them.
"""

from __future__ import annotations

from jupyterhub.apihandlers.shares import ServerShareCodeAPIHandler
from tornado import web

from .policy import cached_policy, limits_for

_DAY = 86400


def link_problem(policy, owner_groups, owner: str, expires_in) -> tuple[int, str] | None:
    """(status, message) if the policy refuses this link, else None."""
    rule = limits_for(policy, owner_groups).rule
    if not rule.may_share_links:
        return 403, (f"Share links are turned off for {owner}'s apps by the group policy. "
                     "Share with people or groups instead, or ask an admin.")
    longest = rule.max_link_days * _DAY
    asked = 86400 if expires_in is None else expires_in  # JupyterHub's default: one day
    if isinstance(asked, bool) or not isinstance(asked, (int, float)):
        return None  # JupyterHub's own validation answers this one
    if asked > longest:
        return 400, (f"A share link of {owner}'s apps may last at most "
                     f"{rule.max_link_days:g} days under the group policy; this one asked for "
                     f"{asked / _DAY:g} days. Send a smaller expires_in (seconds, at most "
                     f"{int(longest)}).")
    return None


class PolicyShareCodeAPIHandler(ServerShareCodeAPIHandler):
    def initialize(self, policy_file: str):
        self.policy_file = policy_file

    async def post(self, user_name, server_name=None):
        owner = self.find_user(user_name)
        if (server_name is not None and owner is not None
                and self.has_scope(f"shares!server={user_name}/{server_name}")):
            body = self.get_json_body() or {}
            expires_in = body.get("expires_in") if isinstance(body, dict) else None
            problem = link_problem(cached_policy(self.policy_file),
                                   [g.name for g in owner.groups], user_name, expires_in)
            if problem:
                raise web.HTTPError(problem[0], problem[1])
        return await super().post(user_name, server_name)


def policy_authenticator(base: type, policy_file: str) -> type:
    """``base`` (an Authenticator class) serving the share-codes API with the policy's rules."""

    class StreamlitHubAuthenticator(base):
        def get_handlers(self, app):
            return [(r"/api/share-codes/([^/]+)/([^/]*)", PolicyShareCodeAPIHandler,
                     {"policy_file": policy_file}), *super().get_handlers(app)]

    StreamlitHubAuthenticator.__name__ = StreamlitHubAuthenticator.__qualname__ = \
        f"StreamlitHub{base.__name__}"
    return StreamlitHubAuthenticator
