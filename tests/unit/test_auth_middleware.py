"""The auth layer at the ASGI level, against a scripted hub: caching, coalescing, refusals.

The real hub is in tests/integration; these pin behaviour that is slow or awkward to reach
through it (the revocation window, a hub outage, concurrent first requests).
"""

import asyncio
import json

import pytest
from starlette.requests import cookie_parser

from spawner.app_server.auth import SESSION_COOKIE, STATE_COOKIE, HubAuthMiddleware
from tests.helpers.app_settings import demo_settings
from tests.helpers.asgi_auth import (
    WS_HOST,
    ScriptedHub,
    Socket,
    allowed,
    call,
    downstream,
    make,
    make_ws,
)


def test_headers_are_scrubbed_and_identity_set():
    mw, hub = make()
    hub.models["T"] = allowed("carol", ["viewers", "b"])
    status, _, body = asyncio.run(
        call(
            mw,
            headers=[
                ("Authorization", "token T"),
                ("X-Hub-User", "mallory"),
                ("X-Hub-Admin", "1"),
                (
                    "Cookie",
                    "jupyterhub-session-id=s; _streamlit_xsrf=x; other=y; streamlit-hub-session=z",
                ),
            ],
        )
    )
    assert status == 200
    seen = json.loads(body)
    assert ["x-hub-user", "carol"] in seen and ["x-hub-groups", "b,viewers"] in seen
    assert ["cookie", "_streamlit_xsrf=x"] in seen
    names = [k for k, _ in seen]
    assert (
        "authorization" not in names
        and "x-hub-admin" not in names
        and names.count("x-hub-user") == 1
    )


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
        results = await asyncio.gather(
            *[call(mw, headers=[("Authorization", "token T")]) for _ in range(20)]
        )
        return [r[0] for r in results], hub.calls

    statuses, calls = asyncio.run(scenario())
    assert statuses == [200] * 20 and calls == 1


def test_hub_outage_is_a_503_not_a_crash():
    mw, hub = make()
    hub.down = True
    status, _headers, body = asyncio.run(call(mw, headers=[("Authorization", "token T")]))
    assert status == 503 and "Try again" in json.loads(body)["message"]


def test_callback_with_unknown_state_is_refused():
    mw, _ = make()
    status, _, body = asyncio.run(
        call(
            mw,
            path="/user/alice/demo/oauth_callback",
            query=b"code=abc&state=guess",
            headers=[("Cookie", f"{STATE_COOKIE}=guess")],
        )
    )
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
        bad = await call(
            mw, path="/user/alice/demo/oauth_callback", query=f"code=CODE&state={state}".encode()
        )
        assert bad[0] == 400
        # the state was used up by that attempt: start again and finish properly
        status, headers, _ = await call(mw, path="/user/alice/demo/page", query=b"x=1")
        state = headers["location"].split("state=")[1].split("&")[0]
        state_cookie = headers["set-cookie"][0].split(";")[0]
        status, headers, _ = await call(
            mw,
            path="/user/alice/demo/oauth_callback",
            query=f"code=CODE&state={state}".encode(),
            headers=[("Cookie", state_cookie)],
        )
        assert status == 302 and headers["location"] == "/user/alice/demo/page?x=1"
        sid = headers["set-cookie"][0].split(";")[0]
        assert sid.startswith(SESSION_COOKIE) and "tok-CODE" not in sid
        return (await call(mw, headers=[("Cookie", sid)]))[0]

    assert asyncio.run(scenario()) == 200


@pytest.mark.parametrize(
    "path, status", [("/user/alice/demo", 302), ("/user/bob/demo/", 404), ("/", 404)]
)
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
    status, headers, _ = await call(
        mw,
        path="/user/alice/demo/oauth_callback",
        query=f"code={code}&state={state}".encode(),
        headers=[("Cookie", state_cookie)],
    )
    assert status == 302, status
    return [("Cookie", headers["set-cookie"][0].split(";")[0])]


GROUP_SHARES = [
    {
        "group": {"name": "data-scientists"},
        "user": None,
        "scopes": ["access:servers!server=alice/demo"],
    },
    {"group": {"name": "viewers"}, "user": None, "scopes": ["read:users:name!user=alice"]},
]  # no access in this one


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
        hub.models["EVIL-HELD"] = {
            **allowed("bob", ["data-scientists"]),
            "scopes": ["access:servers!server=alice/evil", "read:users:groups!user=bob"],
        }
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
            assert (await call(mw, headers=[("Authorization", "token garbage")], method="POST"))[
                0
            ] == 401
        return hub.calls

    assert asyncio.run(scenario()) == 1


@pytest.mark.parametrize(
    "value, ok",
    [
        ("token T", True),
        ("Token T", True),
        ("bearer T", True),
        ("Bearer T", True),
        ("TOKEN T", True),
        ("token   T", True),
        ("  token T  ", True),
        ("Basic T", False),
        ("token", False),
        ("token  ", False),
        ("T", False),
        ("", False),
    ],
)
def test_authorization_header_forms(value, ok):
    mw, hub = make()
    hub.models["T"] = allowed("carol")
    status = asyncio.run(call(mw, headers=[("Authorization", value)], method="POST"))[0]
    assert status == (200 if ok else 401)


