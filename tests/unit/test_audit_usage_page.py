"""The usage page (spawner/audit/pages.py and its templates), exactly (for mutation testing).

What a reader sees (#13, #15.12, #15.6): Jinja templates, autoescaped; the hub's frame (its
stylesheet and logo, a top bar with the reader and a way back to the hub); times a person
reads, with the instant in ``<time datetime>``; the owner's own visits apart from their
viewers; who shared or stopped an app and with whom. tests/browser/test_usage_page.py looks
at the same page in Chromium on a real hub; test_audit_usage_words.py pins the words, times
and chart geometry the page is made of.
"""

import asyncio
import configparser
import fnmatch
import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from spawner.audit import pages
from spawner.audit.pages import CSP, render_error_page, render_usage_page
from spawner.audit.service import make_app

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, 6, 20, 30, tzinfo=UTC)
EMPTY = {"apps": {}, "daily": {}}


# ---- the page ---------------------------------------------------------------------------------
def counts(**kw):
    return {
        "page_views": 0,
        "viewers": 0,
        "sessions": 0,
        "refused": 0,
        "own_visits": 0,
        "last": None,
    } | kw


def tidy(html: str) -> str:
    return re.sub(r"\s+", " ", html)


def test_the_page_is_in_the_hubs_frame():
    page = render_usage_page("alice", False, EMPTY, [], 14, "/services/audit/", now=NOW)
    assert page.startswith("<!doctype html>")
    assert "<title>Usage · JupyterHub</title>" in page
    # the hub's own stylesheet, favicon and logo, from the hub's URLs
    assert '<link rel="stylesheet" href="/hub/static/css/style.min.css">' in page
    assert '<link rel="stylesheet" href="/services/audit/static/usage.css">' in page
    assert '<link rel="icon" href="/hub/static/favicon.ico" type="image/x-icon">' in page
    assert '<a href="/hub/home"><img src="/hub/logo" alt="JupyterHub logo"' in page
    # the top bar: back to the hub, this page, the reader, logout
    assert '<a class="nav-link" id="back-to-hub" href="/hub/home">Home</a>' in page
    assert '<a class="nav-link" href="/hub/token">Token</a>' in page
    assert (
        '<a class="nav-link active" aria-current="page" href="/services/audit/">Usage</a>' in page
    )
    assert '<span class="me-1" id="signed-in-as">alice</span>' in page
    assert (
        'id="logout" role="button" class="btn btn-sm btn-outline-contrast" href="/hub/logout"'
        in (page)
    )
    assert "<script" not in page and "style=" not in page  # what the CSP allows


def test_the_frame_follows_the_hubs_base_url():
    page = render_usage_page("a", True, EMPTY, [], 14, "/jh/services/audit/", hub="/jh/hub/")
    assert 'href="/jh/hub/static/css/style.min.css"' in page and 'href="/jh/hub/home"' in page
    assert 'href="/jh/services/audit/api/events?format=csv"' in page


def test_templates_are_strict_and_tidy():
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):  # a name the page is not given is a bug, not a blank
        pages._templates().from_string("{{ nope.x }}").render()
    summary = {"apps": {("a", "b"): counts()}, "daily": {}}
    page = render_usage_page("a", True, summary, [], 14, "/p/", now=NOW)
    assert '      <tbody>\n        <tr data-app="a/b">\n' in page  # block lines leave nothing
    assert not re.search(r"\n[ ]*\n", page)  # no blank lines


def test_the_usage_page_with_nothing_yet():
    page = tidy(render_usage_page("alice", False, EMPTY, [], 14, "/services/audit/", now=NOW))
    assert '<p class="lead" id="usage-scope">Last 14 days, showing apps owned by alice.</p>' in page
    assert (
        "Page views, viewers and sessions count the people an app is shared with; your own "
        "visits to your apps are counted apart. Times are UTC.</p>"
    ) in page
    assert '<th scope="col">Your own visits</th>' in page
    assert '<tr><td colspan="8">No events yet.</td></tr>' in page
    assert '<p class="text-body-secondary">The 0 latest, newest first.</p>' in page
    assert 'href="/services/audit/api/events?format=csv">CSV</a>' in page
    assert 'href="/services/audit/api/events?format=jsonl">JSON lines</a>' in page


