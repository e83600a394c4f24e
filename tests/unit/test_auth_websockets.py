"""The auth layer's websockets at the ASGI level: origin, refusals, the re-check window, hub
outages, activity and the session audit (tests/unit/test_auth_middleware.py has HTTP)."""

import asyncio

import pytest

from spawner.app_server.auth import HubAuthMiddleware
from tests.helpers.app_settings import demo_settings
from tests.helpers.asgi_auth import (
    WS_HOST,
    EchoApp,
    ScriptedHub,
    Socket,
    allowed,
    audited,
    call,
    make,
    make_ws,
    say_bytes,
)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://alice.apps.example.com.evil.example",
        "null",
        "https://bob.apps.example.com",
    ],
)
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


@pytest.mark.parametrize(
    "origin", ["https://alice.apps.example.com", "https://ALICE.apps.example.com/", None]
)
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
    seen = {k.decode(): v.decode() for k, v in app.scopes[0]["headers"]}
    assert seen["x-hub-user"] == "carol" and "authorization" not in seen


def test_an_origin_without_a_host_header_is_refused():
    async def scenario():
        mw, hub, app = make_ws()
        hub.models["T"] = allowed("carol")
        sock = Socket(
            mw, [("Authorization", "token T"), ("Origin", "https://alice.apps.example.com")]
        )
        sock.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})  # if let in
        await asyncio.wait_for(mw(sock.scope, sock._receive, sock._send), 2)
        return sock.sent, app.reached

    assert asyncio.run(scenario()) == ([{"type": "websocket.close", "code": 1008}], False)


@pytest.mark.parametrize(
    "origin, host, same",
    [
        ("https://a.example", "a.example", True),
        ("http://a.example:8000", "a.example:8000", True),
        ("http://A.Example:8000/", "a.example:8000", True),
        ("http://a.example:8001", "a.example:8000", False),
        ("http://a.example", "a.example:8000", False),
        ("https://a.example", "", False),
        ("https://a.example", None, False),
        ("a.example", "a.example", False),
    ],
)
def test_origin_matches_host(origin, host, same):
    from spawner.app_server.auth import _origin_matches_host

    assert _origin_matches_host(origin, host) is same


@pytest.mark.parametrize("headers", [[], [("Authorization", "token nobody")]])
def test_a_websocket_without_a_valid_viewer_is_closed_not_redirected(headers):
    async def scenario():
        mw, _hub, app = make_ws()
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


def test_an_open_websocket_is_closed_at_the_first_message_after_the_window_once_access_is_gone(
    clock,
):
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
        mw, hub, _app = make_ws()
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


def test_the_session_stream_is_audited_frame_by_frame():
    async def scenario():
        mw, _hub, sessions = audited()
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        await say_bytes(sock, b"\x01")
        await sock.close()
        other = await Socket(
            mw, [("Authorization", "token T"), WS_HOST], path="/user/alice/demo/_stcore/other"
        ).open()
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
