"""The audit service's rules, against a stand-in for the hub's token lookup.

The stand-in answers "whose token is this, with which scopes" as the hub's /hub/api/user does;
tests/integration/test_audit.py checks the same rules against a real hub.
"""

import io
import json

import pytest

from spawner.audit.client import new_event
from spawner.audit.service import app_of_token
from tests.helpers.audit_service import audit_service

TOKENS = {
    "app-token": {
        "kind": "user",
        "name": "alice",
        "groups": [],
        "scopes": [
            "access:servers!server=alice/demo",
            "users:activity!user=alice",
            "read:shares!server=alice/demo",
        ],
    },
    "alice-token": {
        "kind": "user",
        "name": "alice",
        "groups": [],
        "scopes": ["access:servers!user=alice", "read:users!user=alice"],
    },
    "hub-token": {"kind": "service", "name": "audit", "scopes": []},
    "auditor-token": {"kind": "user", "name": "admin", "scopes": ["custom:audit:read"]},
}


@pytest.fixture
def service(tmp_path):
    stream = io.StringIO()
    with audit_service(tmp_path, TOKENS, event_stream=stream) as call:
        call.stream = stream
        yield call


def _page_view(**kw):
    return new_event("page_view", viewer="carol", page="Details", **kw)


def test_app_server_writes_its_own_app_and_owner_comes_from_the_token(service):
    code, body = service("POST", "api/events", "app-token", {"events": [_page_view()]})
    assert code == 200 and json.loads(body)["stored"] == 1
    code, body = service("GET", "api/events", "auditor-token")
    (stored,) = json.loads(body)["events"]
    assert (stored["owner"], stored["app"], stored["page"]) == ("alice", "demo", "Details")


@pytest.mark.parametrize(
    "event,why",
    [
        (_page_view(owner="bob", app="secret"), "owner/app"),
        (_page_view(owner="alice", app="other"), "owner/app"),
        (new_event("authorize", owner="alice", app="demo", viewer="x", outcome="allowed"), "type"),
        (new_event("app_stop", owner="alice", app="demo", reason="crash"), "type"),
    ],
)
def test_app_server_cannot_forge_events(service, event, why):
    code, body = service("POST", "api/events", "app-token", {"events": [event]})
    assert code == 403 and json.loads(body)["rejected"][0]["message"].startswith(why)
    code, body = service("GET", "api/events", "auditor-token")
    assert json.loads(body)["events"] == []


def test_a_user_token_that_is_not_an_app_servers_may_not_write(service):
    code, body = service("POST", "api/events", "alice-token", {"events": [_page_view()]})
    assert code == 403 and "may not write" in body
    assert service("POST", "api/events", None, {"events": [_page_view()]})[0] == 401
    assert service("POST", "api/events", "forged", {"events": [_page_view()]})[0] == 401


def test_hub_writes_any_event_and_resends_are_stored_and_logged_once(service):
    event = new_event("authorize", owner="bob", app="x", viewer="carol", outcome="refused")
    for _ in range(3):
        code, body = service("POST", "api/events", "hub-token", {"events": [event, event]})
        assert code == 200
    code, body = service("GET", "api/events", "auditor-token")
    assert [e["id"] for e in json.loads(body)["events"]] == [event["id"]]
    (line,) = service.stream.getvalue().splitlines()  # one JSON line for log collectors
    logged = json.loads(line)
    assert logged["log_type"] == "streamlit_hub_audit" and logged["id"] == event["id"]
    assert logged["viewer"] == "carol" and logged["outcome"] == "refused"


def test_bad_batches_get_reasons_and_good_events_in_them_are_kept(service):
    good = _page_view(owner="alice", app="demo")
    code, body = service("POST", "api/events", "hub-token", {"events": [good, {"id": "x"}]})
    assert code == 200 and json.loads(body)["stored"] == 1
    assert json.loads(body)["rejected"][0]["index"] == 1
    for payload, status in (
        ("not json", 400),
        ({"events": "x"}, 400),
        ([1, 2], 400),
        ({"events": [{"id": "only-an-id"}]}, 400),
    ):
        code, body = service("POST", "api/events", "hub-token", payload)
        assert code == status and json.loads(body)["message"]


def test_readers_see_everything_owners_see_their_own(service):
    service(
        "POST",
        "api/events",
        "hub-token",
        {"events": [_page_view(owner="alice", app="demo"), _page_view(owner="bob", app="b")]},
    )
    _, body = service("GET", "api/events", "alice-token")
    assert {e["owner"] for e in json.loads(body)["events"]} == {"alice"}
    _, body = service("GET", "api/events", "auditor-token")
    assert {e["owner"] for e in json.loads(body)["events"]} == {"alice", "bob"}
    assert service("GET", "api/events", None)[0] == 401


def test_query_filters_paging_and_exports(service):
    events = [_page_view(owner="alice", app="demo") for _ in range(7)]
    events[0]["viewer"] = '=HYPERLINK("http://evil")'
    service("POST", "api/events", "hub-token", {"events": events})
    seen, cursor = [], None
    while True:
        q = "api/events?limit=3" + (f"&next={cursor}" if cursor else "")
        page = json.loads(service("GET", q, "auditor-token")[1])
        seen += [e["id"] for e in page["events"]]
        cursor = page["next"]
        if not cursor:
            break
    assert sorted(seen) == sorted(e["id"] for e in events)
    code, csv_text = service("GET", "api/events?format=csv", "auditor-token")
    assert code == 200 and len(csv_text.strip().splitlines()) == 8
    assert "'=HYPERLINK" in csv_text  # a formula is text in a spreadsheet
    code, lines = service("GET", "api/events?format=jsonl&viewer=carol", "auditor-token")
    assert len(lines.strip().splitlines()) == 6
    for query, word in (
        ("type=nope", "type"),
        ("limit=0", "limit"),
        ("since=yesterday", "since"),
        ("next=garbage", "next"),
        ("format=xml", "format"),
    ):
        code, body = service("GET", f"api/events?{query}", "auditor-token")
        assert code == 400 and json.loads(body)["message"].startswith(word), (query, body)


