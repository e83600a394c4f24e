"""The audit service against hostile bodies and app tokens (issue #12, point 5), against a
stand-in for the hub's token lookup (tests/security/test_audit_hardening.py does the same
with a real hub):

- a non-finite number (``NaN``, ``Infinity``, ``1e999``) anywhere in an event is refused with
  a 400 naming the field, and the store refuses one on its own write path too;
- any body shape or depth (a batch nested 1,000 deep, a list where an object is expected,
  a type that is a list) is a 4xx, never a 500;
- an app server's own token reads only its own app's events (API and usage page).
"""

import json
import math
from datetime import UTC, datetime

import pytest

from spawner.audit.client import new_event
from spawner.audit.events import Event, EventError, parse_event
from spawner.audit.store import AuditStore
from tests.helpers.audit_service import audit_service

SERVER_SCOPES = [
    "access:servers!server=alice/demo",
    "users:activity!user=alice",
    "read:shares!server=alice/demo",
]
TOKENS = {
    "app-token": {"kind": "user", "name": "alice", "groups": [], "scopes": SERVER_SCOPES},
    "alice-token": {
        "kind": "user",
        "name": "alice",
        "groups": [],
        "scopes": [
            "access:servers!user=alice",
            "read:users!user=alice",
            "users:activity!user=alice",
            "access:services!service=audit",
        ],
    },
    "hub-token": {"kind": "service", "name": "audit", "scopes": []},
    "auditor-token": {"kind": "user", "name": "admin", "scopes": ["custom:audit:read"]},
}


@pytest.fixture
def service(tmp_path):
    with audit_service(tmp_path, TOKENS) as call:
        yield call


def _page_view(**kw):
    return new_event("page_view", viewer="carol", page="Details", **kw)


def _batch_text(event: dict, field: str, literal: str) -> str:
    """``{"events": [event]}`` with ``field`` (dotted, e.g. extra.a.b) set to a raw JSON
    literal such as NaN, which json.dumps would not write for us."""
    marker = "__LITERAL__"
    target = event
    *parents, last = field.split(".")
    for p in parents:
        target = target.setdefault(p, {})
    target[last] = marker
    return json.dumps({"events": [event]}).replace(f'"{marker}"', literal)


# ---- non-finite numbers ---------------------------------------------------------------

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("field", ["duration_s", "extra.load", "extra.a.b"])
@pytest.mark.parametrize("token", ["hub-token", "app-token"])
def test_non_finite_numbers_are_refused_with_a_400_naming_the_field(service, literal, field, token):
    event = new_event("session_end", owner="alice", app="demo", viewer="carol")
    code, body = service("POST", "api/events", token, _batch_text(event, field, literal))
    assert code == 400, body
    message = json.loads(body)["message"]
    assert message.startswith(field + ":") and "finite" in message, message
    assert service.store.count() == 0


def test_non_finite_numbers_in_lists_name_the_position(service):
    event = _page_view(owner="alice", app="demo")
    text = _batch_text(event, "extra.xs", "[1, 2, NaN]")
    code, body = service("POST", "api/events", "hub-token", text)
    assert code == 400 and json.loads(body)["message"].startswith("extra.xs[2]:"), body


def test_in_a_mixed_batch_the_non_finite_event_is_refused_and_the_others_kept(service):
    good = _page_view(owner="alice", app="demo")
    bad = new_event("session_end", owner="alice", app="demo", viewer="carol")
    text = _batch_text(bad, "duration_s", "NaN").replace(
        '{"events": [', '{"events": [' + json.dumps(good) + ", ", 1
    )
    code, body = service("POST", "api/events", "hub-token", text)
    assert code == 200, body
    out = json.loads(body)
    assert out["stored"] == 1 and out["rejected"][0]["index"] == 1
    assert out["rejected"][0]["message"].startswith("duration_s:")
    code, export = service("GET", "api/events?format=jsonl", "auditor-token")
    for line in export.splitlines():  # a strict JSON reader reads the export
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the export"))


def test_a_duration_too_large_for_a_float_is_a_400_not_a_500(service):
    event = new_event("session_end", owner="alice", app="demo", viewer="carol")
    code, body = service(
        "POST", "api/events", "hub-token", _batch_text(event, "duration_s", "1" + "0" * 400)
    )
    assert code == 400 and json.loads(body)["message"].startswith("duration_s:"), body


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_parse_event_refuses_non_finite_numbers(value):
    raw = new_event("session_end", owner="alice", app="demo", viewer="carol")
    with pytest.raises(EventError, match=r"^duration_s: .*finite"):
        parse_event({**raw, "duration_s": value})
    with pytest.raises(EventError, match=r"^extra\.k: .*finite"):
        parse_event({**raw, "extra": {"k": value}})


