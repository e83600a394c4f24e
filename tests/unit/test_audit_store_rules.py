"""The audit store's paging, limits, summary and retention at their edges (sqlite).

tests/unit/test_audit_store.py runs the main properties on sqlite and PostgreSQL; these pin
the boundaries one by one (for mutation testing, docs/testing.md), and check the statement the
store sends to PostgreSQL without a server.
"""

import math
import warnings
from datetime import UTC, datetime, timedelta, timezone

import pytest

import spawner.audit.store as store_module
from spawner.audit.events import Event
from spawner.audit.store import AuditStore, _naive_utc, audit_events

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def ev(i, t=None, **kw):
    fields = {"type": "page_view", "owner": "alice", "app": "demo", "viewer": "carol", "page": "P"}
    fields.update(kw)
    return Event(id=f"ev-{i:08d}", time=t or T0 + timedelta(seconds=i), **fields)


@pytest.fixture
def store(tmp_path):
    s = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    yield s
    s.engine.dispose()


def ids(page):
    return [e["id"] for e in page]


# ---- paging ---------------------------------------------------------------------------------
def test_the_default_page_is_100_events(store):
    store.add([ev(i) for i in range(101)])
    page, nxt = store.query()
    assert len(page) == 100 and nxt is not None
    rest, end = store.query(cursor=nxt)
    assert ids(rest) == ["ev-00000000"] and end is None


def test_a_page_that_ends_exactly_at_the_last_event_has_no_next(store):
    store.add([ev(i) for i in range(3)])
    page, nxt = store.query(limit=3)
    assert len(page) == 3 and nxt is None
    page, nxt = store.query(limit=2)
    assert len(page) == 2 and nxt is not None


def test_the_limit_is_clamped_to_1_to_1000(store):
    store.add([ev(i) for i in range(1002)])
    assert len(store.query(limit=0)[0]) == 1
    assert len(store.query(limit=-5)[0]) == 1
    page, nxt = store.query(limit=1001)
    assert len(page) == 1000 and nxt is not None
    assert len(store.query(limit="7")[0]) == 7


def test_events_at_the_same_time_are_ordered_by_id_and_paged_exactly_once(store):
    same = [ev(i, t=T0) for i in (3, 1, 4, 5, 9, 2, 6)]
    store.add(
        [
            *same,
            ev(100, t=T0 + timedelta(seconds=1)),
            ev(101, t=T0 - timedelta(seconds=1)),
            ev(0, t=T0 + timedelta(seconds=2)),
        ]
    )  # later, with the smallest id
    seen, cursor = [], None
    while True:
        page, cursor = store.query(limit=2, cursor=cursor)
        seen += ids(page)
        if cursor is None:
            break
    assert seen == ["ev-00000000", "ev-00000100"] + [
        f"ev-{i:08d}" for i in (9, 6, 5, 4, 3, 2, 1)
    ] + ["ev-00000101"]


