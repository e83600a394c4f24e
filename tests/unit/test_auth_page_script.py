"""Streamlit's page through the auth layer gets the page script (issue #15, items 4 and 14):
when the app's connection drops, the tab asks what happened and reloads into the hub's page;
a "Back to the hub" link sits in Streamlit's top bar. And every refusal page links back to
the hub. Pinned at the ASGI level (spawner/app_server/auth.py is in the mutation-testing set);
the browser test is tests/browser/test_viewer_app_stops.py.
"""

import asyncio
import json
import logging

import pytest

import spawner.app_server.auth as auth
from spawner.app_server.auth import HubAuthMiddleware, page_script, with_page_script
from spawner.app_server.hub_client import HubUnavailable
from tests.helpers.app_settings import demo_settings
from tests.helpers.asgi_auth import exchange

PREFIX = "/user/alice/demo/"
HUB_HOME = "http://localhost:8000/hub/home"
PAGE = (
    b'<!DOCTYPE html>\n<html lang="en">\n  <head>\n    <title>Streamlit</title>\n'
    b'    <script type="module" src="./static/js/index.js"></script>\n  </head>\n'
    b'  <body>\n    <div id="root"></div>\n  </body>\n</html>\n'
)
NAVIGATION = [
    ("Authorization", "token T"),
    ("Accept", "text/html,*/*"),
    ("Accept-Encoding", "gzip"),
]


class Hub:
    def __init__(self):
        self.down = False

    async def identify(self, token):
        if self.down:
            raise HubUnavailable("down")
        if token == "T":
            return {
                "name": "carol",
                "kind": "user",
                "groups": [],
                "scopes": ["access:servers!server=alice/demo"],
            }
        return None

    async def server_shares(self, owner, server):
        return []

    async def token_for_code(self, **kw):
        return None


class Streamlit:
    """Answers every request with ``messages``; keeps the scopes it was given."""

    def __init__(self, *messages):
        self.messages = list(messages)
        self.scopes = []

    async def __call__(self, scope, receive, send):
        self.scopes.append(scope)
        for m in self.messages:
            await send(m)


def page_response(body=PAGE, status=200, ctype=b"text/html", extra=(), chunks=None):
    headers = [
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-cache"),
        (b"etag", b'"abc"'),
        (b"last-modified", b"Sun, 29 Nov 2026 00:00:00 GMT"),
        *extra,
    ]
    start = {"type": "http.response.start", "status": status, "headers": headers}
    if chunks is None:
        return [start, {"type": "http.response.body", "body": body}]
    parts = [body[i : i + chunks] for i in range(0, len(body), chunks)]
    return [start] + [
        {"type": "http.response.body", "body": p, "more_body": i < len(parts) - 1}
        for i, p in enumerate(parts)
    ]


def make(app, **settings):
    settings = {"hub_url": "http://localhost:8000/hub/", **settings}
    return HubAuthMiddleware(app, demo_settings(**settings), hub=Hub())


def go(mw, path=PREFIX, headers=NAVIGATION, method="GET"):
    return asyncio.run(exchange(mw, path=path, headers=headers, method=method))


SCRIPT = page_script(PREFIX, HUB_HOME)


# ---- the script ------------------------------------------------------------------------------
def test_the_script_carries_its_settings_as_json_and_is_one_script():
    text = SCRIPT.decode()
    assert text.startswith("<script>/* streamlit-hub */(function () {")
    assert text.endswith("})();</script>")
    assert text.count("</script>") == 1 and text.count("<script") == 1
    assert f"var cfg = {json.dumps({'hub': HUB_HOME, 'prefix': PREFIX})};" in text


def test_the_script_cannot_be_closed_by_what_it_carries():
    text = page_script("/user/a</script><b>/x/", "http://h/'&\"</script>").decode()
    assert text.count("</script>") == 1 and "<b>" not in text
    assert "\\u003c/script\\u003e\\u003cb\\u003e" in text
    assert '\\u0027\\u0026\\"' in text


