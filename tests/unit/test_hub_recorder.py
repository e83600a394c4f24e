"""The hub's audit recorder (spawner/audit/hub_recorder.py): which finished hub requests become
which events, against JupyterHub's own database models (sqlite in memory) and a stand-in for
its request handler. tests/integration/test_audit.py asks the same of a real hub."""

import json
import logging
import socket
from types import SimpleNamespace

import pytest
from jupyterhub import orm
from tornado.httputil import HTTPHeaders

from spawner.audit.hub_recorder import HubAuditRecorder

CLIENT = "jupyterhub-user-alice-demo"
CHALLENGE = "c" * 43


class Sender:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite:///:memory:")()
    alice, carol = orm.User(name="alice"), orm.User(name="carol")
    session.add_all([alice, carol])
    session.commit()
    spawner = orm.Spawner(name="demo", user=alice, user_options={"profile": "small"})
    spawner.oauth_client = orm.OAuthClient(identifier=CLIENT, redirect_uri="/cb")
    service_client = orm.OAuthClient(identifier="service-audit", redirect_uri="/cb2")
    session.add_all([spawner, service_client])
    session.commit()
    yield session
    session.close()


def viewer(db, name="carol"):
    row = db.query(orm.User).filter_by(name=name).one()
    return SimpleNamespace(
        name=name, id=row.id, kind="user", admin=False, groups=[SimpleNamespace(name="g")]
    )


def issue_code(db, user_name="carol", challenge=CHALLENGE, client=CLIENT, expires_in=300):
    user = db.query(orm.User).filter_by(name=user_name).one()
    db.add(
        orm.OAuthCode(
            client_id=client,
            user=user,
            code="x",
            code_challenge=challenge,
            expires_at=int(orm.OAuthCode.now() + expires_in),
        )
    )
    db.commit()


class Handler:
    """What the recorder reads of JupyterHub's handler once the request has finished."""

    def __init__(
        self,
        path,
        method="GET",
        status=200,
        user=None,
        args=None,
        body=b"",
        db=None,
        base_url="/hub/",
        users=None,
    ):
        self.request = SimpleNamespace(
            path=path,
            method=method,
            body=body,
            headers=HTTPHeaders({"User-Agent": "UA"}),
            connection=SimpleNamespace(
                context=SimpleNamespace(address=("127.0.0.1", 5), address_family=socket.AF_INET)
            ),
        )
        self.hub = SimpleNamespace(base_url=base_url)
        self.settings = {}
        self.current_user = user
        self.db = db
        self._status = status
        self._args = args or {}
        self._users = users or {}

    def get_status(self):
        return self._status

    def get_argument(self, name, default=None):
        return self._args.get(name, default)

    def find_user(self, name):
        return self._users.get(name)


@pytest.fixture
def rec(tmp_path):
    r = HubAuditRecorder(str(tmp_path), "http://127.0.0.1:1/x", "t", trusted_proxies=[])
    r.sender = Sender()
    return r


AUTHORIZE = "/hub/api/oauth2/authorize"
AUTH_ARGS = {"client_id": CLIENT, "code_challenge": CHALLENGE}


def authorize_event(db, **kw):
    return {
        "type": "authorize",
        "owner": "alice",
        "app": "demo",
        "viewer": "carol",
        "viewer_groups": ["g"],
        "profile": "small",
        "client": "127.0.0.1",
        "user_agent": "UA",
        **kw,
    }


def fields(event):
    return {k: v for k, v in event.items() if k not in ("id", "time")}


# ---- authorize --------------------------------------------------------------------------------
def test_an_authorization_that_issued_a_code_is_allowed(rec, db):
    issue_code(db)
    rec.observe(Handler(AUTHORIZE, status=302, user=viewer(db), args=AUTH_ARGS, db=db))
    assert [fields(e) for e in rec.sender.events] == [authorize_event(db, outcome="allowed")]


def test_a_refusal_is_recorded_without_a_code(rec, db):
    rec.observe(Handler(AUTHORIZE, status=403, user=viewer(db), args=AUTH_ARGS, db=db))
    assert [fields(e) for e in rec.sender.events] == [authorize_event(db, outcome="refused")]


@pytest.mark.parametrize(
    "case",
    [
        "no code",  # an OAuth error redirected back to the app
        "another challenge",  # an earlier sign-in's code, not this request's
        "another viewer",
        "another client",
        "expired",
        "no challenge sent",
    ],
)
def test_a_redirect_without_this_requests_code_is_no_authorization(rec, db, case):
    args = dict(AUTH_ARGS)
    if case == "another challenge":
        issue_code(db, challenge="d" * 43)
    elif case == "another viewer":
        issue_code(db, user_name="alice")
    elif case == "another client":
        issue_code(db, client="service-audit")
    elif case == "expired":
        issue_code(db, expires_in=-1)
    elif case == "no challenge sent":
        issue_code(db)
        del args["code_challenge"]
    rec.observe(Handler(AUTHORIZE, status=302, user=viewer(db), args=args, db=db))
    assert rec.sender.events == []


