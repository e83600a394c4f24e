"""The auth layer at the ASGI level, against a scripted hub: caching, coalescing, refusals.

The real hub is in tests/integration; these pin behaviour that is slow or awkward to reach
through it (the revocation window, a hub outage, concurrent first requests).
"""

import asyncio
import json

import pytest

from spawner.app_server.auth import SESSION_COOKIE, STATE_COOKIE, HubAuthMiddleware
from spawner.app_server.hub_client import HubUnavailable
from tests.helpers.app_settings import demo_settings


class ScriptedHub:
    def __init__(self):
        self.models = {}
        self.calls = 0
        self.down = False
        self.shares = []
        self.share_calls = 0

    async def identify(self, token):
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.down:
            raise HubUnavailable("down")
        return self.models.get(token)

    async def server_shares(self, owner, server):
        self.share_calls += 1
        return self.shares

    async def token_for_code(self, **kw):
        return "tok-" + kw["code"]


def allowed(name, groups=()):
    return {"name": name, "kind": "user", "groups": list(groups),
            "scopes": ["access:servers!server=alice/demo"]}


async def downstream(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body",
                "body": json.dumps([[k.decode(), v.decode()] for k, v in scope["headers"]]).encode()})


async def call(mw, path="/user/alice/demo/", headers=(), method="GET", query=b""):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(m):
        sent.append(m)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": query, "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}
    await mw(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    headers["set-cookie"] = [v.decode() for k, v in start["headers"] if k == b"set-cookie"]
    return start["status"], headers, body


def make(ttl=30.0):
    hub = ScriptedHub()
    mw = HubAuthMiddleware(downstream, demo_settings(auth_cache_seconds=ttl), hub=hub)
    return mw, hub


def test_headers_are_scrubbed_and_identity_set():
    mw, hub = make()
    hub.models["T"] = allowed("carol", ["viewers", "b"])
    status, _, body = asyncio.run(call(mw, headers=[
        ("Authorization", "token T"), ("X-Hub-User", "mallory"), ("X-Hub-Admin", "1"),
        ("Cookie", "jupyterhub-session-id=s; _streamlit_xsrf=x; other=y; streamlit-hub-session=z"),
    ]))
    assert status == 200
    seen = json.loads(body)
    assert ["x-hub-user", "carol"] in seen and ["x-hub-groups", "b,viewers"] in seen
    assert ["cookie", "_streamlit_xsrf=x"] in seen
    names = [k for k, _ in seen]
    assert "authorization" not in names and "x-hub-admin" not in names and names.count("x-hub-user") == 1


def test_revoked_access_is_seen_after_the_cache_window():
    async def scenario():
        mw, hub = make(ttl=0.2)
        hub.models["T"] = allowed("carol")
        h = [("Authorization", "token T")]
        assert (await call(mw, headers=h))[0] == 200
        hub.models["T"] = {**allowed("carol"), "scopes": []}  # the share is revoked
        assert (await call(mw, headers=h))[0] == 200  # still inside the window
        await asyncio.sleep(0.25)
        return (await call(mw, headers=h))[0]
    assert asyncio.run(scenario()) == 403


def test_concurrent_first_requests_ask_the_hub_once():
    async def scenario():
        mw, hub = make()
        hub.models["T"] = allowed("carol")
        results = await asyncio.gather(*[call(mw, headers=[("Authorization", "token T")]) for _ in range(20)])
        return [r[0] for r in results], hub.calls
    statuses, calls = asyncio.run(scenario())
    assert statuses == [200] * 20 and calls == 1


def test_hub_outage_is_a_503_not_a_crash():
    mw, hub = make()
    hub.down = True
    status, headers, body = asyncio.run(call(mw, headers=[("Authorization", "token T")]))
    assert status == 503 and "Try again" in json.loads(body)["message"]


def test_callback_with_unknown_state_is_refused():
    mw, _ = make()
    status, _, body = asyncio.run(call(mw, path="/user/alice/demo/oauth_callback",
                                       query=b"code=abc&state=guess",
                                       headers=[("Cookie", f"{STATE_COOKIE}=guess")]))
    assert status == 400 and b"stale" in body


def test_login_round_trip_sets_a_session_and_returns_to_the_page():
    async def scenario():
        mw, hub = make()
        hub.models["tok-CODE"] = allowed("alice")
        status, headers, _ = await call(mw, path="/user/alice/demo/page", query=b"x=1")
        assert status == 302 and "code_challenge=" in headers["location"]
        state = headers["location"].split("state=")[1].split("&")[0]
        state_cookie = headers["set-cookie"][0].split(";")[0]
        # a different browser (no state cookie) cannot finish this login
        bad = await call(mw, path="/user/alice/demo/oauth_callback",
                         query=f"code=CODE&state={state}".encode())
        assert bad[0] == 400
        # the state was used up by that attempt: start again and finish properly
        status, headers, _ = await call(mw, path="/user/alice/demo/page", query=b"x=1")
        state = headers["location"].split("state=")[1].split("&")[0]
        state_cookie = headers["set-cookie"][0].split(";")[0]
        status, headers, _ = await call(mw, path="/user/alice/demo/oauth_callback",
                                        query=f"code=CODE&state={state}".encode(),
                                        headers=[("Cookie", state_cookie)])
        assert status == 302 and headers["location"] == "/user/alice/demo/page?x=1"
        sid = headers["set-cookie"][0].split(";")[0]
        assert sid.startswith(SESSION_COOKIE) and "tok-CODE" not in sid
        return (await call(mw, headers=[("Cookie", sid)]))[0]
    assert asyncio.run(scenario()) == 200


@pytest.mark.parametrize("path, status", [("/user/alice/demo", 302), ("/user/bob/demo/", 404),
                                          ("/", 404)])
def test_paths_outside_the_prefix(path, status):
    mw, _ = make()
    assert asyncio.run(call(mw, path=path))[0] == status


def test_member_of_a_shared_group_is_admitted_without_the_scope_on_the_token():
    # JupyterHub 6.1.1 leaves group-share scopes off tokens; the app server asks for shares.
    async def scenario():
        mw, hub = make(ttl=0.2)
        hub.models["B"] = {**allowed("bob", ["data-scientists"]), "scopes": []}
        hub.models["C"] = {**allowed("carol", ["viewers"]), "scopes": []}
        hub.shares = [{"group": {"name": "data-scientists"}, "user": None,
                       "scopes": ["access:servers!server=alice/demo"]},
                      {"group": {"name": "viewers"}, "user": None,
                       "scopes": ["read:users:name!user=alice"]}]  # no access in this one
        bob = (await call(mw, headers=[("Authorization", "token B")]))[0]
        carol = (await call(mw, headers=[("Authorization", "token C")]))[0]
        hub.shares = []  # the group share is revoked
        await asyncio.sleep(0.25)
        bob_after = (await call(mw, headers=[("Authorization", "token B")]))[0]
        return bob, carol, bob_after
    assert asyncio.run(scenario()) == (200, 403, 403)


def test_hub_restart_keeps_admitted_viewers_but_admits_no_one_new():
    async def scenario():
        mw, hub = make(ttl=0.1)
        hub.models["T"] = allowed("carol")
        first = (await call(mw, headers=[("Authorization", "token T")]))[0]
        hub.down = True
        await asyncio.sleep(0.15)  # the verdict is stale, the hub is down
        kept = (await call(mw, headers=[("Authorization", "token T")]))[0]
        stranger = (await call(mw, headers=[("Authorization", "token U")]))[0]
        return first, kept, stranger
    assert asyncio.run(scenario()) == (200, 200, 503)


def test_a_rejected_token_is_not_sent_to_the_hub_again_within_the_window():
    async def scenario():
        mw, hub = make(ttl=30)
        for _ in range(50):
            assert (await call(mw, headers=[("Authorization", "token garbage")], method="POST"))[0] == 401
        return hub.calls
    assert asyncio.run(scenario()) == 1
