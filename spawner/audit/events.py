"""Audit events, schema version 1 (docs/audit-event.schema.json is the same contract).

Invariants:

- ``parse_event`` returns a normalised ``Event`` or raises ``EventError`` naming the field;
  it never lets through an unknown type, a non-UTC or unparsable time, or an oversized field.
- ``Event.id`` is chosen by the sender (a UUID), so a resent event is recognisably the same.
- An event holds only plain, strict JSON: no ``NaN`` or ``Infinity`` (Python's json module
  reads and writes them, strict readers of the export do not; ``1e999`` reads as infinity),
  no integer beyond 2**53 (I-JSON; one of 400 digits overflows a float), and nothing nested
  deeper than ``MAX_DEPTH``. ``check_plain_json`` names the field.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

SCHEMA_VERSION = 1
TYPES = (
    "authorize",
    "session_start",
    "page_view",
    "session_end",
    "app_start",
    "app_stop",
    "share_granted",
    "share_revoked",
)
MAX_EVENT_BYTES = 8192
MAX_DEPTH = 16  # the event object is depth 1; ``extra`` may nest objects inside it
_ID = re.compile(r"[A-Za-z0-9_.:-]{8,64}")
_LIMITS = {
    "viewer": 255,
    "actor": 255,
    "owner": 255,
    "app": 64,
    "profile": 63,
    "page": 255,
    "client": 64,
    "user_agent": 512,
    "outcome": 32,
    "reason": 255,
    "session": 64,
}


class EventError(ValueError):
    """The event is malformed; the message names the field."""


@dataclass(frozen=True)
class Event:
    id: str
    time: datetime
    type: str
    owner: str
    app: str
    viewer: str | None = None
    actor: str | None = None  # app_start/app_stop/shares: who did it (a user or a service)
    viewer_groups: tuple[str, ...] = ()
    profile: str | None = None
    page: str | None = None
    session: str | None = None
    client: str | None = None
    user_agent: str | None = None
    outcome: str | None = (
        None  # authorize: allowed / refused; app_start: started / refused / failed
    )
    reason: str | None = None  # app_start/app_stop: user, admin, viewer, culler, crash; session_end
    duration_s: float | None = None  # session_end
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["time"] = self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        d["viewer_groups"] = list(self.viewer_groups)
        d["schema_version"] = SCHEMA_VERSION
        return {k: v for k, v in d.items() if v not in (None, {}, [])}


def _path(parent: str, key) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def check_plain_json(value, *, where: str = "", max_depth: int = MAX_DEPTH) -> None:
    """Raise ``EventError`` naming the field if ``value`` holds a non-finite number (``NaN``,
    ``Infinity``; ``1e999`` parses to infinity), an integer beyond 2**53, or nests
    deeper than ``max_depth`` (an object or list is one level). Iterative, so no depth of
    input can exhaust the stack."""
    stack = [(where, value, 1)]
    while stack:
        path, v, depth = stack.pop()
        name = path or "(event)"
        if isinstance(v, float):
            if not math.isfinite(v):
                raise EventError(
                    f"{name}: {v!r} is not a finite number; JSON has no NaN or "
                    "Infinity, send a finite number or leave the field out"
                )
        elif isinstance(v, int) and not isinstance(v, bool):
            if abs(v) > 2**53:
                raise EventError(
                    f"{name}: a number larger than 2**53 is not read the same by "
                    "every JSON reader; send a smaller number or a string"
                )
        elif isinstance(v, (dict, list)):
            if depth > max_depth:
                raise EventError(f"{name}: nested more than {max_depth} levels deep")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            stack.extend((_path(path, k), item, depth + 1) for k, item in items)


def _text(raw: dict, name: str, required: bool = False) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise EventError(f"{name}: is required")
        return None
    if not isinstance(value, str) or not value:
        raise EventError(f"{name}: expected a non-empty string")
    if len(value) > _LIMITS.get(name, 255):
        raise EventError(f"{name}: longer than {_LIMITS.get(name, 255)} characters")
    if any(ord(c) < 32 for c in value):
        raise EventError(f"{name}: contains control characters")
    return value


def parse_time(value) -> datetime:
    if not isinstance(value, str):
        raise EventError("time: expected an ISO 8601 UTC time like 2026-11-22T10:00:00Z")
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(f"time: {value[:40]!r} is not an ISO 8601 time") from None
    if t.tzinfo is None or t.utcoffset().total_seconds() != 0:
        raise EventError("time: must be UTC (end with Z or +00:00)")
    return t.astimezone(UTC)


def parse_event(raw: object) -> Event:
    if not isinstance(raw, dict):
        raise EventError("(event): expected a JSON object")
    try:
        size = len(json.dumps(raw, separators=(",", ":"), default=str))
    except RecursionError:
        raise EventError(f"(event): nested more than {MAX_DEPTH} levels deep") from None
    except (TypeError, ValueError):
        raise EventError("(event): not plain JSON") from None
    if size > MAX_EVENT_BYTES:
        raise EventError(f"(event): {size} bytes, larger than {MAX_EVENT_BYTES}; keep events small")
    check_plain_json(raw)  # after the size check: it walks at most MAX_EVENT_BYTES of JSON
    ident = raw.get("id")
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise EventError("id: expected 8-64 of A-Z a-z 0-9 _ . : - (a UUID is fine)")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        raise EventError(f"type: expected one of {', '.join(TYPES)}")
    groups = raw.get("viewer_groups") or []
    if (
        not isinstance(groups, list)
        or not all(isinstance(g, str) and 0 < len(g) <= 255 for g in groups)
        or len(groups) > 200
    ):
        raise EventError("viewer_groups: expected a list of at most 200 group names")
    duration = raw.get("duration_s")
    if duration is not None and (
        isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0
    ):
        raise EventError("duration_s: expected a non-negative number of seconds")
    extra = raw.get("extra") or {}
    if not isinstance(extra, dict):
        raise EventError("extra: expected an object")
    known = {
        "id",
        "time",
        "type",
        "owner",
        "app",
        "viewer",
        "actor",
        "viewer_groups",
        "profile",
        "page",
        "session",
        "client",
        "user_agent",
        "outcome",
        "reason",
        "duration_s",
        "extra",
        "schema_version",
    }
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise EventError(f"{unknown[0]}: unknown field")
    version = raw.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise EventError(f"schema_version: this service reads version {SCHEMA_VERSION}")
    return Event(
        id=ident,
        time=parse_time(raw.get("time")),
        type=kind,
        owner=_text(raw, "owner", required=True),
        app=_text(raw, "app", required=True),
        viewer=_text(
            raw,
            "viewer",
            required=kind in ("authorize", "session_start", "page_view", "session_end"),
        ),
        actor=_text(raw, "actor"),
        viewer_groups=tuple(sorted(set(groups))),
        profile=_text(raw, "profile"),
        page=_text(raw, "page", required=kind == "page_view"),
        session=_text(raw, "session"),
        client=_text(raw, "client"),
        user_agent=_text(raw, "user_agent"),
        outcome=_text(raw, "outcome", required=kind == "authorize"),
        reason=_text(raw, "reason"),
        duration_s=float(duration) if duration is not None else None,
        extra=dict(extra),
    )
