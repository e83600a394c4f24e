"""What the auth layer answers, exactly: refusals, redirects, cookies, the OAuth round trip.

tests/unit/test_auth_middleware.py tests the decisions (who gets in, for how long); these pin
the responses byte for byte, the sign-in's PKCE and parameters, and the log lines an operator
reads (for mutation testing: docs/testing.md). The middleware is driven at the ASGI level
against a scripted hub.
"""

import asyncio
import base64
import hashlib
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from spawner.app_server.auth import (
    SESSION_COOKIE,
    STATE_COOKIE,
    HubAuthMiddleware,
    _origin_matches_host,
    groups_header_value,
)
from spawner.app_server.hub_client import HubUnavailable
from tests.helpers.app_settings import demo_settings
from tests.helpers.asgi_auth import exchange as asgi_exchange

PREFIX = "/user/alice/demo/"


class Hub:
    def __init__(self):
        self.models = {}
        self.code_calls = []
        self.codes = {}
        self.down_on_code = False

    async def identify(self, token):
        return self.models.get(token)

    async def server_shares(self, owner, server):
        return []

    async def token_for_code(self, **kw):
        self.code_calls.append(kw)
        if self.down_on_code:
            raise HubUnavailable("down")
        return self.codes.get(kw["code"])


def allowed(name):
    return {
        "name": name,
        "kind": "user",
        "groups": [],
        "scopes": ["access:servers!server=alice/demo"],
    }


async def app_ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"app"})


def make(**settings):
    hub = Hub()
    return HubAuthMiddleware(app_ok, demo_settings(**settings), hub=hub), hub


async def exchange(mw, path=PREFIX, headers=(), method="GET", query=b"", omit=()):
    return await asgi_exchange(mw, path, headers, method, query, omit)


def run(coro):
    return asyncio.run(coro)


# ---- refusals -------------------------------------------------------------------------------
def test_a_refusal_as_json_exactly():
    mw, _ = make()
    sent = run(exchange(mw, method="POST"))
    body = json.dumps(
        {"status": 401, "message": "Sign in required. Sign in through the hub to use this app."}
    ).encode()
    assert sent == [
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        },
        {"type": "http.response.body", "body": body},
    ]


def test_a_refusal_as_a_page_exactly():
    mw, hub = make()
    hub.models["T"] = {**allowed("carol"), "scopes": []}
    sent = run(exchange(mw, headers=[("Authorization", "token T"), ("Accept", "text/html,*/*")]))
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>This app belongs to alice</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;"
        "padding:0 1rem;line-height:1.5}</style></head><body>"
        "<h1>This app belongs to alice</h1><p>You are signed in as carol, but alice has not shared "
        "the app “demo” with you. Ask alice to share it with you or with one of your groups.</p>"
        '<p><a href="/hub/home">Back to the hub</a></p></body></html>'
    ).encode()
    assert sent == [
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        },
        {"type": "http.response.body", "body": body},
    ]


def test_a_refusal_page_escapes_what_it_shows():
    mw, hub = make(owner="<al>", hub_url='/h"ub/')
    hub.models["T"] = {**allowed("<b>"), "scopes": []}
    sent = run(exchange(mw, headers=[("Authorization", "token T"), ("Accept", "text/html")]))
    page = sent[1]["body"].decode()
    assert "<title>This app belongs to &lt;al&gt;</title>" in page
    assert "signed in as &lt;b&gt;" in page and '<a href="/h&#34;ub/home">' in page


def test_the_forbidden_message_of_the_default_server_and_its_json():
    mw, hub = make(server_name="")
    hub.models["T"] = {**allowed("carol"), "scopes": []}
    sent = run(exchange(mw, headers=[("Authorization", "token T")]))
    assert json.loads(sent[1]["body"]) == {
        "status": 403,
        "message": "This app belongs to alice. You are signed in as carol, but alice has "
        "not shared the app “default” with you. Ask alice to share it with you "
        "or with one of your groups.",
    }


