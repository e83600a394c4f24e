"""Audit events, schema version 1: the contract is the JSON schema next to this file.

``audit-event.schema.json`` (in this package; ``docs/audit-event.schema.json`` is a copy) is
the single source of the event contract. This module reads from it, at import: the schema
version, the event types, the fields, the limits of every text field and of
``viewer_groups``, the minimum of ``duration_s``, the pattern of ``id`` and ``time``, which
fields each type requires (``required`` and the ``allOf`` rules), and the size and depth
limits (``x-maxEventBytes``, ``x-maxDepth``). Adding a type or a field is an edit of the
schema (and of ``Event`` for a field); tests/unit/test_event_contract.py proves the parser,
the OpenAPI document and the docs agree with it.

Invariants:

- ``parse_event`` returns a normalised ``Event`` or raises ``EventError`` naming the field;
  it never lets through an unknown type, a non-UTC or unparsable time, or an oversized field.
  It accepts only what the schema accepts, and refuses besides what the schema cannot say
  (its description lists it): text with control characters, a time that is not a real one.
  An optional field sent as ``null`` is read as absent (``to_json`` never writes one).
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
from pathlib import Path

from ..utc import iso_z

SCHEMA_FILE = Path(__file__).with_name("audit-event.schema.json")
SCHEMA: dict = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
_PROPERTIES: dict = SCHEMA["properties"]

SCHEMA_VERSION = _PROPERTIES["schema_version"]["const"]
TYPES: tuple[str, ...] = tuple(_PROPERTIES["type"]["enum"])
FIELDS = frozenset(_PROPERTIES)
MAX_EVENT_BYTES: int = SCHEMA["x-maxEventBytes"]  # of the compact JSON text
MAX_DEPTH: int = SCHEMA["x-maxDepth"]  # the event object is depth 1; ``extra`` may nest inside
_ID = re.compile(_PROPERTIES["id"]["pattern"])
_TIME = re.compile(_PROPERTIES["time"]["pattern"])
# Each text field's maximum length, in the schema's order (parse_event checks them in it).
_LIMITS: dict[str, int] = {
    name: spec["maxLength"]
    for name, spec in _PROPERTIES.items()
    if spec.get("type") == "string" and "maxLength" in spec
}
MAX_GROUPS: int = _PROPERTIES["viewer_groups"]["maxItems"]
MAX_GROUP_NAME: int = _PROPERTIES["viewer_groups"]["items"]["maxLength"]
MIN_DURATION = _PROPERTIES["duration_s"]["minimum"]
# type -> the fields an event of that type must have: ``required``, and the ``then`` of every
# ``allOf`` rule whose ``if`` names the type (``enum`` or ``const``).
REQUIRED: dict[str, frozenset[str]] = {
    kind: frozenset(SCHEMA["required"]).union(
        *(
            rule["then"]["required"]
            for rule in SCHEMA["allOf"]
            for when in [rule["if"]["properties"]["type"]]
            if kind in when.get("enum", [when.get("const")])
        )
    )
    for kind in TYPES
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
    version: str | None = None  # the published version (v3) deployed, activated or running
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
        d["time"] = iso_z(self.time)
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
    groups = raw.get("viewer_groups")
    if groups is None:
        groups = []
    if (
        not isinstance(groups, list)
        or not all(isinstance(g, str) and 0 < len(g) <= MAX_GROUP_NAME for g in groups)
        or len(groups) > MAX_GROUPS
    ):
        raise EventError(f"viewer_groups: expected a list of at most {MAX_GROUPS} group names")
    duration = raw.get("duration_s")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or duration < MIN_DURATION
    ):
        raise EventError("duration_s: expected a non-negative number of seconds")
    extra = raw.get("extra")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise EventError("extra: expected an object")
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        raise EventError(f"{unknown[0]}: unknown field")
    version = raw.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise EventError(f"schema_version: this service reads version {SCHEMA_VERSION}")
    when = parse_time(raw.get("time"))
    if not _TIME.fullmatch(raw["time"]):
        raise EventError(f"time: {raw['time'][:40]!r} is not in the form 2026-11-22T10:00:00Z")
    needs = REQUIRED[kind]
    texts = {
        name: _text(raw, name, required=True) if name in needs else _text(raw, name)
        for name in _LIMITS
    }
    return Event(
        id=ident,
        time=when,
        type=kind,
        viewer_groups=tuple(sorted(set(groups))),
        duration_s=float(duration) if duration is not None else None,
        extra=dict(extra),
        **texts,
    )
