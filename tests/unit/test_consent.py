"""Consent once per viewer and app (spawner/sharing.py), on JupyterHub's own database model:
an approval outlives the app's OAuth client (deleted at every stop) and ends with the share it
was given under. The browser test is tests/browser/test_viewer_consent_once.py."""

import json
from types import SimpleNamespace

import pytest
from jupyterhub import orm

from spawner.policy import PolicyFile
from spawner.sharing import (
    CONSENTS,
    ConsentOnceAuthorizeHandler,
    ensure_consents_table,
    granting_shares,
    has_consent,
    policy_authenticator,
    record_consent,
)

GROUPS_SCOPE = ["read:users:groups!user"]


@pytest.fixture
def db(tmp_path):
    # a file, as the hub's: JupyterHub turns sqlite's foreign keys on for every connection
    session = orm.new_session_factory(f"sqlite:///{tmp_path / 'hub.sqlite'}")()
    ensure_consents_table(session)
    yield session
    session.close()


def user(db, name):
    u = orm.User(name=name)
    db.add(u)
    db.commit()
    return u


def app(db, owner, name="demo"):
    sp = orm.Spawner(user=owner, name=name)
    db.add(sp)
    db.commit()
    return sp


def rows(db):
    return db.execute(CONSENTS.select()).all()


def test_no_approval_no_consent(db):
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    orm.Share.grant(db, demo, carol)
    assert has_consent(db, carol, demo, GROUPS_SCOPE) is False


def test_an_approval_under_a_share_holds_until_the_share_is_revoked(db):
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    share = orm.Share.grant(db, demo, carol)
    record_consent(db, carol, demo, GROUPS_SCOPE)
    (row,) = rows(db)
    assert (row.user_id, row.spawner_id, row.share_id) == (carol.id, demo.id, share.id)
    assert row.share_created_at == share.created_at
    assert json.loads(row.scopes) == GROUPS_SCOPE
    # the app's OAuth client and its tokens are gone after a stop: the approval is not
    db.query(orm.OAuthClient).delete()
    db.commit()
    assert has_consent(db, carol, demo, GROUPS_SCOPE) is True
    assert has_consent(db, carol, demo, []) is True  # asking for less is covered
    # more than was approved is asked again
    assert has_consent(db, carol, demo, [*GROUPS_SCOPE, "read:users"]) is False
    # another viewer, or another app, is not covered
    bob = user(db, "bob")
    orm.Share.grant(db, demo, bob)
    assert has_consent(db, bob, demo, GROUPS_SCOPE) is False
    other = app(db, alice, "other")
    orm.Share.grant(db, other, carol)
    assert has_consent(db, carol, other, GROUPS_SCOPE) is False
    # revoking the share ends it, and the database removes the row with the share
    orm.Share.revoke(db, demo, carol)
    assert has_consent(db, carol, demo, GROUPS_SCOPE) is False
    assert [r.share_id for r in rows(db)] == []


def test_sharing_again_after_a_revocation_asks_again_even_if_the_share_id_comes_back(db):
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    first = orm.Share.grant(db, demo, carol)
    record_consent(db, carol, demo, GROUPS_SCOPE)
    first_id, first_created = first.id, first.created_at
    # a database that does not enforce the foreign key keeps the row; the share it names
    # is gone and a new one (sqlite may reuse the id) was made later
    db.execute(CONSENTS.delete())
    db.execute(
        CONSENTS.insert(),
        [
            {
                "user_id": carol.id,
                "spawner_id": demo.id,
                "share_id": first_id,
                "share_created_at": first_created,
                "scopes": json.dumps(GROUPS_SCOPE),
                "approved_at": first_created,
            }
        ],
    )
    db.commit()
    db.execute(orm.Share.__table__.delete())
    db.commit()
    db.expunge(first)
    again = orm.Share.grant(db, demo, carol)
    again.created_at = first_created.replace(year=first_created.year + 1)
    db.commit()
    assert again.id == first_id  # sqlite gave the id out again
    assert has_consent(db, carol, demo, GROUPS_SCOPE) is False


def test_changing_what_a_share_allows_keeps_the_approval(db):
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    orm.Share.grant(db, demo, carol)
    record_consent(db, carol, demo, GROUPS_SCOPE)
    orm.Share.grant(db, demo, carol, scopes=["start:servers!server=alice/demo"])  # may wake
    assert has_consent(db, carol, demo, GROUPS_SCOPE) is True
    orm.Share.revoke(db, demo, carol, scopes=["start:servers!server=alice/demo"])
    assert has_consent(db, carol, demo, GROUPS_SCOPE) is True