def test_a_head_request_gets_the_status_and_no_body():
    mw, _ = make()
    sent = run(exchange(mw, path="/elsewhere", method="HEAD"))
    assert sent[0]["status"] == 404 and sent[1] == {"type": "http.response.body", "body": b""}
    assert int(dict(sent[0]["headers"])[b"content-length"]) > 0  # the length of the GET body


def test_nothing_is_served_outside_the_prefix():
    mw, _ = make()
    sent = run(exchange(mw, path="/user/bob/", method="POST"))
    assert sent[0]["status"] == 404
    assert json.loads(sent[1]["body"]) == {
        "status": 404,
        "message": "Not found. Nothing is served here.",
    }


def test_a_hub_outage_is_a_503_with_its_reason():
    mw, hub = make()

    async def down(token):
        raise HubUnavailable("down")

    hub.identify = down
    sent = run(exchange(mw, headers=[("Authorization", "token T")]))
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["message"] == (
        "The hub is not answering. Sign-in could not be checked. Try again in a minute."
    )


# ---- redirects ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query, location", [(b"", PREFIX), (b"a=1&b=2", PREFIX + "?a=1&b=2"), (None, PREFIX)]
)
def test_the_prefix_without_its_slash_redirects_exactly(query, location):
    mw, _ = make()
    sent = run(
        exchange(
            mw,
            path=PREFIX[:-1],
            query=query or b"",
            omit=("query_string",) if query is None else (),
        )
    )
    assert sent == [
        {
            "type": "http.response.start",
            "status": 302,
            "headers": [
                (b"location", location.encode()),
                (b"cache-control", b"no-store"),
                (b"content-length", b"0"),
            ],
        },
        {"type": "http.response.body", "body": b""},
    ]


def test_a_location_outside_latin_1_is_sent_with_replacements():
    mw, _ = make(prefix="/user/€/")
    sent = run(exchange(mw, path="/user/€"))
    assert dict(sent[0]["headers"])[b"location"] == b"/user/?/"


# ---- the OAuth round trip -------------------------------------------------------------------
def start_login(mw, path=PREFIX + "page", query=b"x=1"):
    sent = run(exchange(mw, path=path, query=query))
    headers = sent[0]["headers"]
    location = dict(headers)[b"location"].decode()
    cookies = [v.decode() for k, v in headers if k == b"set-cookie"]
    return sent, location, cookies


def test_sign_in_starts_with_the_hubs_authorize_url_and_a_state_cookie():
    mw, _ = make(
        client_id="service-alice-demo",
        callback_url="https://alice.example/user/alice/demo/oauth_callback",
    )
    sent, location, cookies = start_login(mw)
    assert sent[0]["status"] == 302 and sent[1] == {"type": "http.response.body", "body": b""}
    url = urlsplit(location)
    assert url.path == "/hub/api/oauth2/authorize"
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert set(q) == {
        "client_id",
        "redirect_uri",
        "response_type",
        "state",
        "code_challenge",
        "code_challenge_method",
    }
    assert q["client_id"] == "service-alice-demo" and q["response_type"] == "code"
    assert q["redirect_uri"] == "https://alice.example/user/alice/demo/oauth_callback"
    assert q["code_challenge_method"] == "S256" and len(q["state"]) == 32
    assert cookies == [
        f"{STATE_COOKIE}={q['state']}; HttpOnly; Max-Age=600; Path={PREFIX}; SameSite=Lax"
    ]
    next_url, verifier, _ = mw._pending_logins[q["state"]]
    assert next_url == PREFIX + "page?x=1" and len(verifier) == 64
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    assert q["code_challenge"] == challenge


def test_cookies_are_secure_when_the_hub_is_served_over_https():
    mw, _ = make(secure_cookies=True)
    _, _, cookies = start_login(mw)
    assert cookies[0].endswith(f"; HttpOnly; Max-Age=600; Path={PREFIX}; SameSite=Lax; Secure")