def test_a_reader_of_every_app_sees_each_owners_own_visits():
    page = tidy(render_usage_page("root", True, EMPTY, [], 3, "/p/", now=NOW))
    assert "Last 3 days, showing all apps." in page
    assert "each owner’s own visits to their apps are counted apart" in page
    assert '<th scope="col">Owner’s own visits</th>' in page and "Your own visits" not in page


def test_the_usage_page_of_one_app():
    page = render_usage_page("carol", False, EMPTY, [], 14, "/s/", only=("bob", "b"))
    assert "Last 14 days, showing the app bob/b." in page


def test_the_apps_rows_with_own_visits_apart_and_readable_times():
    today = NOW.date()
    days = [(today - timedelta(days=2 - i)).isoformat() for i in range(3)]
    summary = {
        "apps": {
            ("bob", "b"): counts(
                page_views=5,
                viewers=2,
                sessions=3,
                refused=1,
                own_visits=4,
                last=datetime(2026, 11, 29, 6, 14, 3, 999999, tzinfo=UTC),
            ),
            ("alice", "a"): counts(),
        },
        "daily": {("bob", "b"): [(days[2], 5)]},
    }
    page = tidy(render_usage_page("root", True, summary, [], 3, "/p/", now=NOW))
    alice = (
        '<tr data-app="alice/a"> <th scope="row">alice/a</th> <td class="usage-views">0</td> '
        '<td class="usage-viewers">0</td> <td class="usage-sessions">0</td> '
        '<td class="usage-refused">0</td> <td class="usage-own">0</td> '
        '<td class="usage-last"></td> '
        '<td class="usage-chart"><span class="usage-none">No page views in this period.</span>'
        "</td> </tr>"
    )
    bob = (
        '<tr data-app="bob/b"> <th scope="row">bob/b</th> <td class="usage-views">5</td> '
        '<td class="usage-viewers">2</td> <td class="usage-sessions">3</td> '
        '<td class="usage-refused">1</td> <td class="usage-own">4</td> '
        '<td class="usage-last"><time datetime="2026-11-29T06:14:03Z" '
        'title="2026-11-29 06:14:03 UTC">2026-11-29 06:14 UTC</time> '
        '<span class="usage-ago">6 min ago</span></td> '
        '<td class="usage-chart"><svg role="img" aria-label="Page views per day for bob/b" '
        'width="45" height="76" viewBox="0 0 45 76">'
    )
    assert alice + " " + bob in page  # sorted by owner, then app
    assert (
        f'<rect class="usage-bar" x="0" y="60" width="12" height="0" fill="#2f6fb0">'
        f"<title>{days[0]}: 0</title></rect>"
        '<rect x="0" y="60" width="12" height="1" fill="#999"/>'
    ) in page
    assert (
        f'<rect class="usage-bar" x="30" y="0" width="12" height="60" fill="#2f6fb0">'
        f"<title>{days[2]}: 5</title></rect>"
    ) in page
    assert (
        f'<text x="0" y="73" font-size="10">{days[0][5:]}</text>'
        f'<text x="45" y="73" font-size="10" text-anchor="end">{days[2][5:]} (5 max)</text></svg>'
    ) in page


