"""The audit event contract has one source: spawner/audit/audit-event.schema.json.

- spawner/audit/events.py reads its types, fields and limits from it at import (derived);
  these tests prove the parser accepts and refuses what the schema does, sample by sample
  and on generated events, beyond the fixed literals of tests/unit/test_audit_events.py.
- The OpenAPI document the service serves (spawner/audit/openapi.json) holds the schema as
  its Event component and the types as the ``type`` filter's enum (generated:
  ``python -m tests.unit.test_event_contract`` rewrites them from the schema; ``--check``
  only lists what is stale).
- docs/audit-event.schema.json and docs/audit-openapi.json are symbolic links to the two
  packaged files; a test proves each reads the same bytes (a copy in their place must too).
- docs/audit.md's table of event types lists exactly the schema's types.
- spawner/audit/service.py (its type list, batch size, filters, CSV columns) agrees with it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawner.audit import events, service
from spawner.audit.events import EventError, parse_event

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "spawner" / "audit" / "audit-event.schema.json"
DOCS_SCHEMA = REPO / "docs" / "audit-event.schema.json"
OPENAPI = REPO / "spawner" / "audit" / "openapi.json"
DOCS_OPENAPI = REPO / "docs" / "audit-openapi.json"
AUDIT_MD = REPO / "docs" / "audit.md"
SYNC = "python -m tests.unit.test_event_contract"

SCHEMA = json.loads(SOURCE.read_text(encoding="utf-8"))
PROPERTIES = SCHEMA["properties"]
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


# ---- the generated copies ------------------------------------------------------------------
def rendered_openapi() -> str:
    """spawner/audit/openapi.json as it must be: its own text with the Event component and the
    ``type`` filter taken from the schema, written as the file always was (indent 1)."""
    doc = json.loads(OPENAPI.read_text(encoding="utf-8"))
    doc["components"]["schemas"]["Event"] = SCHEMA
    for param in doc["paths"]["/api/events"]["get"]["parameters"]:
        if param["name"] == "type":
            param["schema"] = {"type": "string", "enum": list(PROPERTIES["type"]["enum"])}
    return json.dumps(doc, indent=1) + "\n"


def rendered() -> dict[Path, str]:
    """Every generated file and the text it must have."""
    return {OPENAPI: rendered_openapi()}


@pytest.mark.parametrize("path", rendered(), ids=lambda p: str(p.relative_to(REPO)))
def test_generated_files_are_up_to_date(path):
    assert path.read_text(encoding="utf-8") == rendered()[path], (
        f"{path.relative_to(REPO)} has drifted from spawner/audit/audit-event.schema.json: "
        f"run `{SYNC}`"
    )


@pytest.mark.parametrize("docs, packaged", [(DOCS_SCHEMA, SOURCE), (DOCS_OPENAPI, OPENAPI)])
def test_the_docs_copies_are_the_packaged_files(docs, packaged):
    assert docs.read_bytes() == packaged.read_bytes()


def test_the_served_openapi_document_holds_the_schema_as_its_event_component():
    doc = json.loads(OPENAPI.read_text(encoding="utf-8"))
    assert doc["openapi"].startswith("3.1.")  # 3.1: its schemas are JSON Schema 2020-12
    assert doc["components"]["schemas"]["Event"] == SCHEMA
    get = doc["paths"]["/api/events"]["get"]
    (kind,) = [p for p in get["parameters"] if p["name"] == "type"]
    assert kind["schema"]["enum"] == list(events.TYPES)
    items = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert items["properties"]["events"]["items"] == {"$ref": "#/components/schemas/Event"}
    post = doc["paths"]["/api/events"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["events"]["maxItems"] == service.MAX_BATCH
    assert f"deeper than {events.MAX_DEPTH} levels" in post["description"]


def test_the_packaged_schema_is_the_one_events_reads_and_is_shipped():
    assert events.SCHEMA_FILE == SOURCE and events.SCHEMA == SCHEMA
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    setup = (REPO / "setup.cfg").read_text()
    (line,) = [x for x in setup.splitlines() if x.startswith("spawner = ")]
    assert "audit/*.json" in line.split("=", 1)[1].replace(" ", "").split(",")


# ---- events.py: what it derives ------------------------------------------------------------
def test_events_derives_its_types_fields_and_limits_from_the_schema():
    assert events.SCHEMA_VERSION == PROPERTIES["schema_version"]["const"] == 1
    assert events.TYPES == tuple(PROPERTIES["type"]["enum"])
    assert events.FIELDS == set(PROPERTIES)
    assert {f.name for f in dataclasses.fields(events.Event)} == set(PROPERTIES) - {
        "schema_version"
    }
    assert events._LIMITS == {
        name: spec["maxLength"] for name, spec in PROPERTIES.items() if "maxLength" in spec
    }
    assert events.MAX_EVENT_BYTES == SCHEMA["x-maxEventBytes"]
    assert events.MAX_DEPTH == SCHEMA["x-maxDepth"]
    groups = PROPERTIES["viewer_groups"]
    assert (events.MAX_GROUPS, events.MAX_GROUP_NAME) == (
        groups["maxItems"],
        groups["items"]["maxLength"],
    )
    assert events.MIN_DURATION == PROPERTIES["duration_s"]["minimum"]


@pytest.mark.parametrize("kind", PROPERTIES["type"]["enum"])
def test_events_requires_per_type_what_the_schema_requires(kind):
    """events.REQUIRED against the schema's own verdict: the fields whose absence alone makes
    a full event of this type invalid."""
    assert set(events.REQUIRED) == set(events.TYPES)
    assert events.REQUIRED[kind] == schema_required(kind)


def test_the_schema_uses_only_what_events_reads():
    """events.py reads a subset of JSON Schema; a schema edit outside it must fail here, not
    be silently ignored by the parser."""
    for name, spec in PROPERTIES.items():
        if spec.get("type") == "string" and "maxLength" in spec:
            assert set(spec) <= {"type", "minLength", "maxLength", "description"}, name
            assert spec["minLength"] == 1, name  # _text: "expected a non-empty string"
    assert {n for n, s in PROPERTIES.items() if "maxLength" not in s} == {
        "schema_version",
        "id",
        "time",
        "type",
        "viewer_groups",
        "duration_s",
        "extra",
    }
    assert PROPERTIES["viewer_groups"]["items"]["minLength"] == 1
    assert SCHEMA["additionalProperties"] is False
    for rule in SCHEMA["allOf"]:
        assert set(rule) == {"if", "then"} and set(rule["then"]) == {"required"}
        assert set(rule["if"]) == {"properties"} and set(rule["if"]["properties"]) == {"type"}
        assert set(rule["if"]["properties"]["type"]) in ({"enum"}, {"const"})


# ---- the parser and the schema agree -------------------------------------------------------
T = "2026-11-22T10:00:00Z"
FULL = {
    "schema_version": 1,
    "id": "ev-00000001",
    "time": T,
    "type": "authorize",
    "owner": "alice",
    "app": "demo",
    "viewer": "carol",
    "actor": "hub",
    "viewer_groups": ["b", "a"],
    "profile": "small",
    "version": "v3",
    "page": "Details",
    "session": "s1",
    "client": "10.0.0.1",
    "user_agent": "UA",
    "outcome": "allowed",
    "reason": "why",
    "duration_s": 1.5,
    "extra": {"k": "v"},
}


@functools.cache
def schema_required(kind: str) -> frozenset[str]:
    """The fields the schema requires in an event of ``kind``, asked of the validator."""
    full = {**FULL, "type": kind}
    assert set(full) == set(PROPERTIES) and VALIDATOR.is_valid(full)
    return frozenset(name for name in full if not VALIDATOR.is_valid(without(full, name)))


def without(event: dict, name: str) -> dict:
    return {k: v for k, v in event.items() if k != name}


def minimal(kind: str) -> dict:
    """The smallest valid event of a type: exactly the fields the schema requires."""
    return {k: v for k, v in {**FULL, "type": kind}.items() if k in schema_required(kind)}


def schema_accepts(candidate) -> bool:
    return VALIDATOR.is_valid(candidate)


def parser_accepts(candidate) -> bool:
    try:
        parse_event(candidate)
    except EventError:
        return False
    return True


@pytest.mark.parametrize("kind", PROPERTIES["type"]["enum"])
def test_each_type_with_exactly_its_required_fields_is_valid_and_without_any_is_not(kind):
    good = minimal(kind)
    assert schema_accepts(good) and parser_accepts(good)
    assert schema_accepts(parse_event(good).to_json())
    for name in good:
        less = without(good, name)
        assert not schema_accepts(less) and not parser_accepts(less), name


def variants():
    """One change at a time to a valid event, at every limit the schema sets."""
    for name, spec in PROPERTIES.items():
        if "maxLength" in spec:
            n = spec["maxLength"]
            yield name, "x" * n
            yield name, "x" * (n + 1)
            yield name, ""
            yield name, 5
            yield name, ["x"]
    for value in (0, [], "", False, {}, ["g"], ["g" * 255], ["g" * 256], [""], [1]):
        yield "viewer_groups", value
    yield "viewer_groups", ["g"] * 200
    yield "viewer_groups", [f"g{i}" for i in range(201)]
    for value in (0, 0.5, 10**6, -0.001, -1, True, "5", [5], {}):
        yield "duration_s", value
    for value in ({}, {"a": [1, {"b": None}]}, [], ["a"], "", 0, False, "x"):
        yield "extra", value
    for value in (1, 1.0, True, "1", 2, 0):
        yield "schema_version", value
    for value in ("hack", "", 1, "Authorize", "page_view "):
        yield "type", value
    for value in ("a" * 8, "a" * 7, "a" * 64, "a" * 65, "Az09_.:-", "abc defg", "ünicode1", 1):
        yield "id", value
    for value in (
        "2026-11-22T10:00:00+00:00",
        "2026-11-22T10:00:00.250000Z",
        "2026-11-22T10Z",
        "2026-11-22T10:00:00",
        "2026-11-22T10:00:00+01:00",
        "2026-11-22T10:00:00-00:00",
        "2026-11-22 10:00:00Z",
        "2026-11-22T10:00:00,5Z",
        "20261122T100000Z",
        "2026-W47-7T10:00:00Z",
        "2026-11-22T10:00:00z",
        1700000000,
    ):
        yield "time", value
    yield "colour", "red"


@pytest.mark.parametrize("name, value", list(variants()))
def test_the_parser_accepts_what_the_schema_accepts_and_nothing_else(name, value):
    for kind in PROPERTIES["type"]["enum"]:
        candidate = {**minimal(kind), name: value}
        assert parser_accepts(candidate) == schema_accepts(candidate), (kind, candidate)


def nested(levels: int) -> dict:
    """An object ``levels`` objects deep (``extra`` is level 2 of the event)."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "name, value, rule",
    [
        ("viewer", "a\x1fb", "text with control characters"),
        ("time", "2026-13-45T99:00:00Z", "a time that is not a real UTC time"),
        ("extra", {"n": float("inf")}, "a number that is not finite or beyond 2**53"),
        ("extra", {"n": 2**53 + 1}, "a number that is not finite or beyond 2**53"),
        ("extra", nested(16), "nesting deeper than x-maxDepth levels (the event is level 1)"),
        ("extra", {"p": "x" * 8192}, "an event of more than x-maxEventBytes bytes"),
    ],
)
def test_what_the_parser_refuses_beyond_the_schema_is_in_its_description(name, value, rule):
    candidate = {**minimal("app_stop"), name: value}
    assert schema_accepts(candidate) and not parser_accepts(candidate)
    assert rule in SCHEMA["description"]