def finish_login(mw, hub, location, cookies, code="CODE"):
    state = parse_qs(urlsplit(location).query)["state"][0]
    state_cookie = cookies[0].split(";")[0]
    return run(
        exchange(
            mw,
            path=PREFIX + "oauth_callback",
            query=f"code={code}&state={state}".encode(),
            headers=[("Cookie", state_cookie)],
        )
    )


def test_the_callback_trades_the_code_with_pkce_and_sets_the_session(caplog):
    caplog.set_level(logging.INFO, "streamlit_hub.auth")
    mw, hub = make(client_id="cid", callback_url="https://a.example/cb")
    hub.codes["CODE"] = "tok-1"
    hub.models["tok-1"] = allowed("carol")
    _, location, cookies = start_login(mw)
    state = parse_qs(urlsplit(location).query)["state"][0]
    verifier = mw._pending_logins[state][1]
    sent = finish_login(mw, hub, location, cookies)
    assert hub.code_calls == [
        {
            "code": "CODE",
            "client_id": "cid",
            "redirect_uri": "https://a.example/cb",
            "code_verifier": verifier,
        }
    ]
    headers = sent[0]["headers"]
    assert sent[0]["status"] == 302 and dict(headers)[b"location"] == (PREFIX + "page?x=1").encode()
    set_cookies = [v.decode() for k, v in headers if k == b"set-cookie"]
    sid = set_cookies[0].split(";")[0].split("=", 1)[1]
    assert set_cookies == [
        f"{SESSION_COOKIE}={sid}; HttpOnly; Path={PREFIX}; SameSite=Lax",
        f'{STATE_COOKIE}=""; HttpOnly; Max-Age=0; Path={PREFIX}; SameSite=Lax',  # deleted
    ]
    assert len(sid) == 43 and mw._logins[sid][0] == "tok-1"
    assert "viewer carol signed in to alice/demo" in caplog.messages
    assert run(exchange(mw, headers=[("Cookie", f"{SESSION_COOKIE}={sid}")]))[0]["status"] == 200


def test_the_callback_never_returns_outside_the_app():
    mw, hub = make()
    hub.codes["CODE"] = "tok-1"
    hub.models["tok-1"] = allowed("carol")
    _, location, cookies = start_login(mw)
    state = parse_qs(urlsplit(location).query)["state"][0]
    mw._pending_logins[state] = ("https://evil.example/", *mw._pending_logins[state][1:])
    sent = finish_login(mw, hub, location, cookies)
    assert dict(sent[0]["headers"])[b"location"] == PREFIX.encode()


STALE = (
    "Sign-in did not complete. This sign-in link is stale or was opened in another browser. "
    "Open the app again to sign in."
)


@pytest.mark.parametrize(
    "case",
    [
        "no code",
        "no state",
        "other state cookie",
        "no state cookie",
        "unknown state",
        "state cookie not ascii",
    ],
)
def test_a_callback_that_does_not_match_a_login_is_refused(case):
    mw, hub = make()
    hub.codes["CODE"] = "tok-1"
    _, location, _cookies = start_login(mw)
    state = parse_qs(urlsplit(location).query)["state"][0]
    query = {"no code": f"state={state}", "no state": "code=CODE"}.get(
        case, f"code=CODE&state={state}"
    )
    if case == "unknown state":
        query = "code=CODE&state=guess"
    headers = {
        "other state cookie": [("Cookie", f"{STATE_COOKIE}=other")],
        "no state cookie": [("Cookie", "a=b")],
        "state cookie not ascii": [("Cookie", f"{STATE_COOKIE}=é{state[1:]}")],
    }.get(case, [("Cookie", f"{STATE_COOKIE}={state}")])
    if case == "unknown state":
        headers = [("Cookie", f"{STATE_COOKIE}=guess")]
    sent = run(exchange(mw, path=PREFIX + "oauth_callback", query=query.encode(), headers=headers))
    assert sent[0]["status"] == 400 and json.loads(sent[1]["body"])["message"] == STALE
    assert hub.code_calls == []