def test_what_the_script_does():
    text = SCRIPT.decode()
    # the drop: the stream socket's close, then the health path, not followed, no cache
    assert '"_stcore/stream"' in text and 'addEventListener("close"' in text
    assert 'fetch(cfg.prefix + "_stcore/health", {redirect: "manual", cache: "no-store"' in text
    # a redirect, a refusal or "not running" reloads into the hub's answer; 200 is Streamlit's
    assert (
        'r.type === "opaqueredirect" || r.status === 401 || r.status === 403 || r.status === 424'
        in text
    )
    assert "} else if (r.ok) {\n            checking = false;" in text
    assert "check(Math.min(delay * 2, 10000))" in text and "check(300)" in text
    # reloads at least 15 s apart
    assert "last + 15000 - Date.now()" in text and "window.location.reload()" in text
    # the way back: in Streamlit's top bar only, above its toolbar, not framed or printed
    assert "document.querySelector('header[data-testid=\"stHeader\"]')" in text
    assert 'link.textContent = "\\u2190 Back to the hub";' in text
    assert "link.href = cfg.hub;" in text and 'link.target = "_top";' in text
    assert "z-index:999991" in text
    assert "@media print,(max-width:640px){#streamlit-hub-back{display:none}}" in text
    assert "if (window.top !== window.self) { return; }" in text


def test_the_script_goes_just_before_the_end_of_head():
    out = with_page_script(PAGE, b"<script>X</script>")
    assert out == PAGE.replace(b"  </head>", b"  <script>X</script></head>")


@pytest.mark.parametrize(
    "body",
    [
        b"<html><head></head><body>an analyst's own page</body></html>",  # not Streamlit's
        b'<html><body><div id="root"></div></body></html>',  # no head
        b"",
    ],
)
def test_other_html_is_left_as_it_is(body):
    assert with_page_script(body, b"<script>X</script>") is body


def test_no_script_no_change():
    assert with_page_script(PAGE, b"") is PAGE


# ---- through the middleware ---------------------------------------------------------------------
def test_a_navigation_gets_the_page_with_the_script_and_a_true_length():
    app = Streamlit(*page_response())
    sent = go(make(app))
    start, body = sent[0], sent[1]["body"]
    assert body == PAGE.replace(b"  </head>", b"  " + SCRIPT + b"</head>")
    assert start["status"] == 200
    assert start["headers"] == [
        (b"content-type", b"text/html"),
        (b"cache-control", b"no-cache"),
        (b"content-length", str(len(body)).encode()),
    ]
    assert len(sent) == 2 and sent[1] == {"type": "http.response.body", "body": body}
    # Streamlit was asked for it uncompressed; everything else it got as usual
    (scope,) = app.scopes
    names = [k for k, _ in scope["headers"]]
    assert b"accept-encoding" not in names and b"accept" in names
    assert (b"x-hub-user", b"carol") in scope["headers"]


@pytest.mark.parametrize("dest", ["document", "iframe"])
def test_a_navigation_named_by_sec_fetch_dest(dest):
    app = Streamlit(*page_response())
    sent = go(make(app), headers=[("Authorization", "token T"), ("Sec-Fetch-Dest", dest)])
    assert SCRIPT in sent[1]["body"]


@pytest.mark.parametrize(
    "path, headers, method",
    [
        # a script's fetch says so, whatever it accepts
        (PREFIX, [("Sec-Fetch-Dest", "empty"), ("Accept", "text/html")], "GET"),
        (PREFIX, [("Accept", "application/json")], "GET"),
        (PREFIX, [], "GET"),
        (PREFIX, [("Accept", "text/html")], "POST"),
        (PREFIX, [("Accept", "text/html")], "HEAD"),
        (PREFIX + "_stcore/health", [("Accept", "text/html")], "GET"),
        (PREFIX + "static/index.html", [("Accept", "text/html")], "GET"),
        (PREFIX + "media/x.html", [("Accept", "text/html")], "GET"),
        (PREFIX + "component/c/index.html", [("Accept", "text/html")], "GET"),
        (PREFIX + "app/static/report.html", [("Accept", "text/html")], "GET"),
    ],
)
def test_anything_but_a_page_navigation_passes_untouched(path, headers, method):
    messages = page_response()
    app = Streamlit(*messages)
    sent = go(
        make(app),
        path=path,
        headers=[("Authorization", "token T"), ("Accept-Encoding", "gzip"), *headers],
        method=method,
    )
    assert sent == messages
    assert (b"accept-encoding", b"gzip") in app.scopes[0]["headers"]


def test_a_page_of_the_app_other_than_its_root_gets_it_too():
    app = Streamlit(*page_response())
    sent = go(make(app), path=PREFIX + "Details")
    assert SCRIPT in sent[1]["body"]


@pytest.mark.parametrize(
    "messages",
    [
        page_response(status=304, body=b""),
        page_response(status=404),
        page_response(ctype=b"application/json", body=b'{"a": "<div id=\\"root\\"></head>"}'),
        page_response(extra=[(b"content-encoding", b"gzip")]),
        page_response(ctype=b"text/plain"),
    ],
    ids=["not-modified", "not-found", "json", "compressed", "text"],
)
def test_other_responses_pass_as_they_are(messages):
    sent = go(make(Streamlit(*messages)))
    assert sent == messages


