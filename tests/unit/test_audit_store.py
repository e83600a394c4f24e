import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawner.audit.events import EventError, parse_event
from spawner.audit.store import AuditStore, CursorError

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def raw(i, **kw):
    return {
        "id": f"ev-{i:08d}",
        "time": (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "type": "page_view",
        "owner": "alice",
        "app": "demo",
        "viewer": "carol",
        "viewer_groups": ["viewers"],
        "page": "Details",
        **kw,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    else:
        from tests.helpers.postgres import fresh_database

        s = AuditStore(fresh_database(request.getfixturevalue("postgres")))
    yield s
    s.engine.dispose()


def test_a_valid_event_round_trips(store):
    e = parse_event(raw(1, client="127.0.0.1", user_agent="test"))
    assert store.add([e]) == 1
    events, nxt = store.query()
    assert nxt is None and events == [e.to_json()]
    assert events[0]["time"] == "2026-11-22T10:00:01.000000Z" and events[0]["schema_version"] == 1


def test_resends_are_stored_once(store):
    events = [parse_event(raw(i)) for i in range(10)]
    assert store.add(events) == 10
    assert store.add(events[3:7] + events[3:7]) == 0
    assert store.add([parse_event(raw(10)), *events[:2]]) == 1
    assert len(store.query(limit=1000)[0]) == 11


def test_paging_walks_every_event_once_newest_first(store):
    store.add([parse_event(raw(i)) for i in random.sample(range(250), 250)])
    seen, cursor = [], None
    while True:
        page, cursor = store.query(limit=100, cursor=cursor)
        seen += [e["id"] for e in page]
        if cursor is None:
            break
        store.add([parse_event(raw(1000 + len(seen)))])  # newer events arrive meanwhile
    assert seen == [f"ev-{i:08d}" for i in reversed(range(250))]


def test_filters_and_owner_restriction(store):
    store.add(
        [
            parse_event(raw(1)),
            parse_event(raw(2, owner="bob", app="sales")),
            parse_event(raw(3, viewer="dave")),
            parse_event(raw(4, type="session_start", page=None)),
        ]
    )
    ids = lambda **kw: [e["id"] for e in store.query(**kw)[0]]  # noqa: E731
    assert ids(owner="bob") == ["ev-00000002"]
    assert ids(viewer="dave") == ["ev-00000003"]
    assert ids(type="session_start") == ["ev-00000004"]
    assert ids(owners={"alice"}) == ["ev-00000004", "ev-00000003", "ev-00000001"]
    assert ids(owners=set()) == []
    assert ids(since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=4)) == [
        "ev-00000003",
        "ev-00000002",
    ]


def test_retention_purges_only_old_events(store):
    now = datetime.now(UTC)
    old = raw(1, time=(now - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    new = raw(2, time=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    store.add([parse_event(old), parse_event(new)])
    assert store.purge_older_than(30) == 1
    assert [e["id"] for e in store.query()[0]] == ["ev-00000002"]


def test_sqlite_runs_in_wal_mode(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_summary_counts_views_viewers_sessions_and_refusals(store):
    store.add(
        [
            parse_event(raw(1)),
            parse_event(raw(2, viewer="dave")),
            parse_event(raw(3)),
            parse_event(raw(4, type="session_start", page=None)),
            parse_event(raw(5, type="authorize", outcome="refused", page=None)),
            parse_event(raw(6, owner="bob", app="x")),
            # alice trying her own app: her own visits, never her viewers' (#15.12)
            parse_event(raw(7, viewer="alice")),
            parse_event(raw(8, viewer="alice")),
            parse_event(raw(9, viewer="alice", type="session_start", page=None)),
        ]
    )
    out = store.summary(owners={"alice"}, since=T0)
    assert out["apps"] == {
        ("alice", "demo"): {
            "page_views": 3,
            "viewers": 2,
            "sessions": 1,
            "refused": 1,
            "own_visits": 2,
            "last": datetime(2026, 11, 22, 10, 0, 9, tzinfo=UTC),
        }
    }
    assert out["daily"] == {("alice", "demo"): [("2026-11-22", 3)]}
    assert set(store.summary(owners=None, since=T0)["apps"]) == {("alice", "demo"), ("bob", "x")}


def test_a_forged_cursor_is_refused(store):
    with pytest.raises(CursorError):
        store.query(cursor="bm90IGEgY3Vyc29y")


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"id": "x"}, "id"),
        ({"type": "hack"}, "type"),
        ({"time": "yesterday"}, "time"),
        ({"time": "2026-11-22T10:00:00+09:00"}, "time"),
        ({"time": "2026-11-22T10:00:00"}, "time"),
        ({"owner": None}, "owner"),
        ({"page": None}, "page"),
        ({"viewer": "a" * 300}, "viewer"),
        ({"viewer_groups": "viewers"}, "viewer_groups"),
        ({"duration_s": -1}, "duration_s"),
        ({"colour": "red"}, "colour"),
        ({"schema_version": 2}, "schema_version"),
        ({"page": "a\x00b"}, "page"),
    ],
)
def test_malformed_events_are_refused_naming_the_field(patch, field):
    with pytest.raises(EventError) as e:
        parse_event({**raw(1), **patch})
    assert str(e.value).startswith(f"{field}:")


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "id",
                "time",
                "type",
                "owner",
                "app",
                "viewer",
                "page",
                "viewer_groups",
                "duration_s",
                "x",
            ]
        ),
        st.none() | st.text(max_size=20) | st.integers() | st.lists(st.text(max_size=5)),
    )
)
@settings(max_examples=300)
def test_any_json_object_parses_or_is_refused_cleanly(candidate):
    try:
        parse_event(candidate)
    except EventError as e:
        assert ":" in str(e)


def test_uuid_ids_are_accepted():
    assert parse_event(raw(1, id=str(uuid.uuid4()))).id


def test_the_published_json_schema_agrees_with_the_parser():
    import json

    import jsonschema

    from tests.helpers.hub import REPO

    schema = json.loads((REPO / "docs" / "audit-event.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = [
        raw(1),
        raw(2, type="authorize", outcome="allowed", page=None),
        raw(3, type="app_stop", viewer=None, page=None, reason="culler"),
    ]
    for candidate in good:
        candidate = {k: v for k, v in candidate.items() if v is not None}
        assert not list(validator.iter_errors(candidate))
        parse_event(candidate)
        # what the store gives back is valid too
        assert not list(validator.iter_errors(parse_event(candidate).to_json()))
    for patch in ({"type": "hack"}, {"colour": 1}, {"page": None}, {"id": "x"}):
        bad = {k: v for k, v in {**raw(1), **patch}.items() if v is not None}
        assert list(validator.iter_errors(bad))
        with pytest.raises(EventError):
            parse_event(bad)