def test_app_of_token_needs_exactly_one_own_server():
    assert app_of_token(TOKENS["app-token"]) == ("alice", "demo")
    assert app_of_token(TOKENS["alice-token"]) is None
    two = {"name": "alice", "scopes": ["access:servers!server=alice/a", "x:y!server=alice/b"]}
    assert app_of_token(two) is None
    other = {"name": "alice", "scopes": ["access:servers!server=bob/a"]}
    assert app_of_token(other) is None


def test_usage_page_escapes_every_name():
    from spawner.audit.pages import render_usage_page

    evil = "<script>alert(1)</script>"
    summary = {
        "apps": {
            (evil, "app"): {
                "page_views": 1,
                "viewers": 1,
                "sessions": 1,
                "refused": 0,
                "own_visits": 1,
                "last": evil,
            }
        },
        "daily": {(evil, "app"): [(evil, 1)]},
    }
    recent = [
        {
            "time": evil,
            "type": "page_view",
            "owner": evil,
            "app": evil,
            "viewer": evil,
            "page": evil,
        }
    ]
    out = render_usage_page(evil, True, summary, recent, 14, "/services/audit/")
    assert "<script>" not in out and "&lt;script&gt;" in out


def test_metrics_count_page_views_by_app_and_need_a_scope(service):
    service("POST", "api/events", "app-token", {"events": [_page_view(), _page_view()]})
    service("POST", "api/events", "app-token", {"events": [{"id": "bad"}]})
    code, text = service("GET", "metrics", "auditor-token")
    assert code == 200
    assert 'streamlit_hub_audit_page_views_total{app="demo",owner="alice"} 2.0' in text
    assert "streamlit_hub_audit_events_rejected_total 1.0" in text
    assert "streamlit_hub_audit_delivery_lag_seconds_count 2.0" in text
    assert service("GET", "metrics", "alice-token")[0] == 403
    assert service("GET", "metrics", None)[0] == 401


def test_oversized_events_and_batches_are_refused_and_the_rest_kept(service):
    good = _page_view(owner="alice", app="demo")
    huge = {**_page_view(owner="alice", app="demo"), "extra": {"blob": "x" * 20000}}
    code, body = service("POST", "api/events", "hub-token", {"events": [good, huge]})
    assert code == 200 and json.loads(body)["stored"] == 1
    (rejected,) = json.loads(body)["rejected"]
    assert rejected["index"] == 1 and "larger than 8192" in rejected["message"]
    code, body = service("POST", "api/events", "hub-token", {"events": [good] * 5001})
    assert code == 413 and "At most 5000 events" in json.loads(body)["message"]


# ---- the CSV formula guard (issue 18, survivor 5): every lead a spreadsheet reads as a formula
FORMULA_LEADS = ["=", "+", "-", "@", "\t", "\r"]


@pytest.mark.parametrize("lead", FORMULA_LEADS)
def test_csv_cell_makes_every_formula_lead_text(lead):
    from spawner.audit.service import _csv_cell

    value = lead + 'HYPERLINK("http://evil")'
    assert _csv_cell(value) == "'" + value
    assert _csv_cell([lead + "x", "y"]) == "'" + lead + "x,y"  # a list's first item leads


@pytest.mark.parametrize(
    "value, cell",
    [
        (None, ""),
        ("", ""),
        ("carol", "carol"),
        ("a=b", "a=b"),
        ("'quoted", "'quoted"),
        (" =x", " =x"),
        (["b", "a"], "b,a"),
        ([], ""),
        (1.5, "1.5"),
        (0, "0"),
    ],
)
def test_csv_cell_leaves_ordinary_values_alone(value, cell):
    from spawner.audit.service import _csv_cell

    assert _csv_cell(value) == cell


def test_the_csv_export_neutralises_every_formula_lead(service):
    import csv

    # Text fields refuse control characters at ingest, group names do not: a tab or CR can
    # lead a cell through viewer_groups only.
    events = []
    for lead in FORMULA_LEADS:
        e = _page_view(owner="alice", app="demo")
        e["viewer_groups"] = [lead + "SUM(A1)"]
        if lead.isprintable():
            e["page"] = lead + "SUM(A1)"
        events.append(e)
    code, body = service("POST", "api/events", "hub-token", {"events": events})
    assert code == 200 and json.loads(body)["stored"] == len(FORMULA_LEADS), body
    code, text = service("GET", "api/events?format=csv", "auditor-token")
    assert code == 200
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert sorted(r["viewer_groups"] for r in rows) == sorted(
        "'" + lead + "SUM(A1)" for lead in FORMULA_LEADS
    )
    assert sorted(r["page"] for r in rows if r["page"] != "Details") == sorted(
        "'" + lead + "SUM(A1)" for lead in FORMULA_LEADS if lead.isprintable()
    )
    assert all(r["viewer"] == "carol" for r in rows)
