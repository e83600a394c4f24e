"""The append-only audit store: sqlite (WAL) by default, PostgreSQL by URL (SQLAlchemy Core).

Invariants:

- ``add`` stores each event id at most once, whatever the order or number of resends; it
  returns how many were new. Nothing in this module updates or deletes a stored event, except
  ``purge_older_than`` (retention).
- Nothing stored holds a non-finite number (``NaN``, ``Infinity``): ``add_new`` refuses the
  whole write with a ``ValueError`` naming the event and field, and the JSON column is
  written by a strict encoder, so a strict JSON reader can read every export.
- ``query`` pages newest first with an opaque cursor; walking every page yields each
  matching event exactly once, even while new events arrive.

The service calls this from a thread pool, so the event loop never waits on the database.
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    and_,
    create_engine,
    distinct,
    event,
    func,
    or_,
    select,
)

from .events import Event, EventError, check_plain_json

metadata = MetaData()
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("time", DateTime, nullable=False),  # naive UTC
    Column("type", String(32), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("app", String(64), nullable=False),
    Column("viewer", String(255)),
    Column("outcome", String(32)),
    Column("body", JSON, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Index("ix_audit_time_id", "time", "id"),
    Index("ix_audit_owner_app_time", "owner", "app", "time"),
    Index("ix_audit_viewer_time", "viewer", "time"),
)


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


class CursorError(ValueError):
    pass


def _encode_cursor(t: datetime, ident: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([t.isoformat(), ident]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        t, ident = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(t), str(ident)
    except (ValueError, TypeError):
        raise CursorError("next: not a cursor this service gave out") from None


class AuditStore:
    def __init__(self, url: str):
        # Strict JSON in the body column: a NaN that got past the checks fails, never lands.
        strict = functools.partial(json.dumps, allow_nan=False)
        self.engine = create_engine(url, future=True, json_serializer=strict)
        if self.engine.dialect.name == "sqlite":

            @event.listens_for(self.engine, "connect")
            def _wal(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        metadata.create_all(self.engine)

    def _insert(self):
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(audit_events)

    def add(self, events: list[Event]) -> int:
        """Store events not seen before; return how many were new."""
        return len(self.add_new(events))

    def add_new(self, events: list[Event]) -> set[str]:
        """Store events not seen before; return the ids of those that were new."""
        if not events:
            return set()
        now = _naive_utc(datetime.now(UTC))
        for e in events:
            try:
                check_plain_json(e.to_json())
            except EventError as err:
                raise ValueError(f"event {e.id}: {err}; not stored") from None
        rows = [
            {
                "id": e.id,
                "time": _naive_utc(e.time),
                "type": e.type,
                "owner": e.owner,
                "app": e.app,
                "viewer": e.viewer,
                "outcome": e.outcome,
                "body": e.to_json(),
                "received_at": now,
            }
            for e in {e.id: e for e in events}.values()
        ]
        stmt = (
            self._insert()
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(audit_events.c.id)
        )
        with self.engine.begin() as conn:
            # RETURNING yields only the rows actually inserted (executemany's rowcount is
            # not that on PostgreSQL); SQLAlchemy batches it as "insertmanyvalues".
            return {row.id for row in conn.execute(stmt, rows)}

    def query(
        self,
        *,
        owners: set[str] | None = None,
        owner: str | None = None,
        app: str | None = None,
        viewer: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict], str | None]:
        """Events newest first, and the cursor of the next page (None at the end).

        ``owners``: restrict to these owners' apps (None: everything, for admins).
        """
        t = audit_events
        where = []
        if owners is not None:
            if not owners:
                return [], None
            where.append(t.c.owner.in_(sorted(owners)))
        for col, value in (
            (t.c.owner, owner),
            (t.c.app, app),
            (t.c.viewer, viewer),
            (t.c.type, type),
        ):
            if value is not None:
                where.append(col == value)
        if since is not None:
            where.append(t.c.time >= _naive_utc(since))
        if until is not None:
            where.append(t.c.time < _naive_utc(until))
        if cursor:
            ct, cid = _decode_cursor(cursor)
            where.append(or_(t.c.time < ct, and_(t.c.time == ct, t.c.id < cid)))
        limit = max(1, min(int(limit), 1000))
        stmt = (
            select(t.c.time, t.c.id, t.c.body)
            .where(and_(*where) if where else True)
            .order_by(t.c.time.desc(), t.c.id.desc())
            .limit(limit + 1)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        page = rows[:limit]
        nxt = _encode_cursor(page[-1].time, page[-1].id) if len(rows) > limit else None
        return [r.body for r in page], nxt

    def summary(self, *, owners: set[str] | None, since: datetime, app: str | None = None) -> dict:
        """Per app since ``since``: its viewers' page views, distinct viewers and sessions,
        refusals, the owner's own visits (their page views of their own app, counted apart: an
        owner trying their app is not its audience) and the time of its latest event (UTC);
        and the viewers' page views per day (for the usage page). ``app``: only apps of that
        name."""
        t = audit_events
        where = [t.c.time >= _naive_utc(since)]
        if app is not None:
            where.append(t.c.app == app)
        if owners is not None:
            if not owners:
                return {"apps": {}, "daily": {}}
            where.append(t.c.owner.in_(sorted(owners)))
        apps: dict = {}
        viewing = t.c.type.in_(("session_start", "page_view"))
        # NULL (no viewer) is no one's own visit; the expression has no parameters, so the
        # SELECT and the GROUP BY say the same thing to PostgreSQL.
        own = t.c.viewer == t.c.owner
        others = t.c.viewer != t.c.owner
        with self.engine.connect() as conn:
            for owner, app, kind, outcome, mine, n, last in conn.execute(
                select(
                    t.c.owner, t.c.app, t.c.type, t.c.outcome, own, func.count(), func.max(t.c.time)
                )
                .where(*where)
                .group_by(t.c.owner, t.c.app, t.c.type, t.c.outcome, own)
            ):
                s = apps.setdefault(
                    (owner, app),
                    {
                        "page_views": 0,
                        "viewers": 0,
                        "sessions": 0,
                        "refused": 0,
                        "own_visits": 0,
                        "last": None,
                    },
                )
                if kind == "page_view" and mine:
                    s["own_visits"] += n
                elif kind == "page_view":
                    s["page_views"] += n
                elif kind == "session_start" and not mine:
                    s["sessions"] += n
                elif kind == "authorize" and outcome == "refused":
                    s["refused"] += n
                last = last.replace(tzinfo=UTC)
                if s["last"] is None or last > s["last"]:
                    s["last"] = last
            for owner, app, n in conn.execute(
                select(t.c.owner, t.c.app, func.count(distinct(t.c.viewer)))
                .where(*where, viewing, others)
                .group_by(t.c.owner, t.c.app)
            ):
                apps[(owner, app)]["viewers"] = n
            daily: dict = {}
            day = func.date(t.c.time)
            for owner, app, d, n in conn.execute(
                select(t.c.owner, t.c.app, day, func.count())
                .where(*where, t.c.type == "page_view", others)
                .group_by(t.c.owner, t.c.app, day)
                .order_by(day)
            ):
                daily.setdefault((owner, app), []).append((str(d), n))
        return {"apps": apps, "daily": daily}

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(audit_events)).scalar_one()

    def purge_older_than(self, days: float) -> int:
        """Retention: delete events older than ``days``; return how many."""
        cutoff = _naive_utc(datetime.now(UTC) - timedelta(days=days))
        with self.engine.begin() as conn:
            return conn.execute(audit_events.delete().where(audit_events.c.time < cutoff)).rowcount
