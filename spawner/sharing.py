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

Consent once per viewer and app (``ConsentOnceAuthorizeHandler``, served the same way at
``/hub/api/oauth2/authorize``). JupyterHub keeps a viewer's approval of an app only as the
OAuth tokens its client was given, and deletes the client, and with it every token, when the
app stops: so each restart (the idle culler's daily one included) asked every viewer again,
though the page says "You are asked this once per app". Here an approval is also kept in the
hub's own database (table ``streamlit_app_consents``), tied to the share it was given under:
it lasts across restarts of the app and of the hub, and ends with the share (the row is
deleted with it, and is only believed while that very share, same id and creation time, still
grants access) or when the app asks for more than was approved. Access by role rather than by
a share (an admin) is remembered while no share grants it.

Bad bodies: JupyterHub 6.1.1 answers a JSON list, string, number or ``true`` body, and an
unknown scope (``{"scopes": ["bogus"]}``: its validator raises ``ScopeNotFound``, a
``KeyError``), with a 500; here any body that is not a JSON object, or that JupyterHub's own
request model refuses, is a 400, and an ``expires_in`` of any size or kind gets an answer,
never an exception.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from jupyterhub import orm
from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler
from jupyterhub.apihandlers.shares import ServerShareCodeAPIHandler, ShareCodeGrantRequest
from jupyterhub.handlers.pages import SpawnPendingHandler
from jupyterhub.scopes import ScopeNotFound
from jupyterhub.utils import utcnow
from pydantic import ValidationError
from tornado import web

from .activity_guard import OwnServerActivityAPIHandler
from .policy import PolicyFile, group_names, limits_for

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
    def initialize(self, policy: PolicyFile):
        self.policy = policy

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
                self.policy.current,
                group_names(owner),
                user_name,
                body.get("expires_in"),
            )
            if problem:
                raise web.HTTPError(problem[0], problem[1])
            share_code_request(body)
        return await super().post(user_name, server_name)


# ---- consent once per viewer and app ------------------------------------------------------

_META = sa.MetaData()
# JupyterHub's tables, as far as the foreign keys below need them (never created from here)
for _name in ("users", "spawners", "shares"):
    sa.Table(_name, _META, sa.Column("id", sa.Integer, primary_key=True))
CONSENTS = sa.Table(
    "streamlit_app_consents",
    _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "user_id",
        sa.Integer,
        sa.ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column(
        "spawner_id", sa.Integer, sa.ForeignKey("spawners.id", ondelete="CASCADE"), nullable=False
    ),
    # the share the approval was given under; NULL: access by role, not by a share
    sa.Column("share_id", sa.Integer, sa.ForeignKey("shares.id", ondelete="CASCADE")),
    sa.Column("share_created_at", sa.DateTime),
    sa.Column("scopes", sa.Text, nullable=False),  # JSON list of the approved scopes
    sa.Column("approved_at", sa.DateTime, nullable=False),
)


def ensure_consents_table(db) -> None:
    """Create ``streamlit_app_consents`` in the hub's database if it is not there (in the
    session's own transaction, so sqlite never waits on itself)."""
    CONSENTS.create(db.connection(), checkfirst=True)
    db.commit()


def granting_shares(db, user, spawner, access_scope: str) -> dict[int, datetime]:
    """The shares (id -> creation time) through which ``user`` (orm) may open ``spawner``:
    shared with them, or with one of their groups, with ``access_scope`` among its scopes."""
    group_ids = [g.id for g in user.groups]
    who = orm.Share.user_id == user.id
    if group_ids:
        who = sa.or_(who, orm.Share.group_id.in_(group_ids))
    shares = db.query(orm.Share).filter(orm.Share.spawner_id == spawner.id, who).all()
    return {s.id: s.created_at for s in shares if access_scope in s.scopes}


def _access_scope(spawner) -> str:
    return f"access:servers!server={spawner.user.name}/{spawner.name}"


def has_consent(db, user, spawner, scopes) -> bool:
    """Did ``user`` approve ``spawner``'s OAuth client for ``scopes``, under a share that
    still grants them access (or, with no such share, by role)?"""
    rows = db.execute(
        sa.select(CONSENTS.c.share_id, CONSENTS.c.share_created_at, CONSENTS.c.scopes).where(
            CONSENTS.c.user_id == user.id, CONSENTS.c.spawner_id == spawner.id
        )
    ).all()
    if not rows:
        return False
    shares = granting_shares(db, user, spawner, _access_scope(spawner))
    wanted = set(scopes)
    for share_id, created_at, approved in rows:
        if not wanted <= set(json.loads(approved)):
            continue
        if share_id is None and not shares:
            return True
        if share_id is not None and shares.get(share_id) == created_at:
            return True
    return False