def test_null_for_an_optional_field_is_read_as_absent():
    """The one leniency: the parser reads null as absent; what it returns is valid."""
    for name in ("viewer", "actor", "viewer_groups", "duration_s", "extra", "reason"):
        candidate = {**minimal("app_stop"), name: None}
        assert not schema_accepts(candidate)
        assert schema_accepts(parse_event(candidate).to_json())


def texts():
    return st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1)


@st.composite
def valid_events(draw):
    """Events the schema accepts, made from it: every optional field maybe, at any length."""
    kind = draw(st.sampled_from(events.TYPES))
    event = minimal(kind)
    for name, spec in PROPERTIES.items():
        if name in event or not draw(st.booleans()):
            continue
        if "maxLength" in spec:
            event[name] = draw(texts().filter(lambda s, n=spec["maxLength"]: len(s) <= n))
    if draw(st.booleans()):
        event["viewer_groups"] = draw(st.lists(st.text(min_size=1, max_size=40), max_size=20))
    if draw(st.booleans()):
        event["duration_s"] = draw(
            st.one_of(st.integers(0, 2**53), st.floats(0, 1e12, allow_nan=False))
        )
    if draw(st.booleans()):
        event["extra"] = draw(
            st.dictionaries(st.text(max_size=5), st.integers(-(2**53), 2**53), max_size=5)
        )
    if draw(st.booleans()):
        event["schema_version"] = 1
    return event