def test_a_group_share_counts_while_the_viewer_is_in_the_group(db):
    alice, carol = user(db, "alice"), user(db, "carol")
    viewers = orm.Group(name="viewers")
    db.add(viewers)
    carol.groups.append(viewers)
    db.commit()
    demo = app(db, alice)
    share = orm.Share.grant(db, demo, viewers)
    assert granting_shares(db, carol, demo, "access:servers!server=alice/demo") == {
        share.id: share.created_at
    }
    record_consent(db, carol, demo, GROUPS_SCOPE)
    assert has_consent(db, carol, demo, GROUPS_SCOPE) is True
    carol.groups.remove(viewers)
    db.commit()
    assert has_consent(db, carol, demo, GROUPS_SCOPE) is False


def test_a_share_without_access_grants_nothing(db):
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    orm.Share.grant(db, demo, carol, scopes=["start:servers!server=alice/demo"])
    assert granting_shares(db, carol, demo, "access:servers!server=alice/demo") == {}


def test_access_by_role_is_remembered_while_no_share_grants_it(db):
    alice, admin = user(db, "alice"), user(db, "admin")
    demo = app(db, alice)
    record_consent(db, admin, demo, GROUPS_SCOPE)
    (row,) = rows(db)
    assert row.share_id is None and row.share_created_at is None
    assert has_consent(db, admin, demo, GROUPS_SCOPE) is True
    # a share made later is a new grant: asked once more under it
    orm.Share.grant(db, demo, admin)
    assert has_consent(db, admin, demo, GROUPS_SCOPE) is False


def test_a_new_approval_replaces_the_old_rows(db):
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    orm.Share.grant(db, demo, carol)
    record_consent(db, carol, demo, GROUPS_SCOPE)
    record_consent(db, carol, demo, [*GROUPS_SCOPE, "read:users"])
    (row,) = rows(db)
    assert json.loads(row.scopes) == sorted([*GROUPS_SCOPE, "read:users"])


def test_removing_the_app_or_the_viewer_removes_their_approvals(db):
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    orm.Share.grant(db, demo, carol)
    record_consent(db, carol, demo, GROUPS_SCOPE)
    db.delete(demo)
    db.commit()
    assert rows(db) == []
    demo = app(db, alice)
    orm.Share.grant(db, demo, carol)
    record_consent(db, carol, demo, GROUPS_SCOPE)
    db.delete(carol)
    db.commit()
    assert rows(db) == []


def test_the_table_is_made_once_and_kept(db):
    ensure_consents_table(db)  # again: no error, rows stay
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    record_consent(db, carol, demo, GROUPS_SCOPE)
    ensure_consents_table(db)
    assert len(rows(db)) == 1


def test_the_authenticator_serves_the_authorize_step_and_makes_the_table(tmp_path):
    from jupyterhub.auth import DummyAuthenticator

    session = orm.new_session_factory(f"sqlite:///{tmp_path / 'hub.sqlite'}")()

    class App:
        db = session

    handlers = policy_authenticator(DummyAuthenticator, PolicyFile("p.yaml"))().get_handlers(App())
    assert (r"/api/oauth2/authorize", ConsentOnceAuthorizeHandler) in handlers
    assert "streamlit_app_consents" in session.get_bind().dialect.get_table_names(
        session.connection()
    )
    session.close()


class Handler(ConsentOnceAuthorizeHandler):
    """The authorize handler without tornado: its database, request and user stood in."""

    def __init__(self, db, current, method="GET", query=None, scopes=()):
        self.application = SimpleNamespace(settings={"db": db, "oauth_no_confirm_list": set()})
        self.request = SimpleNamespace(method=method)
        self._query = query or {}
        self._scopes = list(scopes)
        self._current = current
        self.sent = None

    @property
    def current_user(self):
        return self._current

    def get_query_argument(self, name, default=None):
        return self._query.get(name, default)

    def get_arguments(self, name):
        return self._scopes if name == "scopes" else []


def wrapped(orm_user, spawners=None):
    """JupyterHub's User wrapper, as far as the authorize step reads it."""
    return SimpleNamespace(
        orm_user=orm_user, id=orm_user.id, name=orm_user.name, spawners=spawners or {}
    )


def client_for(db, spawner):
    client = orm.OAuthClient(identifier=f"jupyterhub-user-alice-{spawner.name}")
    db.add(client)
    spawner.oauth_client = client
    db.commit()
    return client


