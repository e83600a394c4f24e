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
to them. The same hook serves ``/hub/api/users/{user}/activity`` with
``OwnServerActivityAPIHandler`` (spawner/activity_guard.py: an app server's token posts
activity only for its own app).

Bad bodies: JupyterHub 6.1.1 answers a JSON list, string, number or ``true`` body, and an
unknown scope (``{"scopes": ["bogus"]}``: its validator raises ``ScopeNotFound``, a
``KeyError``), with a 500; here any body that is not a JSON object, or that JupyterHub's own
request model refuses, is a 400, and an ``expires_in`` of any size or kind gets an answer,
never an exception.
"""

from __future__ import annotations

import math

from jupyterhub.apihandlers.shares import ServerShareCodeAPIHandler, ShareCodeGrantRequest
from jupyterhub.scopes import ScopeNotFound
from pydantic import ValidationError
from tornado import web

from .activity_guard import OwnServerActivityAPIHandler
from .policy import cached_policy, limits_for

_DAY = 86400


def link_problem(policy, owner_groups, owner: str, expires_in) -> tuple[int, str] | None:
    """(status, message) if the policy refuses this link, else None."""
    rule = limits_for(policy, owner_groups).rule
    if not rule.may_share_links:
        return 403, (
            f"Share links are turned off for {owner}'s apps by the group policy. "
            "Share with people or groups instead, or ask an admin."
        )
    longest = rule.max_link_days * _DAY
    asked = 86400 if expires_in is None else expires_in  # JupyterHub's default: one day
    if isinstance(asked, bool) or not isinstance(asked, (int, float)):
        return None  # JupyterHub's own validation answers this one
    if isinstance(asked, float) and not math.isfinite(asked):
        return None  # likewise (it refuses NaN and infinities with a 400)
    if asked > longest:
        # ``asked`` may be an int of any size: compare and print it without a float
        days = f"{asked / _DAY:.4g} days" if asked < 10**9 else "more than 10,000 days"
        return 400, (
            f"A share link of {owner}'s apps may last at most "
            f"{rule.max_link_days:g} days under the group policy; this one asked for "
            f"{days}. Send a smaller expires_in (seconds, at most "
            f"{int(longest)})."
        )
    return None


def share_code_request(body, *, validate: bool = True) -> dict:
    """The share-code request body as an object (``{}`` for none), checked with JupyterHub's
    own request model unless ``validate`` is false, or HTTP 400 (never the exceptions
    JupyterHub 6.1.1 lets become a 500)."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise web.HTTPError(
            400,
            'Expected a JSON object like {"expires_in": 86400} '
            f"(or no body), not a JSON {type(body).__name__}.",
        )
    if not validate:
        return body
    try:
        ShareCodeGrantRequest(**body)
    except ValidationError as e:
        raise web.HTTPError(400, str(e)) from None
    except ScopeNotFound as e:
        raise web.HTTPError(400, str(e.args[0] if e.args else e)) from None
    return body


class PolicyShareCodeAPIHandler(ServerShareCodeAPIHandler):
    def initialize(self, policy_file: str):
        self.policy_file = policy_file

    async def post(self, user_name, server_name=None):
        owner = self.find_user(user_name)
        if (
            server_name is not None
            and owner is not None
            and self.has_scope(f"shares!server={user_name}/{server_name}")
        ):
            # Not an object: a 400 (JupyterHub would fail with a 500). Then the policy, then
            # JupyterHub's own checks, with the exceptions it does not catch made 400s.
            body = share_code_request(self.get_json_body(), validate=False)
            problem = link_problem(
                cached_policy(self.policy_file),
                [g.name for g in owner.groups],
                user_name,
                body.get("expires_in"),
            )
            if problem:
                raise web.HTTPError(problem[0], problem[1])
            share_code_request(body)
        return await super().post(user_name, server_name)


def policy_authenticator(base: type, policy_file: str) -> type:
    """``base`` (an Authenticator class) serving the share-codes API with the policy's rules
    and the activity API with app tokens held to their own app."""

    class StreamlitHubAuthenticator(base):
        def get_handlers(self, app):
            return [
                (
                    r"/api/share-codes/([^/]+)/([^/]*)",
                    PolicyShareCodeAPIHandler,
                    {"policy_file": policy_file},
                ),
                (r"/api/users/([^/]+)/activity", OwnServerActivityAPIHandler),
                *super().get_handlers(app),
            ]

    StreamlitHubAuthenticator.__name__ = StreamlitHubAuthenticator.__qualname__ = (
        f"StreamlitHub{base.__name__}"
    )
    return StreamlitHubAuthenticator