def test_html_that_is_not_streamlits_page_keeps_its_headers():
    body = b"<html><head></head><body>report</body></html>"
    messages = page_response(body=body)
    sent = go(make(Streamlit(*messages)))
    assert sent == [messages[0], {"type": "http.response.body", "body": body}]


def test_a_page_in_pieces_is_put_together():
    app = Streamlit(*page_response(chunks=16))
    sent = go(make(app))
    assert len(sent) == 2
    assert sent[1]["body"] == PAGE.replace(b"  </head>", b"  " + SCRIPT + b"</head>")
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(sent[1]["body"])).encode()


def test_a_large_html_response_streams_on_unchanged(monkeypatch):
    monkeypatch.setattr(auth, "_MAX_PAGE", 40)
    body = PAGE * 3
    messages = page_response(body=body, chunks=30)
    sent = go(make(Streamlit(*messages)))
    assert sent[0] == messages[0]  # its own length and validators
    assert b"".join(m["body"] for m in sent[1:]) == body
    assert sent[1] == {"type": "http.response.body", "body": body[:60], "more_body": True}
    assert sent[2:] == messages[3:]
    assert [m.get("more_body", False) for m in sent[1:]][-1] is False


def test_something_else_after_the_start_sends_what_was_held_first():
    start, body = page_response(chunks=50)[:2]
    trailer = {"type": "http.response.trailers", "headers": [], "more_trailers": False}
    sent = go(make(Streamlit(start, body, trailer)))
    assert sent == [
        start,
        {"type": "http.response.body", "body": body["body"], "more_body": True},
        trailer,
    ]


def test_the_script_is_made_once(monkeypatch):
    made = []

    def counting(prefix, hub_home):
        made.append((prefix, hub_home))
        return b"<script>S</script>"

    monkeypatch.setattr(auth, "page_script", counting)
    mw = make(Streamlit(*page_response()))
    for _ in range(3):
        assert b"<script>S</script></head>" in go(mw)[1]["body"]
    assert made == [(PREFIX, HUB_HOME)]


def test_a_script_that_cannot_be_made_never_breaks_the_page(monkeypatch, caplog):
    def broken(prefix, hub_home):
        raise RuntimeError("template missing")

    monkeypatch.setattr(auth, "page_script", broken)
    mw = make(Streamlit(*page_response()))
    with caplog.at_level(logging.ERROR, logger="streamlit_hub.auth"):
        first, second = go(mw), go(mw)
    assert first == second == page_response()
    assert [r.getMessage() for r in caplog.records] == [
        "the page script could not be made; pages are sent without it"
    ]


def test_without_a_session_a_navigation_signs_in_first():
    app = Streamlit(*page_response())
    sent = go(make(app), headers=[("Accept", "text/html")])
    assert sent[0]["status"] == 302 and app.scopes == []


# ---- every refusal page links back to the hub -----------------------------------------------
BACK = f'<p><a href="{HUB_HOME}">Back to the hub</a></p>'


def test_the_hub_not_answering_page_links_back_to_the_hub():
    mw = make(Streamlit())
    mw.hub.down = True
    sent = go(mw)
    page = sent[1]["body"].decode()
    assert sent[0]["status"] == 503
    assert page.endswith(
        "<h1>The hub is not answering</h1><p>Sign-in could not be checked. Try again in a "
        f"minute.</p>{BACK}</body></html>"
    )


def test_a_stale_sign_in_page_offers_the_app_and_the_hub():
    sent = go(
        make(Streamlit()),
        path=PREFIX + "oauth_callback",
        headers=[("Accept", "text/html")],
    )
    page = sent[1]["body"].decode()
    assert page.endswith(f'<p><a href="{PREFIX}">Open the app again</a></p>{BACK}</body></html>')


def test_the_refusal_that_already_links_to_the_hub_does_so_once():
    mw = make(Streamlit())
    mw.hub.identify = _no_access
    page = go(mw)[1]["body"].decode()
    assert page.count("Back to the hub") == 1 and page.endswith(f"{BACK}</body></html>")


async def _no_access(token):
    return {"name": "carol", "kind": "user", "groups": [], "scopes": []}


def test_json_refusals_carry_no_link():
    mw = make(Streamlit())
    mw.hub.down = True
    sent = go(mw, headers=[("Authorization", "token T"), ("Accept", "application/json")])
    assert json.loads(sent[1]["body"]) == {
        "status": 503,
        "message": "The hub is not answering. Sign-in could not be checked. Try again in a minute.",
    }