def test_a_code_without_pkce_is_matched_without_a_challenge(rec, db):
    issue_code(db, challenge=None)
    args = {"client_id": CLIENT}
    rec.observe(Handler(AUTHORIZE, status=302, user=viewer(db), args=args, db=db))
    assert [e["outcome"] for e in rec.sender.events] == ["allowed"]


@pytest.mark.parametrize(
    "status, user, args",
    [
        (302, None, AUTH_ARGS),  # to the login page: nobody signed in yet
        (403, None, AUTH_ARGS),
        (200, "carol", AUTH_ARGS),  # the consent page: its POST decides
        (400, "carol", AUTH_ARGS),
        (403, "carol", {}),  # no client named
        (403, "carol", {"client_id": "ghost"}),
        (403, "carol", {"client_id": "service-audit"}),  # a service's client, not an app's
    ],
)
def test_authorize_requests_that_are_no_authorization_of_an_app(rec, db, status, user, args):
    issue_code(db)
    who = viewer(db) if user else None
    rec.observe(Handler(AUTHORIZE, status=status, user=who, args=args, db=db))
    assert rec.sender.events == []


def test_authorize_under_a_base_url_and_nowhere_else(rec, db):
    issue_code(db)
    h = Handler("/jh" + AUTHORIZE, status=403, user=viewer(db), args=AUTH_ARGS, db=db)
    h.hub.base_url = "/jh/hub/"
    rec.observe(h)
    assert [e["outcome"] for e in rec.sender.events] == ["refused"]
    # an app's own URL, or the hub's prefix under another base URL: not the hub's authorize
    for path in ("/user/alice/demo" + AUTHORIZE, "/jh" + AUTHORIZE, AUTHORIZE + "/"):
        rec.observe(Handler(path, status=403, user=viewer(db), args=AUTH_ARGS, db=db))
    assert len(rec.sender.events) == 1


# ---- stops ------------------------------------------------------------------------------------
def owner_user(db):
    return SimpleNamespace(
        name="alice",
        kind="user",
        admin=False,
        spawners={},
        orm_spawners={"demo": db.query(orm.Spawner).filter_by(name="demo").one()},
    )


def test_a_stop_through_the_api(rec, db):
    alice = owner_user(db)
    h = Handler(
        "/hub/api/users/alice/servers/demo",
        "DELETE",
        204,
        user=alice,
        db=db,
        users={"alice": alice},
    )
    rec.observe(h)
    assert [fields(e) for e in rec.sender.events] == [
        {
            "type": "app_stop",
            "owner": "alice",
            "app": "demo",
            "actor": "alice",
            "reason": "user",
            "profile": "small",
            "client": "127.0.0.1",
        }
    ]


def test_a_stop_names_the_app_as_jupyterhub_does(rec, db):
    admin = SimpleNamespace(name="root", kind="user", admin=True)
    h = Handler("/jh/hub/api/users/al%40ice/servers/my%20app", "DELETE", 202, user=admin, db=db)
    h.hub.base_url = "/jh/hub/"
    rec.observe(h)
    (event,) = rec.sender.events
    assert (event["owner"], event["app"], event["reason"]) == ("al@ice", "my app", "admin")


@pytest.mark.parametrize(
    "path, method, status",
    [
        ("/hub/api/users/alice/servers/demo", "DELETE", 400),  # refused: nothing stopped
        ("/hub/api/users/alice/servers/demo", "DELETE", 302),
        ("/hub/api/users/alice/servers/demo", "POST", 201),  # a start: the spawner records it
        ("/hub/api/users/alice/servers/", "DELETE", 204),  # the default server: not an app
        ("/hub/api/users/alice/server", "DELETE", 204),
        ("/hub/api/users/alice/servers/demo/", "DELETE", 204),  # not JupyterHub's route
        ("/hub/api/users/alice/servers/demo/progress", "DELETE", 204),
        ("/user/alice/demo/hub/api/users/alice/servers/demo", "DELETE", 204),
        ("/hub/spawn/alice/demo", "DELETE", 204),
    ],
)
def test_what_is_no_stop(rec, db, path, method, status):
    rec.observe(Handler(path, method, status, user=owner_user(db), db=db))
    assert rec.sender.events == []