@pytest.mark.parametrize(
    "event",
    [
        Event(
            id="ev-nan-0001",
            time=datetime.now(UTC),
            type="session_end",
            owner="alice",
            app="demo",
            viewer="carol",
            duration_s=math.nan,
        ),
        Event(
            id="ev-inf-0001",
            time=datetime.now(UTC),
            type="page_view",
            owner="alice",
            app="demo",
            viewer="carol",
            page="p",
            extra={"x": [math.inf]},
        ),
    ],
)
def test_the_store_never_holds_a_non_finite_number(tmp_path, event):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    try:
        good = parse_event(_page_view(owner="alice", app="demo"))
        with pytest.raises(ValueError, match="finite"):
            store.add_new([good, event])
        assert store.count() == 0  # the whole write is refused
    finally:
        store.engine.dispose()


# ---- body shape and depth -------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [50, 400, 1000, 5000, 100_000])
@pytest.mark.parametrize("where", ["extra", "body", "events"])
def test_deeply_nested_bodies_are_a_400(service, depth, where):
    event = _page_view(owner="alice", app="demo")
    if where == "extra":
        text = json.dumps({"events": [{**event, "extra": {"a": "__DEEP__"}}]})
    elif where == "events":
        text = json.dumps({"events": "__DEEP__"})
    else:
        text = '"__DEEP__"'
    text = text.replace('"__DEEP__"', _nested(depth))
    code, body = service("POST", "api/events", "hub-token", text)
    assert code == 400, (depth, where, code, body[:200])
    assert json.loads(body)["message"]
    assert service.store.count() == 0


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "[{}]",
        "1",
        "-1e999",
        "NaN",
        '"events"',
        "true",
        "null",
        '{"events": {}}',
        '{"events": [1, "x", null, []]}',
        '{"events": NaN}',
        "{}",
        "",
    ],
)
@pytest.mark.parametrize("token", ["hub-token", "app-token"])
def test_any_body_shape_is_a_4xx(service, text, token):
    code, body = service("POST", "api/events", token, text)
    assert 400 <= code < 500, (text, code, body[:200])
    assert json.loads(body)["message"]


@pytest.mark.parametrize(
    "field,value",
    [
        ("type", []),
        ("type", {}),
        ("type", ["page_view"]),
        ("owner", ["alice"]),
        ("app", {}),
        ("id", []),
        ("time", 12),
        ("viewer_groups", [[]]),
        ("extra", [1]),
        ("page", {"a": 1}),
    ],
)
@pytest.mark.parametrize("token", ["hub-token", "app-token"])
def test_odd_field_types_are_a_4xx(service, field, value, token):
    event = {**_page_view(owner="alice", app="demo"), field: value}
    code, body = service("POST", "api/events", token, {"events": [event]})
    assert 400 <= code < 500, (field, value, code, body[:200])
    assert service.store.count() == 0


# ---- what an app server's token reads -------------------------------------------------


def _seed(service):
    events = [
        _page_view(owner="alice", app="demo"),
        _page_view(owner="alice", app="other"),
        new_event("authorize", owner="alice", app="other", viewer="dave", outcome="allowed"),
        _page_view(owner="bob", app="demo"),
    ]
    code, _ = service("POST", "api/events", "hub-token", {"events": events})
    assert code == 200


def test_an_app_token_reads_only_its_own_apps_events(service):
    _seed(service)
    code, body = service("GET", "api/events", "app-token")
    assert code == 200
    assert {(e["owner"], e["app"]) for e in json.loads(body)["events"]} == {("alice", "demo")}
    for query in (
        "app=other",
        "owner=alice&app=other",
        "owner=bob",
        "viewer=dave",
        "type=authorize",
    ):
        code, body = service("GET", f"api/events?{query}", "app-token")
        assert code == 200 and json.loads(body)["events"] == [], query
    for fmt in ("csv", "jsonl"):
        code, body = service("GET", f"api/events?format={fmt}", "app-token")
        assert code == 200 and "other" not in body and "dave" not in body, fmt
    # the owner's own token still reads all of the owner's apps
    code, body = service("GET", "api/events", "alice-token")
    assert {(e["owner"], e["app"]) for e in json.loads(body)["events"]} == {
        ("alice", "demo"),
        ("alice", "other"),
    }


def test_an_app_token_sees_only_its_own_app_on_the_usage_page(service):
    _seed(service)
    code, page = service("GET", "", "app-token")
    assert code == 200 and "alice/demo" in page
    assert "alice/other" not in page and "dave" not in page
    code, page = service("GET", "", "alice-token")
    assert code == 200 and "alice/other" in page


def test_token_reach():
    from spawner.audit.service import token_reach

    assert token_reach(TOKENS["auditor-token"]) is None  # everything
    assert token_reach(TOKENS["app-token"]) == ({"alice"}, ("alice", "demo"))
    assert token_reach(TOKENS["alice-token"]) == ({"alice"}, None)
    assert token_reach({"kind": "service", "name": "x", "scopes": []}) == (set(), None)
