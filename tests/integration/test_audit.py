"""The audit trail against a real hub, proxy, audit service and Streamlit app servers.

- every event type appears, with the right viewer, owner, app, page and actor;
- an app server's real token cannot write another app's events nor hub events;
- the audit service stopped for 30 s while 1,000 page views happen, then killed and
  restarted by the hub: every page view arrives exactly once.
"""

import asyncio
import os
import re
import signal
import time

import pytest
import requests

from tests.helpers.hub import running_hub
from tests.helpers.procs import processes_mentioning
from tests.helpers.streamlit_ws import run_session, session, ws_url

pytestmark = pytest.mark.integration

TINY = """
import streamlit as st
st.write("main page")
"""
OTHER = """
import streamlit as st
st.write("other page")
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(
        tmp_path_factory.mktemp("audit"), extra_config="c.Spawner.poll_interval = 1\n"
    ) as h:
        folder = h.add_app("alice", "tiny", TINY)
        (folder / "pages").mkdir(exist_ok=True)
        (folder / "pages" / "2_Other.py").write_text(OTHER)
        h.admin_token = h.token("admin")
        yield h


class ServiceDown(Exception):
    pass


def events(hub, **filters) -> list[dict]:
    """Every matching event (all pages), as the admin (audit-reader) sees them."""
    out, cursor = [], None
    api = hub.api(hub.admin_token)
    while True:
        params = dict(filters, limit=1000, **({"next": cursor} if cursor else {}))
        r = api.get(hub.url + "/services/audit/api/events", params=params, timeout=30)
        if r.status_code in (502, 503):
            raise ServiceDown(r.status_code)
        assert r.status_code == 200, r.text
        out += r.json()["events"]
        cursor = r.json()["next"]
        if not cursor:
            return out


def wait_for(hub, predicate, timeout=30.0, **filters):
    deadline = time.monotonic() + timeout
    found = []
    while True:
        try:
            found = events(hub, **filters)
        except ServiceDown:
            pass  # being restarted by the hub
        if predicate(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


# An app's code can always reach its own server's token (it shares the app server's
# process); this app hands it to the test, as a hostile app would to its author.
TOKEN_THIEF = """
import gc, pathlib
import streamlit as st
from spawner.app_server.settings import Settings
token = next(o.api_token for o in gc.get_objects() if isinstance(o, Settings))
pathlib.Path("server-token.txt").write_text(token)
st.write("tiny")
"""


def app_token(hub, user, app) -> str:
    """The app server's own hub API token, as its code finds it in memory (not in
    /proc/<pid>/environ: it arrives through a pipe). The app must run TOKEN_THIEF."""
    session_ = hub.login(user)
    out = hub.home(user) / "apps" / app / "server-token.txt"
    out.unlink(missing_ok=True)
    hub.open_app(session_, user, app)
    session(
        ws_url(hub.app_origin(user), f"/user/{user}/{app}/"),
        {"Cookie": hub.app_cookie_header(session_, user, app)},
    )
    return out.read_text().strip()


def audit_service_pid(hub) -> int:
    pids = [
        p
        for p in processes_mentioning("spawner.audit.service")
        if str(hub.data_dir).encode() in open(f"/proc/{p}/environ", "rb").read()
    ]
    assert len(pids) == 1, pids
    return pids[0]


def test_the_trail_of_one_app(hub):
    alice, carol, bob, admin = (hub.login(u) for u in ("alice", "carol", "bob", "admin"))
    hub.start_app(alice, "alice", "tiny", {"path": "apps/tiny/app.py"})
    r = alice.post(f"{hub.url}/hub/api/shares/alice/tiny", json={"user": "carol"}, timeout=10)
    assert r.status_code == 200, r.text
    r = hub.open_app(carol, "alice", "tiny")
    if 'id="authorize-open-app"' in r.text:  # the plain-words consent page, once per app
        form = {
            "_xsrf": carol.cookies.get("_xsrf", path="/hub/"),
            "scopes": "read:users:groups!user",
        }
        r = carol.post(r.url, data=form, timeout=30)
    assert r.status_code == 200 and "/user/alice/tiny/" in r.url
    out = session(
        ws_url(hub.app_origin("alice"), "/user/alice/tiny/"),
        {"Cookie": hub.app_cookie_header(carol, "alice", "tiny"), "User-Agent": "audit-test/1"},
        pages=["", "Other", "Other", ""],
    )
    assert out["finished"] == 4
    refused = hub.open_app(bob, "alice", "tiny")
    assert refused.status_code == 403
    r = alice.patch(
        f"{hub.url}/hub/api/shares/alice/tiny",
        json={"user": "carol", "scopes": ["access:servers!server=alice/tiny"]},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    r = admin.delete(f"{hub.url}/hub/api/users/alice/servers/tiny", timeout=30)
    assert r.status_code in (202, 204)

    found = wait_for(
        hub,
        lambda ev: {"app_stop", "share_revoked", "session_end"} <= {e["type"] for e in ev},
        owner="alice",
        app="tiny",
    )
    by_type = {}
    for e in sorted(found, key=lambda e: e["time"]):
        by_type.setdefault(e["type"], []).append(e)
    (start,) = by_type["app_start"]
    assert (start["actor"], start["reason"], start["outcome"], start["profile"]) == (
        "alice",
        "user",
        "started",
        "small",
    )
    assert [e["extra"] for e in by_type["share_granted"]] == [{"user": "carol"}]
    assert [e["extra"] for e in by_type["share_revoked"]] == [{"user": "carol"}]
    outcomes = {(e["viewer"], e["outcome"]) for e in by_type["authorize"]}
    assert {("carol", "allowed"), ("bob", "refused")} <= outcomes
    carol_auth = next(e for e in by_type["authorize"] if e["viewer"] == "carol")
    assert carol_auth["viewer_groups"] == ["viewers"] and carol_auth["client"] == "127.0.0.1"
    (s_start,), (s_end,) = by_type["session_start"], by_type["session_end"]
    assert s_start["viewer"] == "carol" and s_start["user_agent"] == "audit-test/1"
    assert [e["page"] for e in by_type["page_view"]] == ["app", "Other", "app"]
    assert (
        {e["session"] for e in by_type["page_view"]} == {s_start["session"]} == {s_end["session"]}
    )
    assert s_end["duration_s"] > 0
    (stop,) = by_type["app_stop"]
    assert (stop["actor"], stop["reason"], stop["profile"]) == ("admin", "admin", "small")

    # Who may read: alice her own apps' trail; carol (owns nothing here) none of it.
    r = alice.get(hub.url + "/services/audit/api/events", timeout=10)
    assert r.status_code == 401  # a hub cookie is not a token for the service
    mine = (
        hub.api(hub.token("alice")).get(hub.url + "/services/audit/api/events", timeout=10).json()
    )
    assert mine["events"] and {e["owner"] for e in mine["events"]} == {"alice"}
    theirs = (
        hub.api(hub.token("carol")).get(hub.url + "/services/audit/api/events", timeout=10).json()
    )
    assert theirs["events"] == []


def test_an_app_server_token_cannot_forge_events(hub):
    alice = hub.login("alice")
    hub.add_app("alice", "forge", TOKEN_THIEF)
    hub.start_app(alice, "alice", "forge", {"path": "apps/forge/app.py"})
    token = app_token(hub, "alice", "forge")
    ingest = f"http://127.0.0.1:{hub.audit_port}/services/audit/api/events"
    api = hub.api(token)
    base = {"time": "2026-11-22T10:00:00Z", "viewer": "mallory", "page": "x"}
    attacks = [
        {**base, "id": "forged-1-0000", "type": "page_view", "owner": "bob", "app": "private"},
        {**base, "id": "forged-2-0000", "type": "page_view", "owner": "alice", "app": "tiny"},
        {**base, "id": "forged-3-0000", "type": "authorize", "outcome": "allowed"},
        {"id": "forged-4-0000", "time": base["time"], "type": "app_stop", "reason": "crash"},
    ]
    for event in attacks:
        r = api.post(ingest, json={"events": [event]}, timeout=10)
        assert r.status_code == 403, (event, r.text)
    r = api.post(
        ingest, json={"events": [{**base, "id": "honest-0000", "type": "page_view"}]}, timeout=10
    )
    assert r.status_code == 200 and r.json()["stored"] == 1
    stored = {e["id"]: e for e in events(hub, viewer="mallory")}
    assert set(stored) == {"honest-0000"}
    assert (stored["honest-0000"]["owner"], stored["honest-0000"]["app"]) == ("alice", "forge")
    hub.stop_app(alice, "alice", "forge")


def test_outage_of_30s_then_a_kill_loses_no_page_view(hub):
    """Stopped (SIGSTOP) 30 s during 1,000 page views, then SIGKILLed and restarted by the hub
    during 200 more: each page view arrives exactly once."""
    alice = hub.login("alice")
    hub.start_app(alice, "alice", "load", {"path": "apps/tiny/app.py"})
    hub.open_app(alice, "alice", "load")
    url = ws_url(hub.app_origin("alice"), "/user/alice/load/")
    headers = {"Cookie": hub.app_cookie_header(alice, "alice", "load")}

    async def views(sessions, per_session):
        pages = (["", "Other"] * per_session)[:per_session]
        results = await asyncio.gather(
            *(run_session(url, headers, pages=pages, timeout=60) for _ in range(sessions))
        )
        return sum(r["finished"] for r in results)

    pid = audit_service_pid(hub)
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        done = asyncio.run(views(4, 250))
        views_took = time.monotonic() - t0
        with pytest.raises(requests.Timeout):  # the service really is not answering
            requests.get(f"http://127.0.0.1:{hub.audit_port}/services/audit/api/health", timeout=2)
    finally:
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        outage = time.monotonic() - t0
        os.kill(pid, signal.SIGCONT)
    print(f"audit service stopped for {outage:.1f} s; 1000 page views took {views_took:.1f} s")
    assert done == 1000 and outage >= 30

    found = wait_for(hub, lambda ev: len(ev) >= 1000, timeout=90, app="load", type="page_view")
    assert len(found) == 1000 and len({e["id"] for e in found}) == 1000

    os.kill(pid, signal.SIGKILL)
    assert asyncio.run(views(2, 100)) == 200
    found = wait_for(hub, lambda ev: len(ev) >= 1200, timeout=90, app="load", type="page_view")
    assert len(found) == 1200 and len({e["id"] for e in found}) == 1200
    assert audit_service_pid(hub) != pid  # the hub restarted it
    hub.stop_app(alice, "alice", "load")


def test_usage_page_signs_in_with_the_hub_and_shows_only_what_the_reader_may_see(hub):
    alice = hub.login("alice")
    hub.start_app(alice, "alice", "mine", {"path": "apps/tiny/app.py"})
    hub.open_app(alice, "alice", "mine")
    session(
        ws_url(hub.app_origin("alice"), "/user/alice/mine/"),
        {"Cookie": hub.app_cookie_header(alice, "alice", "mine")},
    )
    # an app of her own that nobody else has opened (carol viewed "tiny" in the first test)
    wait_for(
        hub,
        lambda ev: any(e.get("viewer") == "alice" for e in ev),
        owner="alice",
        app="mine",
        type="page_view",
    )
    admin = hub.login("admin")
    page = admin.get(hub.url + "/services/audit/", timeout=30)
    assert page.status_code == 200 and page.url == hub.url + "/services/audit/", page.url
    assert "App usage and audit" in page.text and "showing all apps" in page.text
    # alice opened her own app: an own visit, not a viewer's page view (#15.12)
    row = page.text.split('<tr data-app="alice/mine">', 1)[1].split("</tr>", 1)[0]
    numbers = dict(re.findall(r'<td class="usage-(\w+)">([0-9]+)<', row))
    assert int(numbers["own"]) >= 1 and numbers["views"] == "0" and numbers["viewers"] == "0"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    # in the hub's frame: its stylesheet, served by the hub to the page's origin
    assert 'href="/hub/static/css/style.min.css"' in page.text
    css = requests.get(hub.url + "/hub/static/css/style.min.css", timeout=30)
    assert css.status_code == 200 and "navbar" in css.text
    carol = hub.login("carol")
    page = carol.get(hub.url + "/services/audit/", timeout=30)
    assert page.status_code == 200 and "apps owned by carol" in page.text
    assert "alice/mine" not in page.text and "alice/tiny" not in page.text
    anonymous = requests.get(hub.url + "/services/audit/", timeout=30)
    assert "/hub/login" in anonymous.url and "alice/mine" not in anonymous.text
    hub.stop_app(alice, "alice", "mine")


def test_the_service_keeps_its_trail_in_postgresql(tmp_path, postgres):
    from tests.helpers.postgres import fresh_database

    url = fresh_database(postgres)
    with running_hub(tmp_path, env={"STREAMLIT_HUB_AUDIT_DB_URL": url}) as h:
        h.admin_token = h.token("admin")
        alice = h.login("alice")
        h.start_app(alice, "alice", "demo", {"path": "apps/demo/app.py"})
        h.open_app(alice, "alice", "demo")
        out = session(
            ws_url(h.app_origin("alice"), "/user/alice/demo/"),
            {"Cookie": h.app_cookie_header(alice, "alice", "demo")},
            pages=["", "Details"],
        )
        assert out["finished"] == 2
        found = wait_for(h, lambda ev: len(ev) >= 2, app="demo", type="page_view")
        assert [e["page"] for e in sorted(found, key=lambda e: e["time"])] == ["app", "Details"]
    import psycopg  # the rows really are in PostgreSQL, not in a sqlite file

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        rows = conn.execute("SELECT type, count(*) FROM audit_events GROUP BY type").fetchall()
    assert dict(rows)["page_view"] == 2 and dict(rows)["authorize"] >= 1
    assert not (h.data_dir / "audit.sqlite").exists()