def test_recent_events_say_who_did_what_when():
    recent = [
        {
            "time": "2026-11-29T06:18:00.123456Z",
            "type": "page_view",
            "owner": "alice",
            "app": "demo",
            "viewer": "alice",
            "page": "app",
        },
        {
            "time": "2026-11-29T06:17:00Z",
            "type": "page_view",
            "owner": "alice",
            "app": "demo",
            "viewer": "carol",
            "page": "Details",
        },
        {
            "time": "2026-11-28T06:00:00Z",
            "type": "share_granted",
            "owner": "alice",
            "app": "demo",
            "actor": "alice",
            "extra": {"user": "carol"},
        },
        {
            "time": "2026-11-27T06:00:00Z",
            "type": "app_stop",
            "owner": "alice",
            "app": "demo",
            "reason": "crash",
            "extra": {"exit_status": 1},
        },
    ]
    page = tidy(render_usage_page("alice", False, EMPTY, recent, 14, "/p/", now=NOW))
    assert '<p class="text-body-secondary">The 4 latest, newest first.</p>' in page
    assert (
        '<tr data-type="page_view"> <td class="usage-time"><time datetime="2026-11-29T06:18:00Z" '
        'title="2026-11-29 06:18:00 UTC">2026-11-29 06:18 UTC</time> '
        '<span class="usage-ago">2 min ago</span></td> <td>alice/demo</td> '
        '<td class="usage-who">alice <span class="badge text-bg-secondary usage-own-visit">'
        'your own visit</span></td> <td class="usage-what">Viewed a page</td> '
        '<td class="usage-detail">app</td> </tr>'
    ) in page
    assert (
        '<td class="usage-who">carol</td> <td class="usage-what">Viewed a page</td> '
        '<td class="usage-detail">Details</td>'
    ) in page
    assert '<span class="usage-ago">1 day ago</span>' in page
    assert (
        '<td class="usage-who">alice</td> <td class="usage-what">Shared the app</td> '
        '<td class="usage-detail">with carol</td>'
    ) in page
    assert (
        '<td class="usage-who"></td> <td class="usage-what">App crashed</td> '
        '<td class="usage-detail"><span class="usage-extra">exit_status: 1</span></td>'
    ) in page
    assert ".123456" not in page  # no microseconds anywhere


def test_details_and_extra_together():
    ev = {
        "time": "2026-11-29T06:18:00Z",
        "type": "app_stop",
        "owner": "a",
        "app": "b",
        "reason": "admin",
        "extra": {"note": "x"},
    }
    page = tidy(render_usage_page("a", False, EMPTY, [ev], 14, "/p/", now=NOW))
    assert '<td class="usage-detail">by an admin <span class="usage-extra">note: x</span></td>' in (
        page
    )


def test_the_page_escapes_every_name():
    evil = "<script>alert(1)</script>"
    summary = {
        "apps": {(evil, evil): counts(page_views=1, viewers=1)},
        "daily": {(evil, evil): [(NOW.date().isoformat(), 1)]},
    }
    recent = [
        {
            "time": evil,
            "type": evil,
            "owner": evil,
            "app": evil,
            "viewer": evil,
            "page": evil,
            "extra": {evil: evil},
        },
        {"time": "2026-11-29T06:18:00Z", "type": "share_granted", "owner": "a", "app": "b"}
        | {"actor": evil, "extra": {"user": evil}},
    ]
    out = render_usage_page(evil, True, summary, recent, 14, "/services/audit/", now=NOW)
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert 'aria-label="Page views per day for &lt;script&gt;' in out


def test_the_error_page_is_in_the_frame_and_escaped():
    page = tidy(render_error_page(500, "it <broke>", "/services/audit/", "/hub/"))
    assert "<title>Usage: error 500 · JupyterHub</title>" in page
    assert "<h1>The usage page could not be shown</h1>" in page
    assert '<p class="mb-0"><strong>500</strong>: it &lt;broke&gt;</p>' in page
    assert (
        '<a href="/hub/home">Back to your apps</a> · <a href="/services/audit/">Try again</a>'
        in (page)
    )
    assert '<a id="login" role="button"' in page and "signed-in-as" not in page


def test_the_days_are_utc_days_whatever_the_machines_zone(monkeypatch):
    import time

    now = datetime.now(UTC)
    zone = "Etc/GMT+12" if now.hour < 12 else "Etc/GMT-14"  # a zone whose date is not UTC's today
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        today = datetime.now(UTC).date().isoformat()
        summary = {"apps": {("a", "b"): counts(page_views=1)}, "daily": {("a", "b"): [(today, 1)]}}
        page = render_usage_page("a", True, summary, [], 2, "/")
        assert f"<title>{today}: 1</title>" in page
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# ---- over HTTP --------------------------------------------------------------------------------
class Tokens:
    tokens = {
        "reader": {"kind": "user", "name": "admin", "scopes": ["custom:audit:read"]},
        "hub": {"kind": "service", "name": "audit", "scopes": []},
        "alice": {"kind": "user", "name": "alice", "scopes": []},
        "apptok": {"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/demo"]},
    }
    login_url = "/hub/login-here"

    async def user_for_token(self, token, sync=False):
        return self.tokens.get(token)

    async def get_user(self, handler, sync=False):
        return self.tokens.get(handler.request.headers.get("Authorization", "").partition(" ")[2])