def record_consent(db, user, spawner, scopes) -> None:
    """``user`` approved ``spawner``'s client for ``scopes``: one row per share that grants
    them access now (one without a share for access by role); earlier rows are replaced."""
    shares = granting_shares(db, user, spawner, _access_scope(spawner))
    db.execute(
        CONSENTS.delete().where(CONSENTS.c.user_id == user.id, CONSENTS.c.spawner_id == spawner.id)
    )
    now = utcnow(with_tz=False)  # as JupyterHub writes its own times
    approved = json.dumps(sorted(set(scopes)))
    db.execute(
        CONSENTS.insert(),
        [
            {
                "user_id": user.id,
                "spawner_id": spawner.id,
                "share_id": share_id,
                "share_created_at": created_at,
                "scopes": approved,
                "approved_at": now,
            }
            for share_id, created_at in (shares.items() or [(None, None)])
        ],
    )
    db.commit()


class ConsentOnceAuthorizeHandler(OAuthAuthorizeHandler):
    """JupyterHub's authorize page and endpoint, asking a viewer once per app and share
    rather than once per start of the app (see the module's docstring)."""

    def needs_oauth_confirm(self, user, oauth_client, requested_scopes):
        if not super().needs_oauth_confirm(user, oauth_client, requested_scopes):
            return False
        spawner = oauth_client.spawner
        if spawner is None:  # a service: JupyterHub's rule
            return True
        ensure_consents_table(self.db)
        return not has_consent(self.db, user.orm_user, spawner, requested_scopes)

    def send_oauth_response(self, headers, body, status):
        # The viewer pressed "Continue" and the hub issued a code: remember the approval.
        if self.request.method == "POST" and status in (302, 303):
            query = parse_qs(urlsplit(headers.get("Location", "")).query)
            client = (
                self.db.query(orm.OAuthClient)
                .filter_by(identifier=self.get_query_argument("client_id", ""))
                .one_or_none()
            )
            user = self.current_user
            if "code" in query and client is not None and client.spawner and user is not None:
                if client.spawner.user_id != user.id:  # an app of one's own never asks
                    ensure_consents_table(self.db)
                    record_consent(
                        self.db,
                        user.orm_user,
                        client.spawner,
                        self.get_arguments("scopes") or ["identify"],
                    )
        super().send_oauth_response(headers, body, status)


class ViewerSpawnPendingHandler(SpawnPendingHandler):
    """``/hub/spawn-pending/<owner>/<app>`` for someone the app is shared with.

    The hub sends anyone opening an app that is starting or stopping here, but JupyterHub's
    page needs the ``servers`` scope on it: a viewer (who opened it from "Shared with me", or
    whose open tab reloaded as the owner stopped it) got "404: No access to resources". A
    viewer now gets the not-running page saying the app is starting or stopping, which
    follows it every 2 s; once it is running they get the app, once stopped the page for a
    stopped app. Everyone else gets JupyterHub's page (or its 404).
    """

    @web.authenticated
    async def get(self, user_name, server_name=""):
        owner = self.find_user(user_name)
        if (
            owner is None
            or server_name not in owner.spawners
            or self.has_scope(f"servers!server={user_name}/{server_name}")
            or not self.has_scope(f"access:servers!server={user_name}/{server_name}")
        ):
            return await super().get(user_name, server_name)
        spawner = owner.spawners[server_name]
        app_url = owner.server_url(server_name)
        if spawner.ready:
            self.redirect(app_url)
            return
        html = await self.render_template(
            "not_running.html",
            user=owner,
            server_name=server_name,
            spawn_url="",
            streamlit_pending=spawner.pending or "",
            streamlit_app_url=app_url,
        )
        self.finish(html)


def policy_authenticator(base: type, policy: PolicyFile) -> type:
    """``base`` (an Authenticator class) serving the share-codes API with the policy's rules,
    the activity API with app tokens held to their own app, the OAuth authorize step asking
    a viewer once per app, and the pending page for viewers of a starting or stopping app."""

    class StreamlitHubAuthenticator(base):
        def get_handlers(self, app):
            db = getattr(app, "db", None)
            if db is not None:
                ensure_consents_table(db)
            return [
                (
                    r"/api/share-codes/([^/]+)/([^/]*)",
                    PolicyShareCodeAPIHandler,
                    {"policy": policy},
                ),
                (r"/api/users/([^/]+)/activity", OwnServerActivityAPIHandler),
                (r"/api/oauth2/authorize", ConsentOnceAuthorizeHandler),
                (r"/spawn-pending/([^/]+)", ViewerSpawnPendingHandler),
                (r"/spawn-pending/([^/]+)/([^/]+)", ViewerSpawnPendingHandler),
                *super().get_handlers(app),
            ]

    StreamlitHubAuthenticator.__name__ = StreamlitHubAuthenticator.__qualname__ = (
        f"StreamlitHub{base.__name__}"
    )
    return StreamlitHubAuthenticator
