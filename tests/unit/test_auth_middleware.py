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


async def signed_in(mw, code: str) -> list[tuple[str, str]]:
    """Sign in through the app's own OAuth callback (the hub's authorize step came first);
    returns the browser's headers for the session. The scripted hub gives token tok-<code>."""
    status, headers, _ = await call(mw, path="/user/alice/demo/")
    assert status == 302
    state = headers["location"].split("state=")[1].split("&")[0]
    state_cookie = headers["set-cookie"][0].split(";")[0]
    status, headers, _ = await call(mw, path="/user/alice/demo/oauth_callback",
                                    query=f"code={code}&state={state}".encode(),
                                    headers=[("Cookie", state_cookie)])
    assert status == 302, status
    return [("Cookie", headers["set-cookie"][0].split(";")[0])]


GROUP_SHARES = [{"group": {"name": "data-scientists"}, "user": None,
                 "scopes": ["access:servers!server=alice/demo"]},
                {"group": {"name": "viewers"}, "user": None,
                 "scopes": ["read:users:name!user=alice"]}]  # no access in this one


def test_member_of_a_shared_group_is_admitted_without_the_scope_on_the_token():
    # JupyterHub 6.1.1 leaves group-share scopes off tokens; the app server asks for shares.
    async def scenario():
        mw, hub = make(ttl=0.2)
        hub.models["tok-B"] = {**allowed("bob", ["data-scientists"]), "scopes": []}
        hub.models["tok-C"] = {**allowed("carol", ["viewers"]), "scopes": []}
        hub.shares = GROUP_SHARES
        bob_session, carol_session = await signed_in(mw, "B"), await signed_in(mw, "C")
        bob = (await call(mw, headers=bob_session))[0]
        carol = (await call(mw, headers=carol_session))[0]
        hub.shares = []  # the group share is revoked
        await asyncio.sleep(0.25)
        bob_after = (await call(mw, headers=bob_session))[0]
        return bob, carol, bob_after
    assert asyncio.run(scenario()) == (200, 403, 403)


def test_a_token_minted_for_another_apps_client_does_not_ride_a_group_share():
    """Cross-app replay: a group member's token that another app (alice/evil) holds, issued
    to that app's OAuth client, carries no access scope for alice/demo; presented here, it
    must not be admitted through demo's group share (only tokens demo's own client got)."""
    async def scenario():
        mw, hub = make()
        hub.models["EVIL-HELD"] = {**allowed("bob", ["data-scientists"]),
                                   "scopes": ["access:servers!server=alice/evil",
                                              "read:users:groups!user=bob"]}
        hub.shares = GROUP_SHARES
        by_header = (await call(mw, headers=[("Authorization", "token EVIL-HELD")]))[0]
        return by_header, hub.share_calls
    status, share_calls = asyncio.run(scenario())
    assert status == 403 and share_calls == 0


def test_a_group_share_revoked_is_refused_within_one_window_not_two():
    """The verdict rests on the share list: it expires with the list's age, not after it."""
    async def scenario():
        mw, hub = make(ttl=0.4)
        hub.models["tok-B"] = {**allowed("bob", ["data-scientists"]), "scopes": []}
        hub.models["tok-C"] = {**allowed("carol", ["data-scientists"]), "scopes": []}
        hub.shares = GROUP_SHARES
        bob = await signed_in(mw, "B")  # the share list is read now (t=0)
        hub.shares = []  # ...and revoked right after
        revoked = asyncio.get_running_loop().time()
        await asyncio.sleep(0.3)
        carol = await signed_in(mw, "C")  # admitted on the list read at t=0 (inside the window)
        first = (await call(mw, headers=carol))[0]
        await asyncio.sleep(0.45 - (asyncio.get_running_loop().time() - revoked))
        later = (await call(mw, headers=carol))[0]  # > one window after the revocation
        return first, later, (await call(mw, headers=bob))[0]
    assert asyncio.run(scenario()) == (200, 403, 403)