def test_a_refused_callback_page_links_back_to_the_app():
    mw, _ = make()
    sent = run(
        exchange(
            mw,
            path=PREFIX + "oauth_callback",
            query=b"code=x&state=y",
            headers=[("Accept", "text/html")],
        )
    )
    page = sent[1]["body"].decode()
    assert (
        "<h1>Sign-in did not complete</h1>" in page
        and f'<a href="{PREFIX}">Open the app again</a>' in page
    )


def test_a_callback_without_a_query_is_refused():
    mw, _ = make()
    sent = run(exchange(mw, path=PREFIX + "oauth_callback", omit=("query_string", "headers")))
    assert sent[0]["status"] == 400


@pytest.mark.parametrize("age, status", [(600, 302), (600.5, 400)])
def test_a_login_is_good_for_ten_minutes(clock, age, status):
    mw, hub = make()
    hub.codes["CODE"] = "tok-1"
    hub.models["tok-1"] = allowed("carol")
    _, location, cookies = start_login(mw)
    clock.now += age
    assert finish_login(mw, hub, location, cookies)[0]["status"] == status


def test_a_state_is_used_once():
    mw, hub = make()
    hub.codes["CODE"] = "tok-1"
    hub.models["tok-1"] = allowed("carol")
    _, location, cookies = start_login(mw)
    assert finish_login(mw, hub, location, cookies)[0]["status"] == 302
    assert finish_login(mw, hub, location, cookies)[0]["status"] == 400


def test_a_code_the_hub_does_not_take_is_refused():
    mw, hub = make()
    _, location, cookies = start_login(mw)
    sent = finish_login(mw, hub, location, cookies, code="BAD")  # no token for it
    assert sent[0]["status"] == 403
    assert json.loads(sent[1]["body"])["message"] == (
        "Sign-in refused. The hub did not confirm your sign-in. Open the app again."
    )
    assert mw._logins == {}


def test_a_code_while_the_hub_is_down_is_a_503():
    mw, hub = make()
    hub.down_on_code = True
    _, location, cookies = start_login(mw)
    sent = finish_login(mw, hub, location, cookies)
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["message"] == (
        "The hub is not answering. Sign-in could not be completed. Try again in a minute."
    )


def test_a_page_refusal_after_sign_in_links_back_to_the_app():
    mw, _hub = make()
    _, location, cookies = start_login(mw)
    state = parse_qs(urlsplit(location).query)["state"][0]
    sent = run(
        exchange(
            mw,
            path=PREFIX + "oauth_callback",
            query=f"code=BAD&state={state}".encode(),
            headers=[("Cookie", cookies[0].split(";")[0]), ("Accept", "text/html")],
        )
    )
    page = sent[1]["body"].decode()
    assert (
        "<h1>Sign-in refused</h1>" in page and f'<a href="{PREFIX}">Open the app again</a>' in page
    )


# ---- small helpers ----------------------------------------------------------------------------
def test_group_names_are_percent_encoded_whole():
    assert groups_header_value(["a/b", "c,d", "é", "x-y_z.~"]) == "a%2Fb,c%2Cd,%C3%A9,x-y_z.~"


def test_an_origin_is_compared_whole_after_one_trailing_slash():
    assert _origin_matches_host("https://a.example/", "a.example")
    assert not _origin_matches_host("https://a.exampleX", "a.example")


def test_log_lines_an_operator_reads(caplog):
    caplog.set_level(logging.INFO, "streamlit_hub.auth")
    mw, hub = make()
    hub.models["T"] = {**allowed("carol"), "scopes": ["access:servers!server=alice/other"]}
    run(exchange(mw, headers=[("Authorization", "token T")]))
    assert "refused carol: no access to alice/demo" in caplog.messages
    assert (
        "carol holds no access scope for this app (access scopes held: "
        "['access:servers!server=alice/other'])"
    ) in caplog.messages