# ---- shares -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, method, body, kind, extra",
    [
        (
            "/hub/api/shares/alice/demo",
            "POST",
            {"user": "carol"},
            "share_granted",
            {"user": "carol"},
        ),
        ("/hub/api/shares/alice/demo", "PATCH", {"group": "g"}, "share_revoked", {"group": "g"}),
        ("/hub/api/shares/alice/demo", "DELETE", {}, "share_revoked", {}),
        (
            "/hub/api/share-codes/alice/demo",
            "POST",
            {"expires_in": 60, "user": 5},
            "share_granted",
            {"link": True, "expires_in": 60},
        ),
        (
            "/hub/api/share-codes/alice/demo",
            "DELETE",
            {"expires_in": "60"},
            "share_revoked",
            {"link": True},
        ),
    ],
)
def test_shares_and_share_links(rec, db, path, method, body, kind, extra):
    alice = owner_user(db)
    rec.observe(Handler(path, method, 200, user=alice, body=json.dumps(body).encode(), db=db))
    (event,) = rec.sender.events
    assert fields(event) == {
        "type": kind,
        "owner": "alice",
        "app": "demo",
        "actor": "alice",
        "client": "127.0.0.1",
        "extra": extra,
    }


@pytest.mark.parametrize(
    "path, method, status",
    [
        ("/hub/api/shares/alice/demo", "GET", 200),  # a listing changes nothing
        ("/hub/api/shares/alice/demo", "POST", 400),
        ("/hub/api/shares/alice/demo/", "POST", 200),
        ("/hub/api/shares/alice/", "POST", 200),  # the default server: not an app
        ("/hub/api/shares/alice", "POST", 200),
        ("/hub/api/share-codes/alice/demo", "GET", 200),
        ("/user/alice/demo/hub/api/shares/alice/demo", "POST", 200),
    ],
)
def test_what_is_no_share(rec, db, path, method, status):
    rec.observe(Handler(path, method, status, user=owner_user(db), body=b"{}", db=db))
    assert rec.sender.events == []


def test_a_share_body_that_is_not_an_object_is_no_detail(rec, db):
    for body in (b"[1]", b"not json", b""):
        h = Handler("/hub/api/shares/alice/demo", "POST", 200, user=owner_user(db), body=body)
        rec.observe(h)
    assert [e["extra"] for e in rec.sender.events] == [{}, {}, {}]


# ---- accepted share links -------------------------------------------------------------------
def test_an_accepted_share_link(rec, db):
    spawner = db.query(orm.Spawner).filter_by(name="demo").one()
    _, code = orm.ShareCode.new(db, spawner, scopes=["access:servers!server=alice/demo"])
    h = Handler("/hub/accept-share", "POST", 302, user=viewer(db), args={"code": code}, db=db)
    h._status = 200
    rec.observe(h)
    assert [fields(e) for e in rec.sender.events] == [
        {
            "type": "share_granted",
            "owner": "alice",
            "app": "demo",
            "actor": "carol",
            "extra": {"user": "carol", "via": "link"},
            "client": "127.0.0.1",
        }
    ]


@pytest.mark.parametrize(
    "path, method, args, signed_in",
    [
        ("/hub/accept-share", "GET", {"code": "C"}, True),  # the page, not the acceptance
        ("/hub/accept-share/", "POST", {"code": "C"}, True),
        ("/hub/accept-share", "POST", {}, True),
        ("/hub/accept-share", "POST", {"code": "unknown"}, True),
        ("/hub/accept-share", "POST", {"code": "C"}, False),
    ],
)
def test_what_is_no_accepted_link(rec, db, path, method, args, signed_in):
    spawner = db.query(orm.Spawner).filter_by(name="demo").one()
    _, code = orm.ShareCode.new(db, spawner, scopes=["access:servers!server=alice/demo"])
    args = {k: code if v == "C" else v for k, v in args.items()}
    user = viewer(db) if signed_in else None
    rec.observe(Handler(path, method, 200, user=user, args=args, db=db))
    assert rec.sender.events == []


def test_other_hub_requests_are_not_recorded(rec, db):
    for path in ("/hub/home", "/hub/spawn/alice/demo", "/hub/login", "/user/alice/demo/"):
        rec.observe(Handler(path, "POST", 200, user=owner_user(db), db=db))
    assert rec.sender.events == []


def test_the_log_hook_never_fails_a_request(rec, caplog, monkeypatch):
    import jupyterhub.log

    logged = []
    monkeypatch.setattr(jupyterhub.log, "log_request", logged.append)
    h = Handler("/hub/api/shares/alice/demo", "POST", 200)
    del h.hub  # whatever goes wrong is logged, not raised
    with caplog.at_level(logging.ERROR, "streamlit_hub.audit.hub"):
        rec.log_function(h)
    assert logged == [h]
    assert "audit recorder failed on /hub/api/shares/alice/demo" in caplog.messages