def test_the_authorize_step_asks_until_approved_then_never_again_for_that_share(db, monkeypatch):
    from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler

    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    orm.Share.grant(db, demo, carol)
    client = client_for(db, demo)
    h = Handler(db, wrapped(carol))
    assert h.needs_oauth_confirm(wrapped(carol), client, set(GROUPS_SCOPE)) is True

    sent = []
    monkeypatch.setattr(
        OAuthAuthorizeHandler, "send_oauth_response", lambda self, *a: sent.append(a)
    )
    # an error sent back to the app is no approval; nor is the GET that needs none
    for method, location in [
        ("POST", "http://alice.x/user/alice/demo/oauth_callback?error=access_denied"),
        ("GET", "http://alice.x/user/alice/demo/oauth_callback?code=c&state=s"),
    ]:
        Handler(
            db, wrapped(carol), method, {"client_id": client.identifier}, GROUPS_SCOPE
        ).send_oauth_response({"Location": location}, "", 302)
    assert rows(db) == [] and len(sent) == 2
    # "Continue": the code goes back to the app and the approval is kept
    post = Handler(db, wrapped(carol), "POST", {"client_id": client.identifier}, GROUPS_SCOPE)
    post.send_oauth_response(
        {"Location": "http://alice.x/user/alice/demo/oauth_callback?code=c&state=s"}, "", 302
    )
    assert len(sent) == 3 and len(rows(db)) == 1
    # the app stops (its client and tokens deleted) and starts again with a new client
    db.delete(client)
    db.commit()
    client = client_for(db, demo)
    assert h.needs_oauth_confirm(wrapped(carol), client, set(GROUPS_SCOPE)) is False
    orm.Share.revoke(db, demo, carol)
    orm.Share.grant(db, demo, carol)
    assert h.needs_oauth_confirm(wrapped(carol), client, set(GROUPS_SCOPE)) is True


def test_the_owner_and_services_are_left_to_jupyterhub(db, monkeypatch):
    from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler

    alice = user(db, "alice")
    demo = app(db, alice)
    client = client_for(db, demo)
    monkeypatch.setattr(OAuthAuthorizeHandler, "send_oauth_response", lambda self, *a: None)
    Handler(
        db, wrapped(alice), "POST", {"client_id": client.identifier}, GROUPS_SCOPE
    ).send_oauth_response({"Location": "http://x/cb?code=c"}, "", 302)
    assert rows(db) == []  # one's own app never asks: nothing to keep
    service = orm.OAuthClient(identifier="service-audit")
    db.add(service)
    db.commit()
    carol = user(db, "carol")
    assert Handler(db, wrapped(carol)).needs_oauth_confirm(wrapped(carol), service, set()) is True
    # an unknown client id on the POST is no approval either
    Handler(db, wrapped(carol), "POST", {"client_id": "nope"}, GROUPS_SCOPE).send_oauth_response(
        {"Location": "http://x/cb?code=c"}, "", 302
    )
    assert rows(db) == []


@pytest.mark.parametrize("status, kept", [(302, True), (303, True), (200, False), (400, False)])
def test_only_a_redirect_carrying_a_code_is_an_approval(db, monkeypatch, status, kept):
    from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler

    monkeypatch.setattr(OAuthAuthorizeHandler, "send_oauth_response", lambda self, *a: None)
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    orm.Share.grant(db, demo, carol)
    client = client_for(db, demo)
    Handler(db, wrapped(carol), "POST", {"client_id": client.identifier}, []).send_oauth_response(
        {"Location": "http://alice.x/user/alice/demo/oauth_callback?code=c"}, "", status
    )
    assert len(rows(db)) == (1 if kept else 0)
    if kept:  # nothing ticked is JupyterHub's "identify"
        assert json.loads(rows(db)[0].scopes) == ["identify"]


def test_no_signed_in_user_no_approval(db, monkeypatch):
    from jupyterhub.apihandlers.auth import OAuthAuthorizeHandler

    monkeypatch.setattr(OAuthAuthorizeHandler, "send_oauth_response", lambda self, *a: None)
    alice = user(db, "alice")
    client = client_for(db, app(db, alice))
    Handler(db, None, "POST", {"client_id": client.identifier}, GROUPS_SCOPE).send_oauth_response(
        {"Location": "http://x/cb?code=c"}, "", 302
    )
    assert rows(db) == []