# ---- more edges of the ASGI exchange --------------------------------------------------------
def test_lifespan_messages_pass_straight_through():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope, await receive()))
        await send({"type": "lifespan.startup.complete"})

    mw = HubAuthMiddleware(app, demo_settings(), hub=Hub())
    sent = []

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(m):
        sent.append(m)

    scope = {"type": "lifespan"}
    run(mw(scope, receive, send))
    assert seen == [(scope, {"type": "lifespan.startup"})] and sent == [
        {"type": "lifespan.startup.complete"}
    ]


def test_the_app_reads_the_request_body_through_the_middleware():
    got = []

    async def app(scope, receive, send):
        got.append(await receive())
        await app_ok(scope, receive, send)

    mw = HubAuthMiddleware(app, demo_settings(), hub=Hub())
    mw.hub.models["T"] = allowed("carol")
    assert (
        run(exchange(mw, headers=[("Authorization", "token T")], method="POST"))[0]["status"] == 200
    )
    assert got == [{"type": "http.request", "body": b""}]


def test_a_scope_without_path_or_headers_is_refused_not_a_crash():
    mw, _ = make()
    assert run(exchange(mw, omit=("path",)))[0]["status"] == 404
    assert run(exchange(mw, method="POST", omit=("headers",)))[0]["status"] == 401


def test_a_head_request_without_a_session_starts_sign_in_too():
    mw, _ = make()
    assert run(exchange(mw, method="HEAD"))[0]["status"] == 302
    assert run(exchange(mw, method="OPTIONS"))[0]["status"] == 401


def test_without_a_hub_client_given_one_is_made_from_the_settings():
    mw = HubAuthMiddleware(
        app_ok, demo_settings(api_url="http://hub:8081/hub/api", api_token="secret")
    )
    assert (mw.hub._api_url, mw.hub._token) == ("http://hub:8081/hub/api", "secret")
    assert mw.activity._hub is mw.hub


def test_a_prefix_ending_in_capital_x():
    mw, _ = make(prefix="/user/X/")
    sent = run(exchange(mw, path="/user/X"))
    assert sent[0]["status"] == 302 and dict(sent[0]["headers"])[b"location"] == b"/user/X/"


def test_a_refusal_page_without_a_link_has_only_the_way_back_to_the_hub():
    mw, _ = make()
    sent = run(exchange(mw, method="POST", headers=[("Accept", "text/html")]))
    assert (
        sent[1]["body"]
        .decode()
        .endswith(
            "<h1>Sign in required</h1><p>Sign in through the hub to use this app.</p>"
            '<p><a href="/hub/home">Back to the hub</a></p></body></html>'
        )
    )


def test_sign_in_returns_to_the_raw_path_as_sent():
    mw, _ = make()
    sent = run(exchange(mw, path=PREFIX + "a b"))  # raw_path is the same here
    location = dict(sent[0]["headers"])[b"location"].decode()
    state = parse_qs(urlsplit(location).query)["state"][0]
    assert mw._pending_logins[state][0] == PREFIX + "a b"

    async def raw():
        scope = {
            "type": "http",
            "method": "GET",
            "path": PREFIX + "a b",
            "raw_path": (PREFIX + "a%20b").encode(),
            "query_string": b"",
            "headers": [],
        }
        sent = []

        async def send(m):
            sent.append(m)

        await mw(scope, None, send)
        return sent

    location = dict(run(raw())[0]["headers"])[b"location"].decode()
    assert mw._pending_logins[parse_qs(urlsplit(location).query)["state"][0]][0] == PREFIX + "a%20b"


def test_a_session_whose_token_was_revoked_is_forgotten():
    mw, hub = make()
    hub.codes["CODE"] = "tok-1"
    hub.models["tok-1"] = allowed("carol")
    _, location, cookies = start_login(mw)
    sent = finish_login(mw, hub, location, cookies)
    sid = (
        next(v.decode() for k, v in sent[0]["headers"] if k == b"set-cookie")
        .split(";")[0]
        .split("=", 1)[1]
    )
    mw._verdicts.clear()
    hub.models.pop("tok-1")  # the hub no longer knows the token
    assert (
        run(exchange(mw, method="POST", headers=[("Cookie", f"{SESSION_COOKIE}={sid}")]))[0][
            "status"
        ]
        == 401
    )
    assert sid not in mw._logins