@given(valid_events(), st.data())
@settings(max_examples=100, deadline=None)
def test_generated_events_are_read_as_the_schema_says(event, data):
    assert schema_accepts(event)
    if len(json.dumps(event, separators=(",", ":"))) > events.MAX_EVENT_BYTES:
        assert not parser_accepts(event)  # beyond the schema: the size limit
        return
    parsed = parse_event(event)
    assert schema_accepts(parsed.to_json()) and parse_event(parsed.to_json()) == parsed
    # one field past its limit, or one required field gone: both refuse
    name = data.draw(st.sampled_from(sorted(event)))
    if name in events._LIMITS:
        longer = {**event, name: "y" * (events._LIMITS[name] + 1)}
        assert not schema_accepts(longer) and not parser_accepts(longer)
    if name in events.REQUIRED[event["type"]]:
        less = without(event, name)
        assert not schema_accepts(less) and not parser_accepts(less)


# ---- docs/audit.md -------------------------------------------------------------------------
def documented_types() -> list[str]:
    """The types in the first column of docs/audit.md's table of event types."""
    text = AUDIT_MD.read_text(encoding="utf-8")
    table = text[text.index("| type | recorded by | when |") :].split("\n\n", 1)[0]
    rows = table.splitlines()[2:]
    return [t for row in rows for t in re.findall(r"`([a-z_]+)`", row.split("|")[1])]