def test_only_streamlits_own_and_listed_cookies_reach_the_app_in_one_header():
    mw = HubAuthMiddleware(downstream, demo_settings(pass_cookies=("keep",)), hub=ScriptedHub())
    mw.hub.models["T"] = allowed("carol")
    _status, _, body = asyncio.run(
        call(
            mw,
            headers=[
                ("Authorization", "token T"),
                ("Cookie", "_streamlit_a=1; drop=2; keep=3; _streamlit_b=4"),
            ],
        )
    )
    seen = json.loads(body)
    assert [v for k, v in seen if k == "cookie"] == ["_streamlit_a=1; keep=3; _streamlit_b=4"]
    assert [k for k, _ in seen if k in ("cookie", "authorization")] == ["cookie"]


def test_a_quoted_cookie_reaches_the_app_as_one_cookie():
    mw = HubAuthMiddleware(downstream, demo_settings(), hub=ScriptedHub())
    mw.hub.models["T"] = allowed("carol")
    # an escaped ";" in a quoted value stays escaped: no cookie of another name is smuggled in
    cookie = '_streamlit_a="x\\073 streamlit-hub-session=s"; _streamlit_b=a=b'
    _, _, body = asyncio.run(call(mw, headers=[("Authorization", "token T"), ("Cookie", cookie)]))
    (seen,) = [v for k, v in json.loads(body) if k == "cookie"]
    assert seen == '_streamlit_a="x\\073 streamlit-hub-session=s"; _streamlit_b="a=b"'
    assert cookie_parser(seen) == {
        "_streamlit_a": "x; streamlit-hub-session=s",
        "_streamlit_b": "a=b",
    }


def test_a_nameless_cookie_never_reaches_the_app():
    mw = HubAuthMiddleware(downstream, demo_settings(pass_cookies=("",)), hub=ScriptedHub())
    mw.hub.models["T"] = allowed("carol")
    for cookie in ("_streamlit_a=1; secret", "_streamlit_a=1; =secret"):
        _, _, body = asyncio.run(
            call(mw, headers=[("Authorization", "token T"), ("Cookie", cookie)])
        )
        assert [v for k, v in json.loads(body) if k == "cookie"] == ["_streamlit_a=1"]


def test_of_two_session_cookies_the_last_counts_as_streamlit_reads_cookies():
    mw, hub = make()
    hub.models["tok"] = allowed("carol")
    mw._logins.put("good", ["tok", 0.0])
    both = f"{SESSION_COOKIE}=stale; {SESSION_COOKIE}=good"
    assert asyncio.run(call(mw, headers=[("Cookie", both)], method="POST"))[0] == 200
    both = f"{SESSION_COOKIE}=good; {SESSION_COOKIE}=stale"
    assert asyncio.run(call(mw, headers=[("Cookie", both)], method="POST"))[0] == 401


def test_the_groups_header_encodes_each_name():
    mw, hub = make()
    hub.models["T"] = allowed("carol", ["a,b", "c/d"])
    _, _, body = asyncio.run(call(mw, headers=[("Authorization", "token T")]))
    assert ["x-hub-groups", "a%2Cb,c%2Fd"] in json.loads(body)


@pytest.mark.parametrize(
    "cookie", ["streamlit-hub-session", "streamlit-hub-session=", "=x", "nothing"]
)
def test_malformed_session_cookies_are_no_session(cookie):
    mw, _ = make()
    assert asyncio.run(call(mw, headers=[("Cookie", cookie)], method="POST"))[0] == 401


def test_a_session_idle_for_twelve_hours_is_forgotten(clock):
    async def scenario():
        mw, hub = make()
        hub.models["tok"] = allowed("carol")
        mw._logins.put("sid", ["tok", clock.now])
        h = [("Cookie", f"{SESSION_COOKIE}=sid")]
        codes = []
        clock.now += 12 * 3600  # exactly the idle limit: still good, and used again now
        codes.append((await call(mw, headers=h, method="POST"))[0])
        clock.now += 12 * 3600 + 0.5
        codes.append((await call(mw, headers=h, method="POST"))[0])
        return codes, "sid" in mw._logins

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
        mw, hub, _app = make_ws(ttl=5)
        hub.models["T"] = allowed("carol")
        evil = Socket(
            mw,
            [("Authorization", "token T"), WS_HOST, ("Origin", "https://e.example/" + "x" * 200)],
        )
        await mw(evil.scope, evil._receive, evil._send)
        sock = await Socket(mw, [("Authorization", "token T"), WS_HOST]).open()
        hub.models["T"] = None
        clock.now += 5
        await sock.say("x")
        await asyncio.wait_for(sock.task, 2)
        hub.down = True
        await call(mw, headers=[("Authorization", "token U")])

    asyncio.run(scenario())
    assert (
        caplog.messages[0]
        == "refused cross-origin websocket from " + ("https://e.example/" + "x" * 200)[:100]
    )
    assert "closing a websocket: access to alice/demo was withdrawn" in caplog.messages
    assert "cannot authenticate a request: down" in caplog.messages