def test_a_refused_token_is_not_served_on_its_old_verdict_during_an_outage(clock):
    mw, hub = make(auth_cache_seconds=10)
    hub.models["T"] = allowed("carol")
    h = [("Authorization", "token T")]
    assert run(exchange(mw, headers=h))[0]["status"] == 200
    hub.models.pop("T")
    clock.now += 10
    assert run(exchange(mw, headers=h, method="POST"))[0]["status"] == 401
    clock.now += 10  # the refusal's window is over, the admission was 20 s ago (< 5 min)

    async def down(token):
        raise HubUnavailable("down")

    hub.identify = down
    assert run(exchange(mw, headers=h))[0]["status"] == 503


def test_group_shares_are_asked_for_this_app_and_cached_for_less_than_the_window(clock):
    mw, hub = make(auth_cache_seconds=10)
    asked = []

    async def shares(owner, server):
        asked.append((owner, server))
        return [{"group": {"name": "team"}, "scopes": ["access:servers!server=alice/demo"]}]

    hub.server_shares = shares
    hub.codes["CODE"] = "tok-g"
    hub.models["tok-g"] = {"name": "gina", "kind": "user", "groups": ["team"], "scopes": []}
    _, location, cookies = start_login(mw)
    assert finish_login(mw, hub, location, cookies)[0]["status"] == 302  # minted here
    assert asked == [("alice", "demo")]
    mw._verdicts.clear()
    clock.now += 9.99
    assert run(exchange(mw, headers=[("Authorization", "token tok-g")]))[0]["status"] == 200
    assert len(asked) == 1  # the share list is still fresh
    mw._verdicts.clear()
    clock.now += 0.01
    assert run(exchange(mw, headers=[("Authorization", "token tok-g")]))[0]["status"] == 200
    assert len(asked) == 2  # exactly the window: asked again


def test_cookie_parsing_is_starlettes_over_every_cookie_header():
    from spawner.app_server.auth import _cookies

    headers = [
        (b"cookie", b'a=b=c; _streamlit_x; =v; k=; d=1; q="x\\073y"'),
        (b"other", b"z=1"),
        (b"cookie", b"e=2; d=3; caf\xe9=\xe9"),
    ]
    assert _cookies(headers) == {
        "a": "b=c",
        "": "v",  # cookies without a name ("_streamlit_x", then "=v"), as browsers read them
        "k": "",
        "d": "3",  # the last of a name wins, as Streamlit's own Starlette reads it
        "q": "x;y",  # unquoted
        "e": "2",
        "café": "é",  # latin-1, as ASGI servers decode headers
    }
    assert _cookies([]) == {} and _cookies([(b"other", b"a=1")]) == {}


@pytest.mark.parametrize(
    "value, pair",
    [
        ("1", "k=1"),
        ("2|abc:ef_-.~", "k=2|abc:ef_-.~"),
        ("", 'k=""'),
        ("a=b", 'k="a=b"'),
        ("x;y", 'k="x\\073y"'),
        ('say "hi"', 'k="say \\"hi\\""'),
        ("é", 'k="\\351"'),
    ],
)
def test_a_cookie_passed_on_is_quoted_as_http_cookies_quotes_it(value, pair):
    from spawner.app_server.auth import _cookie_pair, _cookies

    assert _cookie_pair("k", value) == pair
    assert _cookies([(b"cookie", pair.encode("latin-1"))]) == {"k": value}  # read back the same


def test_sign_in_returns_to_the_path_when_the_server_gives_no_raw_path():
    mw, _ = make()
    sent = run(exchange(mw, path=PREFIX + "p", query=b"q=1", omit=("raw_path",)))
    state = parse_qs(urlsplit(dict(sent[0]["headers"])[b"location"].decode()).query)["state"][0]
    assert mw._pending_logins[state][0] == PREFIX + "p?q=1"