def test_jupyterhubs_own_no_is_kept(db):
    # one's own app, and an app already approved in this run (a token of its client): no page
    alice, carol = user(db, "alice"), user(db, "carol")
    demo = app(db, alice)
    client = client_for(db, demo)
    own = {"demo": SimpleNamespace(oauth_client_id=client.identifier)}
    h = Handler(db, wrapped(alice, own))
    assert h.needs_oauth_confirm(wrapped(alice, own), client, set(GROUPS_SCOPE)) is False
    orm.Share.grant(db, demo, carol)
    # (a token as the hub's OAuth provider stores one, scopes as the viewer approved them)
    db.add(
        orm.APIToken(user=carol, client_id=client.identifier, scopes=GROUPS_SCOPE, token="t" * 32)
    )
    db.commit()
    assert (
        Handler(db, wrapped(carol)).needs_oauth_confirm(wrapped(carol), client, set(GROUPS_SCOPE))
        is False
    )
    assert rows(db) == []


# ---- the pending page for viewers --------------------------------------------------------
class Pending:
    """ViewerSpawnPendingHandler without tornado: who asks, what they may, what it sends."""

    def __init__(self, owner, scopes, monkeypatch):
        from spawner.sharing import ViewerSpawnPendingHandler

        self.calls = []
        calls = self.calls

        async def jupyterhubs(handler, user_name, server_name=""):
            calls.append(("jupyterhub", user_name, server_name))

        monkeypatch.setattr(
            "jupyterhub.handlers.pages.SpawnPendingHandler.get", jupyterhubs, raising=True
        )

        class H(ViewerSpawnPendingHandler):
            current_user = SimpleNamespace(name="carol")

            def find_user(self, name):
                return owner if owner is not None and name == owner.name else None

            def has_scope(self, scope):
                return scope in scopes

            async def render_template(self, name, **ns):
                calls.append(("render", name, ns))
                return "<html>"

            def redirect(self, url):
                calls.append(("redirect", url))

            def finish(self, html):
                calls.append(("finish", html))

        self.handler = object.__new__(H)

    def get(self, user_name, server_name):
        import asyncio

        # web.authenticated has let the signed-in viewer through: call what it wraps
        asyncio.run(type(self.handler).get.__wrapped__(self.handler, user_name, server_name))
        return self.calls


def _owner(pending=None, ready=False):
    spawner = SimpleNamespace(pending=pending, ready=ready)
    return SimpleNamespace(
        name="alice",
        spawners={"demo": spawner},
        server_url=lambda name: f"http://alice.x/user/alice/{name}/",
    )


ACCESS = {"access:servers!server=alice/demo"}


@pytest.mark.parametrize("pending", ["spawn", "stop"])
def test_a_viewer_of_a_pending_app_gets_the_page_that_follows_it(monkeypatch, pending):
    owner = _owner(pending=pending)
    calls = Pending(owner, ACCESS, monkeypatch).get("alice", "demo")
    assert calls == [
        (
            "render",
            "not_running.html",
            {
                "user": owner,
                "server_name": "demo",
                "spawn_url": "",
                "streamlit_pending": pending,
                "streamlit_app_url": "http://alice.x/user/alice/demo/",
            },
        ),
        ("finish", "<html>"),
    ]


def test_a_viewer_of_a_running_app_goes_to_it(monkeypatch):
    calls = Pending(_owner(ready=True), ACCESS, monkeypatch).get("alice", "demo")
    assert calls == [("redirect", "http://alice.x/user/alice/demo/")]


def test_a_viewer_of_a_stopped_app_gets_the_stopped_page(monkeypatch):
    calls = Pending(_owner(), ACCESS, monkeypatch).get("alice", "demo")
    assert calls[0][0] == "render" and calls[0][2]["streamlit_pending"] == ""


@pytest.mark.parametrize(
    "owner, scopes, name",
    [
        (_owner(pending="spawn"), ACCESS | {"servers!server=alice/demo"}, "demo"),  # may manage
        (_owner(pending="spawn"), set(), "demo"),  # no access: JupyterHub's 404
        (None, ACCESS, "demo"),  # no such owner
        (_owner(pending="spawn"), ACCESS, "other"),  # no such app
    ],
    ids=["owner-or-admin", "no-access", "no-owner", "no-app"],
)
def test_everyone_else_gets_jupyterhubs_page(monkeypatch, owner, scopes, name):
    calls = Pending(owner, scopes, monkeypatch).get("alice", name)
    assert calls == [("jupyterhub", "alice", name)]