def test_a_comma_in_a_group_name_stays_one_group():
    mw, hub = make()
    hub.models["T"] = allowed("carol", ["viewers,admins", "b", "Ünï"])
    status, _, body = asyncio.run(call(mw, headers=[("Authorization", "token T")]))
    assert status == 200
    groups = dict(json.loads(body))["x-hub-groups"]
    from urllib.parse import unquote
    assert [unquote(g) for g in groups.split(",")] == ["b", "viewers,admins", "Ünï"]


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


# ---- websockets ------------------------------------------------------------------------------
class EchoApp:
    """A stand-in for Streamlit's websocket endpoint: accept, echo each text, note the end."""

    def __init__(self):
        self.reached = False
        self.scopes = []
        self.received = []
        self.ended_with = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            await downstream(scope, receive, send)
            return
        self.reached = True
        self.scopes.append(scope)
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ended_with = message.get("code")
                return
            self.received.append(message["text"])
            await send({"type": "websocket.send", "text": "echo " + message["text"]})


class Socket:
    """Drives one websocket through the middleware: the client's side of the ASGI exchange."""

    def __init__(self, mw, headers, path="/user/alice/demo/_stcore/stream"):
        self.mw = mw
        self.incoming: asyncio.Queue = asyncio.Queue()
        self.sent = []
        self.scope = {"type": "websocket", "path": path, "raw_path": path.encode(),
                      "query_string": b"", "subprotocols": ["streamlit"],
                      "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.task = None

    async def _receive(self):
        return await self.incoming.get()

    async def _send(self, message):
        self.sent.append(message)

    async def open(self):
        """Start the exchange; return once Streamlit accepted (or the middleware closed)."""
        self.task = asyncio.ensure_future(self.mw(self.scope, self._receive, self._send))
        for _ in range(200):
            await asyncio.sleep(0.005)
            if self.sent or self.task.done():
                break
        assert self.sent[:1] == [{"type": "websocket.accept"}], self.sent
        return self

    async def say(self, text):
        before = len(self.sent)
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})
        for _ in range(100):
            await asyncio.sleep(0.005)
            if len(self.sent) > before or self.task.done():
                break
        return self.sent[before:]

    async def close(self):
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 2)


def make_ws(ttl=30.0):
    hub = ScriptedHub()
    app = EchoApp()
    mw = HubAuthMiddleware(app, demo_settings(auth_cache_seconds=ttl), hub=hub)
    return mw, hub, app


WS_HOST = ("Host", "alice.apps.example.com")


@pytest.mark.parametrize("origin", ["https://evil.example", "https://alice.apps.example.com.evil.example",
                                    "null", "https://bob.apps.example.com"])
def test_a_cross_origin_websocket_is_closed_by_the_middleware_itself(origin):
    # Invariant 4 (issue 18, survivor 2): this layer refuses it, whatever Streamlit would do:
    # the upgrade is closed with 1008 before the hub is asked and before Streamlit is reached.
    async def scenario():
        mw, hub, app = make_ws()
        hub.models["T"] = allowed("carol")
        sock = Socket(mw, [("Authorization", "token T"), WS_HOST, ("Origin", origin)])
        sock.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})  # if let in
        await asyncio.wait_for(mw(sock.scope, sock._receive, sock._send), 2)
        return sock.sent, app.reached, hub.calls
    sent, reached, calls = asyncio.run(scenario())
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert not reached and calls == 0


@pytest.mark.parametrize("origin", ["https://alice.apps.example.com", "https://ALICE.apps.example.com/",
                                    None])
def test_a_same_origin_or_originless_websocket_reaches_streamlit(origin):
    async def scenario():
        mw, hub, app = make_ws()
        hub.models["T"] = allowed("carol")
        headers = [("Authorization", "token T"), WS_HOST] + ([("Origin", origin)] if origin else [])
        sock = await Socket(mw, headers).open()
        replies = await sock.say("hello")
        await sock.close()
        return replies, app
    replies, app = asyncio.run(scenario())
    assert replies == [{"type": "websocket.send", "text": "echo hello"}]
    assert app.reached and app.ended_with == 1000
    seen = dict((k.decode(), v.decode()) for k, v in app.scopes[0]["headers"])
    assert seen["x-hub-user"] == "carol" and "authorization" not in seen