@pytest.fixture
def service(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"STREAMLIT_HUB_AUDIT_DB_URL": f"sqlite:///{tmp_path / 'a.sqlite'}"}
    made = []

    async def go(method, path, token=None, body=None, env_extra=None):
        if not made or env_extra:
            made.append(make_app({**env, **(env_extra or {})}, hub_auth=Tokens()))
        app, _ = made[-1]
        server = app.listen(port, "127.0.0.1")
        try:
            headers = {"Authorization": f"token {token}"} if token else {}
            return await AsyncHTTPClient().fetch(
                HTTPRequest(
                    f"http://127.0.0.1:{port}/services/audit/{path}",
                    method=method,
                    headers=headers,
                    body=json.dumps(body) if body is not None else None,
                    follow_redirects=False,
                    allow_nonstandard_methods=True,
                ),
                raise_error=False,
            )
        finally:
            server.stop()

    run = lambda *a, **kw: asyncio.run(go(*a, **kw))  # noqa: E731
    run.made = made
    yield run
    for _, settings in made:
        settings["audit_store"].engine.dispose()
        settings["audit_executor"].shutdown()


def view(i, owner="alice", app="demo", viewer="carol", ago=timedelta(minutes=1), **kw):
    t = datetime.now(UTC) - ago
    return {
        "id": f"ev-{owner}-{viewer}-{i:06d}",
        "time": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "type": "page_view",
        "owner": owner,
        "app": app,
        "viewer": viewer,
        "page": "Détails",
        **kw,
    }


def row_of(page: str, app: str) -> dict:
    """The numbers of one app's row: {"views": "52", "own": "2", ...}."""
    row = page.split(f'<tr data-app="{app}">', 1)[1].split("</tr>", 1)[0]
    return dict(re.findall(r'<td class="usage-(\w+)">([0-9]+)<', row))


def test_the_page_over_http_headers_reach_and_counts(service):
    events = [view(i) for i in range(51)] + [
        view(1, owner="bob", app="b"),
        view(902, ago=timedelta(days=14, hours=12)),  # before the 14 days
        view(903, ago=timedelta(days=13, hours=12)),
        view(904, viewer="alice"),  # alice's own visits
        view(905, viewer="alice"),
    ]
    assert service("POST", "api/events", "hub", {"events": events}).code == 200
    r = service("GET", "", "reader")
    assert r.code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Content-Security-Policy"] == (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["Referrer-Policy"] == "same-origin"
    page = r.body.decode()
    assert '<span class="me-1" id="signed-in-as">admin</span>' in page
    assert "Last 14 days, showing all apps." in page
    assert row_of(page, "alice/demo") == {
        "views": "52",  # 51 today and one 13.5 days ago; not alice's own two
        "viewers": "1",
        "sessions": "0",
        "refused": "0",
        "own": "2",
    }
    assert row_of(page, "bob/b")["views"] == "1"
    recent = page.split("<h2>Recent events</h2>")[1]
    assert recent.count('<td class="usage-time"><time datetime="20') == 50  # the 50 newest
    assert recent.count("the owner’s own visit</span>") == 2
    mine = service("GET", "", "alice").body.decode()
    assert "showing apps owned by alice" in mine and "bob/b" not in mine
    assert mine.count("your own visit</span>") == 2


def test_the_page_of_an_app_servers_token_shows_its_app_only(service):
    service("POST", "api/events", "hub", {"events": [view(1), view(2, app="other")]})
    page = service("GET", "", "apptok").body.decode()
    assert "showing the app alice/demo" in page and "alice/other" not in page


def test_the_page_sends_a_stranger_to_sign_in_with_the_policy_set(service):
    r = service("GET", "")
    assert r.code == 302 and r.headers["Location"].startswith("/hub/login-here")
    assert r.headers["Content-Security-Policy"] == CSP