def test_an_unfiltered_query_builds_no_empty_condition(store):
    store.add([ev(1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and_() of nothing is deprecated in SQLAlchemy
        assert ids(store.query()[0]) == ["ev-00000001"]


def test_since_is_inclusive_and_until_exclusive(store):
    store.add([ev(i) for i in range(5)])
    got = ids(store.query(since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3))[0])
    assert got == ["ev-00000002", "ev-00000001"]


# ---- what is stored -------------------------------------------------------------------------
def test_a_non_finite_number_is_refused_naming_the_event_and_field(store):
    bad = ev(1, extra={"ratio": math.nan})
    with pytest.raises(ValueError) as e:
        store.add([ev(2), bad])
    assert str(e.value).startswith("event ev-00000001: extra.ratio: nan is not a finite number")
    assert str(e.value).endswith("; not stored")
    assert store.count() == 0  # the whole write is refused


def test_the_json_column_is_written_by_a_strict_encoder(store):
    # even a row that bypasses the event checks cannot hold NaN
    row = {
        "id": "raw-0001",
        "time": _naive_utc(T0),
        "type": "page_view",
        "owner": "a",
        "app": "b",
        "viewer": None,
        "outcome": None,
        "body": {"x": math.inf},
        "received_at": _naive_utc(T0),
    }
    with pytest.raises(Exception) as e:
        with store.engine.begin() as conn:
            conn.execute(audit_events.insert(), [row])
    assert "Out of range float values are not JSON compliant" in str(e.value)
    assert store.count() == 0


def test_naive_utc_converts_from_any_zone_whatever_the_machines(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        tokyo = datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=9)))
        assert _naive_utc(tokyo) == datetime(2026, 1, 1, 0, 30)
        assert _naive_utc(T0) == datetime(2026, 11, 22, 10, 0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


class _Recorder:
    """An engine stand-in that keeps the statement instead of running it."""

    class dialect:
        name = "postgresql"

    def __init__(self):
        self.statements = []

    def connect(self):
        recorder = self

        class Result(list):
            def all(self):
                return list(self)

        class Conn:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def execute(self, stmt, *rows):
                recorder.statements.append((stmt, rows))
                return Result()

        return Conn()

    def begin(self):
        recorder = self

        class Conn:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def execute(self, stmt, rows):
                recorder.statements.append((stmt, rows))
                return []

        return Conn()


def test_the_insert_sent_to_pg_skips_known_ids_by_on_conflict():
    # (no 'postgresql' in this name: the mutation run deselects the PostgreSQL server tests by it)
    from sqlalchemy.dialects import postgresql

    s = object.__new__(AuditStore)
    s.engine = _Recorder()
    assert isinstance(s._insert(), postgresql.Insert)
    assert s.add_new([ev(1), ev(1), ev(2)]) == set()
    ((stmt, rows),) = s.engine.statements
    sql = str(stmt.compile(dialect=postgresql.dialect()))
    assert "ON CONFLICT (id) DO NOTHING RETURNING audit_events.id" in sql
    assert [r["id"] for r in rows] == ["ev-00000001", "ev-00000002"]  # one row per id
    assert rows[0]["body"]["id"] == "ev-00000001" and rows[0]["time"] == datetime(
        2026, 11, 22, 10, 0, 1
    )


def test_on_sqlite_the_store_uses_sqlites_insert(store):
    from sqlalchemy.dialects import sqlite

    assert isinstance(store._insert(), sqlite.Insert)


def test_nothing_to_add_touches_nothing(store):
    assert store.add_new([]) == set() and store.add([]) == 0


# ---- retention ------------------------------------------------------------------------------
def test_retention_keeps_an_event_exactly_at_the_cutoff(store, monkeypatch):
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return now if tz else now.replace(tzinfo=None)

    store.add(
        [ev(1, t=now - timedelta(days=30)), ev(2, t=now - timedelta(days=30, microseconds=1))]
    )
    monkeypatch.setattr(store_module, "datetime", Frozen)
    assert store.purge_older_than(30) == 1
    assert ids(store.query()[0]) == ["ev-00000001"]


# ---- the usage summary ----------------------------------------------------------------------
def _counts(page_views=0, viewers=0, sessions=0, refused=0, own_visits=0, last=T0):
    return {
        "page_views": page_views,
        "viewers": viewers,
        "sessions": sessions,
        "refused": refused,
        "own_visits": own_visits,
        "last": last,
    }


def test_summary_counts_each_app_of_each_owner_apart(store):
    store.add(
        [
            ev(1, viewer="carol"),
            ev(2, viewer="dave", outcome="x"),  # page views in two groups
            ev(3, type="session_start", page=None, viewer="erin"),
            ev(4, type="session_start", page=None, viewer="erin", outcome="y"),
            ev(5, type="authorize", page=None, viewer="mallory", outcome="refused"),
            ev(6, type="authorize", page=None, viewer="frank", outcome="allowed"),
            ev(7, app="other", viewer="carol"),
            ev(8, owner="bob", viewer="carol"),  # bob's app of the same name
            ev(9, type="app_start", page=None, viewer=None, app="quiet"),
        ]
    )
    out = store.summary(owners=None, since=T0)
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    assert out["apps"] == {
        ("alice", "demo"): _counts(2, 3, 2, 1, last=at(6)),
        ("alice", "other"): _counts(1, 1, last=at(7)),
        ("bob", "demo"): _counts(1, 1, last=at(8)),
        ("alice", "quiet"): _counts(last=at(9)),
    }
    assert out["daily"] == {
        ("alice", "demo"): [("2026-11-22", 2)],
        ("alice", "other"): [("2026-11-22", 1)],
        ("bob", "demo"): [("2026-11-22", 1)],
    }


def test_summary_keeps_the_owners_own_visits_apart(store):
    """An owner opening their own app is neither a page view, a viewer, a session nor a bar of
    the chart: it is an own visit (#15.12). Another owner's visit is a viewer's."""
    store.add(
        [
            ev(1, viewer="alice"),
            ev(2, viewer="alice", page="Q"),
            ev(3, viewer="alice", type="session_start", page=None),
            ev(4, viewer="alice", type="authorize", page=None, outcome="allowed"),
            ev(5, viewer="bob"),
            ev(6, owner="bob", viewer="alice"),
            ev(7, owner="bob", viewer="alice", type="session_start", page=None),
        ]
    )
    out = store.summary(owners=None, since=T0)
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    assert out["apps"] == {
        ("alice", "demo"): _counts(page_views=1, viewers=1, own_visits=2, last=at(5)),
        ("bob", "demo"): _counts(page_views=1, viewers=1, sessions=1, last=at(7)),
    }
    assert out["daily"] == {
        ("alice", "demo"): [("2026-11-22", 1)],
        ("bob", "demo"): [("2026-11-22", 1)],
    }
    store.add([ev(8, app="solo", viewer="alice")])  # only the owner ever looked
    solo = store.summary(owners={"alice"}, since=T0, app="solo")
    assert solo == {"apps": {("alice", "solo"): _counts(own_visits=1, last=at(8))}, "daily": {}}


def test_summary_days_in_order_and_the_latest_event(store):
    days = [T0 + timedelta(days=d, hours=h) for d, h in ((2, 1), (0, 0), (1, 5), (2, 3))]
    store.add([ev(i, t=t) for i, t in enumerate(days)])
    out = store.summary(owners={"alice"}, since=T0)
    assert out["daily"] == {
        ("alice", "demo"): [("2026-11-22", 1), ("2026-11-23", 1), ("2026-11-24", 2)]
    }
    assert out["apps"][("alice", "demo")]["last"] == datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def test_summary_since_is_inclusive_and_filters_by_owner_and_app(store):
    store.add([ev(1, t=T0), ev(2, t=T0 - timedelta(seconds=1)), ev(3, owner="bob"), ev(4, app="x")])
    out = store.summary(owners={"alice"}, since=T0)
    assert out["apps"][("alice", "demo")]["page_views"] == 1 and ("bob", "demo") not in out["apps"]
    only = store.summary(owners=None, since=T0, app="x")
    assert list(only["apps"]) == [("alice", "x")] and list(only["daily"]) == [("alice", "x")]
    assert store.summary(owners=set(), since=T0) == {"apps": {}, "daily": {}}


def test_summary_last_is_the_latest_of_all_kinds_of_event(store):
    # the groups of one app come back in key order (page_view before session_start): the
    # latest stamp must win whichever group holds it
    store.add(
        [
            ev(1, t=T0 + timedelta(hours=3)),
            ev(2, type="session_start", page=None, t=T0 + timedelta(hours=1)),
            ev(3, type="authorize", page=None, outcome="allowed", t=T0),
        ]
    )
    last = store.summary(owners=None, since=T0)["apps"][("alice", "demo")]["last"]
    assert last == datetime(2026, 11, 22, 13, 0, tzinfo=UTC) and last.tzinfo is UTC


def test_pages_and_days_are_ordered_by_the_database_not_by_chance():
    # sqlite returns ties and groups in index order anyway; PostgreSQL promises nothing
    from sqlalchemy.dialects import postgresql

    s = object.__new__(AuditStore)
    s.engine = _Recorder()
    s.query(limit=5)
    s.summary(owners=None, since=T0)
    sql = [str(stmt.compile(dialect=postgresql.dialect())) for stmt, _ in s.engine.statements]
    assert "ORDER BY audit_events.time DESC, audit_events.id DESC" in sql[0]
    assert sql[3].rstrip().endswith("ORDER BY date(audit_events.time)")