def test_an_origin_without_a_host_header_is_refused():
    async def scenario():
        mw, hub, app = make_ws()
        hub.models["T"] = allowed("carol")
        sock = Socket(mw, [("Authorization", "token T"), ("Origin", "https://alice.apps.example.com")])
        sock.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})  # if let in
        await asyncio.wait_for(mw(sock.scope, sock._receive, sock._send), 2)
        return sock.sent, app.reached
    assert asyncio.run(scenario()) == ([{"type": "websocket.close", "code": 1008}], False)


@pytest.mark.parametrize("origin, host, same", [
    ("https://a.example", "a.example", True),
    ("http://a.example:8000", "a.example:8000", True),
    ("http://A.Example:8000/", "a.example:8000", True),
    ("http://a.example:8001", "a.example:8000", False),
    ("http://a.example", "a.example:8000", False),
    ("https://a.example", "", False),
    ("https://a.example", None, False),
    ("a.example", "a.example", False),
])
def test_origin_matches_host(origin, host, same):
    from spawner.app_server.auth import _origin_matches_host

    assert _origin_matches_host(origin, host) is same


@pytest.mark.parametrize("headers", [[], [("Authorization", "token nobody")]])
def test_a_websocket_without_a_valid_viewer_is_closed_not_redirected(headers):
    async def scenario():
        mw, hub, app = make_ws()
        sock = Socket(mw, [WS_HOST, *headers])
        sock.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})  # if let in
        await asyncio.wait_for(mw(sock.scope, sock._receive, sock._send), 2)
        return sock.sent, app.reached
    assert asyncio.run(scenario()) == ([{"type": "websocket.close", "code": 1008}], False)


def test_a_websocket_of_a_viewer_without_access_is_closed():
    async def scenario():
        mw, hub, app = make_ws()
        hub.models["T"] = {**allowed("mallory"), "scopes": ["access:servers!server=alice/other"]}
        sock = Socket(mw, [("Authorization", "token T"), WS_HOST])
        sock.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})  # if let in
        await asyncio.wait_for(mw(sock.scope, sock._receive, sock._send), 2)
        return sock.sent, app.reached
    assert asyncio.run(scenario()) == ([{"type": "websocket.close", "code": 1008}], False)