def test_the_frame_uses_the_hubs_base_url(service):
    page = service("GET", "", "alice", env_extra={"JUPYTERHUB_BASE_URL": "/jh/"}).body.decode()
    assert 'href="/jh/hub/static/css/style.min.css"' in page and 'href="/jh/hub/home"' in page
    page = service("GET", "", "alice", env_extra={"JUPYTERHUB_BASE_URL": "/jh"}).body.decode()
    assert 'href="/jh/hub/home"' in page
    page = service("GET", "", "alice", env_extra={"JUPYTERHUB_BASE_URL": "/"}).body.decode()
    assert 'href="/hub/home"' in page


def test_a_failing_page_is_a_page_saying_why(service, monkeypatch):
    from tornado import web

    service("GET", "", "alice")  # the app exists
    store = service.made[-1][1]["audit_store"]

    def broken(**kw):
        raise RuntimeError("the database is gone")

    monkeypatch.setattr(store, "summary", broken)
    r = service("GET", "", "alice")
    assert r.code == 500 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.headers["Content-Security-Policy"] == CSP
    page = tidy(r.body.decode())
    assert "<strong>500</strong>: The audit service failed; the error is in its log.</p>" in page
    assert "the database is gone" not in page and 'href="/hub/home"' in page
    assert '<a href="/services/audit/">Try again</a>' in page

    def busy(**kw):
        raise web.HTTPError(503, "the store is busy <now>")

    monkeypatch.setattr(store, "summary", busy)
    r = service("GET", "", "alice")
    assert r.code == 503
    assert "<strong>503</strong>: the store is busy &lt;now&gt;</p>" in tidy(r.body.decode())
    r = service("POST", "", "alice")
    assert r.code == 405 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "<strong>405</strong>: Method Not Allowed</p>" in tidy(r.body.decode())


def test_the_pages_stylesheet_is_served_to_anyone(service):
    r = service("GET", "static/usage.css")
    assert r.code == 200 and r.headers["Content-Type"] == "text/css"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.body == (pages.STATIC_DIR / "usage.css").read_bytes()
    assert service("GET", "static/nothing.css").code == 404
    assert service("GET", "static/../pages.py").code in (403, 404)


# ---- the package and the hub ------------------------------------------------------------------
def test_the_templates_and_stylesheet_are_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["spawner"].split(",")]
    audit = ROOT / "spawner" / "audit"
    files = [*audit.glob("templates/*"), *audit.glob("static/*")]
    assert {f.name for f in files} >= {"page.html", "usage.html", "error.html", "usage.css"}
    for f in files:
        rel = f.relative_to(ROOT / "spawner").as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


def test_the_hubs_services_menu_names_the_usage_page():
    """hub_config/templates/page.html shows a service's info.display_name (hubconfig gives the
    audit service "Usage"), else its name."""
    from types import SimpleNamespace

    import jupyterhub
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader

    theirs = Path(jupyterhub.__file__).resolve().parents[4] / "share" / "jupyterhub" / "templates"
    if not theirs.is_dir():  # pragma: no cover - an unusual install layout
        pytest.skip(f"JupyterHub's templates are not at {theirs}")
    env = Environment(
        loader=ChoiceLoader(
            [
                PrefixLoader({"templates": FileSystemLoader([str(theirs)])}, "/"),
                FileSystemLoader(ROOT / "hub_config" / "templates"),
            ]
        ),
        autoescape=True,
    )
    alice = SimpleNamespace(name="alice", admin=False, spawner=SimpleNamespace(options_form=""))
    services = [  # JupyterHub's href drops subdomain_host's port: the menu builds its own
        SimpleNamespace(
            name="audit",
            host="http://localhost:8000",
            prefix="/services/audit/",
            href="//localhost/services/audit/",
            info={"display_name": "Usage"},
        ),
        SimpleNamespace(name="other", host="", prefix="/services/other/", info={}),
    ]
    html = env.get_template("page.html").render(
        base_url="/hub/",
        prefix="/",
        user=alice,
        streamlit_me=alice,
        static_url=lambda path, **kw: f"/hub/static/{path}",
        services=services,
        parsed_scopes={},
        login_url="/hub/login",
        logout_url="/hub/logout",
    )
    assert re.findall(r'<a class="dropdown-item" href="([^"]+)">([^<]+)</a>', html) == [
        ("http://localhost:8000/services/audit/", "Usage"),
        ("/services/other/", "other"),
    ]