def test_the_docs_table_lists_exactly_the_schema_types():
    """Each type once (a row may hold two, as session_start / session_end), none missing."""
    documented = documented_types()
    assert len(documented) == len(set(documented))
    assert sorted(documented) == sorted(events.TYPES)


def test_the_docs_state_the_schema_version_and_the_depth_limit():
    text = " ".join(AUDIT_MD.read_text(encoding="utf-8").split())
    assert f"(schema version {events.SCHEMA_VERSION})" in text
    assert f"deeper than {events.MAX_DEPTH} levels" in text


# ---- spawner/audit/service.py --------------------------------------------------------------
def test_the_service_knows_the_schema_types_and_fields():
    assert service.TYPES == tuple(PROPERTIES["type"]["enum"])
    assert service.APP_SERVER_TYPES <= set(service.TYPES)
    assert set(service.CSV_FIELDS) <= set(PROPERTIES)


def test_the_service_filters_admit_every_value_an_event_may_hold():
    """``GET /api/events`` takes owner, app, viewer and type filters of 1 to 255 characters
    (service._filters, the OpenAPI parameters): no stored value is too long to filter on."""
    doc = json.loads(OPENAPI.read_text(encoding="utf-8"))
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/events"]["get"]["parameters"]}
    for name in ("owner", "app", "viewer"):
        assert params[name]["maxLength"] == 255 >= PROPERTIES[name]["maxLength"]
    assert max(map(len, events.TYPES)) <= 255


def test_the_csv_export_has_a_column_for_every_field():
    assert set(service.CSV_FIELDS) == set(PROPERTIES) - {"schema_version"}


# ---- spawner/audit/store.py ----------------------------------------------------------------
def test_the_store_columns_hold_the_longest_value_the_schema_allows():
    """The store indexes some fields in columns of their own (VARCHAR(n)): each must hold
    the longest value an event may carry, or PostgreSQL refuses a valid event."""
    from spawner.audit.store import audit_events

    longest = {n: s["maxLength"] for n, s in PROPERTIES.items() if "maxLength" in s}
    longest["id"] = int(re.fullmatch(r".*\{\d+,(\d+)\}\$", PROPERTIES["id"]["pattern"])[1])
    longest["type"] = max(map(len, events.TYPES))
    columns = [c for c in audit_events.columns if c.name in longest]
    assert {c.name for c in columns} == {"id", "type", "owner", "app", "viewer", "outcome"}
    for column in columns:
        assert column.type.length >= longest[column.name], column.name


# ---- python -m tests.unit.test_event_contract ------------------------------------------------
def main(argv: list[str]) -> int:
    """Rewrite the generated files from the schema (``--check``: only say which differ)."""
    want = rendered()
    stale = [p for p, text in want.items() if p.read_text(encoding="utf-8") != text]
    for path in stale:
        print(f"{'stale' if '--check' in argv else 'rewrote'}: {path.relative_to(REPO)}")
        if "--check" not in argv:
            path.write_text(want[path], encoding="utf-8")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