class Clock:
    """The middleware's monotonic clock, moved by hand: window tests need no sleeps."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    import types

    import spawner.app_server.auth as auth

    c = Clock()
    monkeypatch.setattr(auth, "time", types.SimpleNamespace(monotonic=c.monotonic))
    return c


def test_an_open_websocket_is_closed_at_the_first_message_after_the_window_once_access_is_gone(clock):
    # Invariant 5 at the websocket: the re-check happens on a client message once the verdict
    # is older than auth_cache_seconds; until then the socket keeps working on the old one.
    async def scenario():
        mw, hub, app = make_ws(ttl=30)
        hub.models["T"] = allowed("carol")
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        first = await sock.say("one")
        calls_after_open = hub.calls
        hub.models["T"] = {**allowed("carol"), "scopes": []}  # the share is revoked
        clock.now += 29.9
        inside = await sock.say("two")  # still inside the window: served, hub not asked
        calls_inside = hub.calls
        clock.now += 0.1  # exactly auth_cache_seconds since the check: ask again
        after = await sock.say("three")
        await asyncio.wait_for(sock.task, 2)
        return first, calls_after_open, inside, calls_inside, after, hub.calls, app, sock
    first, c_open, inside, c_inside, after, c_after, app, sock = asyncio.run(scenario())
    assert first == [{"type": "websocket.send", "text": "echo one"}]
    assert inside == [{"type": "websocket.send", "text": "echo two"}] and c_inside == c_open == 1
    assert after == [{"type": "websocket.close", "code": 1008}] and c_after == 2
    assert app.received == ["one", "two"] and app.ended_with == 1008
    assert sum(1 for m in sock.sent if m["type"] == "websocket.close") == 1


def test_what_streamlit_sends_after_the_close_is_dropped(clock):
    class Chatty(EchoApp):
        async def __call__(self, scope, receive, send):
            await send({"type": "websocket.accept"})
            await receive()  # connect
            message = await receive()
            await send({"type": "websocket.send", "text": "late"})  # after the middleware closed
            self.ended_with = message.get("code")

    async def scenario():
        hub = ScriptedHub()
        app = Chatty()
        mw = HubAuthMiddleware(app, demo_settings(auth_cache_seconds=5), hub=hub)
        hub.models["T"] = allowed("carol")
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        hub.models["T"] = None  # the token itself is revoked
        clock.now += 5
        await sock.say("x")
        await asyncio.wait_for(sock.task, 2)
        return sock.sent, app.ended_with
    sent, ended = asyncio.run(scenario())
    assert sent == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1008}]
    assert ended == 1008


def test_an_open_websocket_of_a_viewer_who_keeps_access_is_rechecked_once_per_window(clock):
    async def scenario():
        mw, hub, app = make_ws(ttl=10)
        hub.models["T"] = allowed("carol")
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        replies = []
        for word in ("a", "b", "c", "d"):
            replies += await sock.say(word)
            clock.now += 6  # a, then 6 s later b (no check), 12 s: c (check), 18 s: d (no check)
        await sock.close()
        return replies, hub.calls, app
    replies, calls, app = asyncio.run(scenario())
    assert [r["text"] for r in replies] == ["echo a", "echo b", "echo c", "echo d"]
    assert calls == 2  # the open, and one re-check at c
    assert app.ended_with == 1000


def test_an_open_websocket_survives_a_hub_restart(clock):
    async def scenario():
        mw, hub, app = make_ws(ttl=10)
        hub.models["T"] = allowed("carol")
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        await sock.say("a")
        hub.down = True
        clock.now += 10
        b = await sock.say("b")
        clock.now += 1  # the failed re-check counts as a check: the next message asks nothing
        calls = hub.calls
        c = await sock.say("c")
        calls_after_c = hub.calls
        await sock.close()
        return b + c, calls, calls_after_c, app
    replies, calls, calls_after_c, app = asyncio.run(scenario())
    assert [r["text"] for r in replies] == ["echo b", "echo c"] and app.ended_with == 1000
    assert calls == calls_after_c == 2


def test_a_verdict_is_reused_for_less_than_the_window_then_asked_again(clock):
    async def scenario():
        mw, hub = make(ttl=30)
        hub.models["T"] = allowed("carol")
        h = [("Authorization", "token T")]
        codes = [(await call(mw, headers=h))[0]]
        hub.models["T"] = {**allowed("carol"), "scopes": []}
        clock.now += 29.99
        codes.append((await call(mw, headers=h))[0])
        clock.now += 0.01
        codes.append((await call(mw, headers=h))[0])
        return codes, hub.calls
    assert asyncio.run(scenario()) == ([200, 200, 403], 2)


def test_a_refused_token_is_asked_again_once_the_window_is_over(clock):
    async def scenario():
        mw, hub = make(ttl=30)
        h = [("Authorization", "token LATE")]
        codes = [(await call(mw, headers=h, method="POST"))[0]]
        hub.models["LATE"] = allowed("carol")  # e.g. the hub had not seen the token yet
        clock.now += 29.99
        codes.append((await call(mw, headers=h, method="POST"))[0])
        clock.now += 0.01
        codes.append((await call(mw, headers=h, method="POST"))[0])
        return codes, hub.calls
    assert asyncio.run(scenario()) == ([401, 401, 200], 2)


def test_a_hub_outage_serves_admitted_viewers_for_five_minutes_only(clock):
    async def scenario():
        mw, hub = make(ttl=30)
        hub.models["T"] = allowed("carol")
        hub.models["N"] = {**allowed("nina"), "scopes": []}
        h, n = [("Authorization", "token T")], [("Authorization", "token N")]
        codes = [(await call(mw, headers=h))[0], (await call(mw, headers=n))[0]]
        hub.down = True
        clock.now += 299.9
        codes += [(await call(mw, headers=h))[0], (await call(mw, headers=n))[0]]
        clock.now += 0.1
        codes.append((await call(mw, headers=h))[0])
        return codes
    # a refusal is never extended; an admission is, for less than 300 s
    assert asyncio.run(scenario()) == [200, 403, 200, 503, 503]


def test_websockets_count_as_activity_while_open():
    async def scenario():
        mw, hub, app = make_ws()
        hub.models["T"] = allowed("carol")
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        await sock.say("a")
        during = mw.activity.open_websockets
        await sock.close()
        return during, mw.activity.open_websockets, mw.activity.last_activity
    during, after, last = asyncio.run(scenario())
    assert (during, after) == (1, 0) and last is not None


def test_an_open_websocket_keeps_serving_through_a_long_hub_outage(clock):
    # past the 5 minutes a stale verdict is trusted for new requests, the hub is still asked
    # at each window and still down: the open socket goes on (a refusal needs an answer)
    async def scenario():
        mw, hub, app = make_ws(ttl=10)
        hub.models["T"] = allowed("carol")
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        await sock.say("a")
        hub.down = True
        clock.now += 301
        replies = await sock.say("b")
        await sock.close()
        return replies, app
    replies, app = asyncio.run(scenario())
    assert replies == [{"type": "websocket.send", "text": "echo b"}] and app.ended_with == 1000


class SessionLog:
    """Stands in for SessionAudit: what the middleware tells the audit about a session."""

    def __init__(self):
        self.opened, self.frames, self.ended, self.kicks = [], [], [], 0
        self.sender = self

    def kick(self):
        self.kicks += 1

    def open(self, viewer, scope):
        self.opened.append((viewer.name, scope["path"]))
        log = self

        class Session:
            def client_frame(self, data):
                log.frames.append(("client", data))

            def server_frame(self, data):
                log.frames.append(("server", data))

            def end(self, reason):
                log.ended.append(reason)

        return Session()


class BytesEcho(EchoApp):
    async def __call__(self, scope, receive, send):
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.connect"
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ended_with = message.get("code")
                return
            await send({"type": "websocket.send", "bytes": b"re:" + message["bytes"]})


def audited(ttl=30.0):
    hub, sessions = ScriptedHub(), SessionLog()
    mw = HubAuthMiddleware(BytesEcho(), demo_settings(auth_cache_seconds=ttl), hub=hub, sessions=sessions)
    hub.models["T"] = allowed("carol")
    return mw, hub, sessions


async def say_bytes(sock, data):
    sock.incoming.put_nowait({"type": "websocket.receive", "bytes": data})
    for _ in range(100):
        await asyncio.sleep(0.005)
        if sock.sent[-1].get("bytes") == b"re:" + data or sock.task.done():
            break


def test_the_session_stream_is_audited_frame_by_frame():
    async def scenario():
        mw, hub, sessions = audited()
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        await say_bytes(sock, b"\x01")
        await sock.close()
        other = await Socket(mw, [("Authorization", "token T"), WS_HOST],
                             path="/user/alice/demo/_stcore/other").open()
        await say_bytes(other, b"\x02")
        await other.close()
        return sessions
    sessions = asyncio.run(scenario())
    assert sessions.opened == [("carol", "/user/alice/demo/_stcore/stream")]  # the stream only
    assert sessions.frames == [("client", b"\x01"), ("server", b"re:\x01")]
    assert sessions.ended == ["closed"] and sessions.kicks == 1  # the spool is resent once


def test_a_session_closed_for_withdrawn_access_is_audited_so(clock):
    async def scenario():
        mw, hub, sessions = audited(ttl=5)
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        hub.models["T"] = None
        clock.now += 5
        await say_bytes(sock, b"\x03")
        await asyncio.wait_for(sock.task, 2)
        return sessions
    sessions = asyncio.run(scenario())
    assert sessions.ended == ["access withdrawn"] and sessions.frames == [("client", b"\x03")]


@pytest.mark.parametrize("value, ok", [
    ("token T", True), ("Token T", True), ("bearer T", True), ("Bearer T", True), ("TOKEN T", True),
    ("token   T", True), ("  token T  ", True),
    ("Basic T", False), ("token", False), ("token  ", False), ("T", False), ("", False),
])
def test_authorization_header_forms(value, ok):
    mw, hub = make()
    hub.models["T"] = allowed("carol")
    status = asyncio.run(call(mw, headers=[("Authorization", value)], method="POST"))[0]
    assert status == (200 if ok else 401)


def test_only_streamlits_own_and_listed_cookies_reach_the_app_in_one_header():
    mw = HubAuthMiddleware(downstream, demo_settings(pass_cookies=("keep",)), hub=ScriptedHub())
    mw.hub.models["T"] = allowed("carol")
    status, _, body = asyncio.run(call(mw, headers=[
        ("Authorization", "token T"),
        ("Cookie", "_streamlit_a=1; drop=2; keep=3; _streamlit_b=4"),
    ]))
    seen = json.loads(body)
    assert [v for k, v in seen if k == "cookie"] == ["_streamlit_a=1; keep=3; _streamlit_b=4"]
    assert [k for k, _ in seen if k in ("cookie", "authorization")] == ["cookie"]


def test_the_groups_header_encodes_each_name():
    mw, hub = make()
    hub.models["T"] = allowed("carol", ["a,b", "c/d"])
    _, _, body = asyncio.run(call(mw, headers=[("Authorization", "token T")]))
    assert ["x-hub-groups", "a%2Cb,c%2Fd"] in json.loads(body)


@pytest.mark.parametrize("cookie", ["streamlit-hub-session", "streamlit-hub-session=", "=x", "nothing"])
def test_malformed_session_cookies_are_no_session(cookie):
    mw, _ = make()
    assert asyncio.run(call(mw, headers=[("Cookie", cookie)], method="POST"))[0] == 401


def test_a_session_idle_for_twelve_hours_is_forgotten(clock):
    async def scenario():
        mw, hub = make()
        hub.models["tok"] = allowed("carol")
        mw._sessions.put("sid", ["tok", clock.now])
        h = [("Cookie", f"{SESSION_COOKIE}=sid")]
        codes = []
        clock.now += 12 * 3600  # exactly the idle limit: still good, and used again now
        codes.append((await call(mw, headers=h, method="POST"))[0])
        clock.now += 12 * 3600 + 0.5
        codes.append((await call(mw, headers=h, method="POST"))[0])
        return codes, "sid" in mw._sessions
    assert asyncio.run(scenario()) == ([200, 401], False)


def test_the_session_table_forgets_its_oldest_beyond_its_limit():
    from spawner.app_server.auth import _Bounded

    b = _Bounded(2)
    b.put("a", 1)
    b.put("b", 2)
    b.put("a", 3)  # used again: now the newest
    b.put("c", 4)
    assert list(b.items()) == [("a", 3), ("c", 4)]


def test_log_lines_of_refused_and_closed_websockets_and_of_an_outage(clock, caplog):
    import logging

    caplog.set_level(logging.INFO, "streamlit_hub.auth")

    async def scenario():
        mw, hub, app = make_ws(ttl=5)
        hub.models["T"] = allowed("carol")
        evil = Socket(mw, [("Authorization", "token T"), WS_HOST, ("Origin", "https://e.example/" + "x" * 200)])
        await mw(evil.scope, evil._receive, evil._send)
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        hub.models["T"] = None
        clock.now += 5
        await sock.say("x")
        await asyncio.wait_for(sock.task, 2)
        hub.down = True
        await call(mw, headers=[("Authorization", "token U")])
    asyncio.run(scenario())
    assert caplog.messages[0] == "refused cross-origin websocket from " + ("https://e.example/" + "x" * 200)[:100]
    assert "closing a websocket: access to alice/demo was withdrawn" in caplog.messages
    assert "cannot authenticate a request: down" in caplog.messages
