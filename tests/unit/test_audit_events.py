"""The audit event contract (spawner/audit/events.py, read from its JSON schema), rule by rule,
at its boundaries, with the limits written out: a change of the schema shows here.

tests/unit/test_audit_store.py tests that each malformed event names its field; these pin the
exact limits and messages (for mutation testing: docs/testing.md).
"""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from spawner.audit.events import MAX_EVENT_BYTES, TYPES, Event, EventError, parse_event, parse_time

T = "2026-11-22T10:00:00Z"


def raw(**kw):
    base = {
        "id": "ev-00000001",
        "time": T,
        "type": "page_view",
        "owner": "alice",
        "app": "demo",
        "viewer": "carol",
        "page": "Details",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def refusal(candidate) -> str:
    with pytest.raises(EventError) as e:
        parse_event(candidate)
    return str(e.value)


@pytest.mark.parametrize(
    "ident, ok",
    [
        ("a" * 8, True),
        ("a" * 7, False),
        ("a" * 64, True),
        ("a" * 65, False),
        ("Az09_.:-", True),
        ("abcdefg!", False),
        ("abc defg", False),
        ("ünicode1", False),
        ("0123456789abcdef\n", False),
    ],
)
def test_ids(ident, ok):
    if ok:
        assert parse_event(raw(id=ident)).id == ident
    else:
        assert refusal(raw(id=ident)) == "id: expected 8-64 of A-Z a-z 0-9 _ . : - (a UUID is fine)"


def test_an_id_that_is_not_a_string():
    assert refusal(raw(id=12345678)).startswith("id: ")


@pytest.mark.parametrize("kind", TYPES)
def test_every_type_is_accepted_with_its_required_fields(kind):
    fields = {"outcome": "allowed"} if kind == "authorize" else {}
    if kind in ("app_deploy", "app_activate"):
        fields = {"actor": "alice", "outcome": "deployed", "version": "v2"}
    if kind in ("app_secret_set", "app_secret_deleted"):
        fields = {"actor": "alice"}
    e = parse_event(raw(type=kind, **fields))
    assert e.type == kind


def test_an_unknown_type_lists_the_known_ones():
    assert refusal(raw(type="hack")) == (
        "type: expected one of authorize, session_start, page_view, "
        "session_end, app_start, app_stop, share_granted, share_revoked, app_deploy, app_activate, "
        "app_secret_set, app_secret_deleted"
    )


@pytest.mark.parametrize(
    "kind, needs",
    [
        ("authorize", ["viewer", "outcome"]),
        ("session_start", ["viewer"]),
        ("page_view", ["viewer", "page"]),
        ("session_end", ["viewer"]),
        ("app_start", []),
        ("app_stop", []),
        ("share_granted", []),
        ("share_revoked", []),
    ],
)
def test_required_fields_per_type(kind, needs):
    base = raw(type=kind, viewer=None, page=None)
    for field in ("viewer", "page", "outcome"):
        candidate = {**base, **{f: "x" for f in needs if f != field}}
        if field in needs:
            assert refusal(candidate) == f"{field}: is required"
        else:
            parse_event(candidate)
    for field in ("owner", "app"):
        assert (
            refusal({k: v for k, v in raw(type=kind, outcome="allowed").items() if k != field})
            == f"{field}: is required"
        )


@pytest.mark.parametrize(
    "field, limit",
    [
        ("viewer", 255),
        ("actor", 255),
        ("owner", 255),
        ("app", 64),
        ("profile", 63),
        ("page", 255),
        ("client", 64),
        ("user_agent", 512),
        ("outcome", 32),
        ("reason", 255),
        ("session", 64),
    ],
)
def test_text_fields_have_their_limits(field, limit):
    assert getattr(parse_event(raw(**{field: "x" * limit})), field) == "x" * limit
    assert refusal(raw(**{field: "x" * (limit + 1)})) == f"{field}: longer than {limit} characters"


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "expected a non-empty string"),
        (5, "expected a non-empty string"),
        (["a"], "expected a non-empty string"),
        ("a\x1fb", "contains control characters"),
        ("\x00", "contains control characters"),
        ("a\tb", "contains control characters"),
    ],
)
def test_text_fields_must_be_plain_text(value, message):
    assert refusal(raw(viewer=value)) == f"viewer: {message}"


def test_del_and_unicode_are_text():
    assert parse_event(raw(page="Ünïcödé \x7f page")).page == "Ünïcödé \x7f page"


@pytest.mark.parametrize(
    "value, words",
    [
        (None, "time: expected an ISO 8601 UTC time like 2026-11-22T10:00:00Z"),
        (1700000000, "time: expected an ISO 8601 UTC time"),
        ("yesterday", "time: 'yesterday' is not an ISO 8601 time"),
        ("2026-11-22T10:00:00", "time: must be UTC (end with Z or +00:00)"),
        ("2026-11-22T10:00:00+01:00", "time: must be UTC (end with Z or +00:00)"),
        ("2026-11-22T10:00:00-00:30", "time: must be UTC"),
    ],
)
def test_times_that_are_refused(value, words):
    with pytest.raises(EventError) as e:
        parse_time(value)
    assert str(e.value).startswith(words)


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22 10:00:00Z",
        "20261122T100000Z",
        "2026-W47-7T10:00:00Z",
        "2026-11-22T10:00:00,5Z",
        "2026-11-22T10:00:00-00:00",
    ],
)
def test_an_event_time_has_the_form_the_schema_gives(value):
    """ISO 8601 UTC times (the query filters take them) that the schema's pattern refuses."""
    assert parse_time(value) == datetime(2026, 11, 22, 10, tzinfo=UTC) + timedelta(
        microseconds=500000 * ("," in value)
    )
    assert refusal(raw(time=value)) == f"time: {value!r} is not in the form 2026-11-22T10:00:00Z"


def test_a_long_time_of_the_wrong_form_is_cut_in_the_message():
    value = "2026-11-22 10:00:00.1234567890123456789+00:00"
    assert refusal(raw(time=value)) == (
        f"time: {value[:40]!r} is not in the form 2026-11-22T10:00:00Z"
    )


def test_a_long_unparsable_time_is_cut_in_the_message():
    with pytest.raises(EventError) as e:
        parse_time("x" * 100)
    assert str(e.value) == f"time: {'x' * 40!r} is not an ISO 8601 time"


@pytest.mark.parametrize(
    "value", ["2026-11-22T10:00:00Z", "2026-11-22T10:00:00+00:00", "2026-11-22T10:00:00.250000Z"]
)
def test_utc_times_are_accepted(value):
    t = parse_time(value)
    assert t.tzinfo is not None and t.utcoffset() == timedelta(0)
    assert t.replace(microsecond=0) == datetime(2026, 11, 22, 10, tzinfo=UTC)


def test_the_size_limit_is_inclusive():
    base = raw(reason="")
    # the size of the compact JSON text of the event
    pad = MAX_EVENT_BYTES - len(json.dumps({**base, "extra": {"p": ""}}, separators=(",", ":")))
    at_limit = {**base, "reason": None, "extra": {"p": "x" * pad}}
    at_limit = {k: v for k, v in at_limit.items() if v is not None}
    size = len(json.dumps(at_limit, separators=(",", ":")))
    assert size <= MAX_EVENT_BYTES
    at_limit["extra"]["p"] += "x" * (MAX_EVENT_BYTES - size)
    assert len(json.dumps(at_limit, separators=(",", ":"))) == MAX_EVENT_BYTES
    assert parse_event(at_limit).extra["p"]
    at_limit["extra"]["p"] += "x"
    assert (
        refusal(at_limit)
        == f"(event): {MAX_EVENT_BYTES + 1} bytes, larger than 8192; keep events small"
    )


def test_not_an_object_or_not_json():
    assert refusal(["x"]) == "(event): expected a JSON object"
    assert refusal(None) == "(event): expected a JSON object"
    assert refusal(raw(extra={(1, 2): "tuple key"})).startswith("(event): not plain JSON")


@pytest.mark.parametrize(
    "groups, ok",
    [
        ([], True),
        (["a"], True),
        (["g" * 255], True),
        (["g" * 256], False),
        ([""], False),
        ([1], False),
        ("viewers", False),
        (["g"] * 200, True),
        ([f"g{i}" for i in range(201)], False),
        ({"a": 1}, False),
        # wrong types, however empty (they were once read as no groups)
        ({}, False),
        ("", False),
        (0, False),
        (False, False),
    ],
)
def test_viewer_groups(groups, ok):
    if ok:
        parse_event(raw(viewer_groups=groups))
    else:
        assert (
            refusal(raw(viewer_groups=groups))
            == "viewer_groups: expected a list of at most 200 group names"
        )


def test_viewer_groups_are_kept_sorted_and_once():
    assert parse_event(raw(viewer_groups=["b", "a", "b"])).viewer_groups == ("a", "b")


@pytest.mark.parametrize(
    "duration, ok",
    [
        (0, True),
        (0.0, True),
        (1.5, True),
        (10**6, True),
        (-0.001, False),
        (-1, False),
        (True, False),
        (False, False),
        ("5", False),
        ([5], False),
    ],
)
def test_durations(duration, ok):
    if ok:
        e = parse_event(raw(type="session_end", page=None, duration_s=duration))
        assert e.duration_s == float(duration) and isinstance(e.duration_s, float)
    else:
        assert (
            refusal(raw(duration_s=duration))
            == "duration_s: expected a non-negative number of seconds"
        )


def test_extra_unknown_fields_and_the_schema_version():
    assert parse_event(raw(extra={"a": 1})).extra == {"a": 1}
    assert parse_event(raw(extra=None)).extra == {}
    assert refusal(raw(extra=["a"])) == "extra: expected an object"
    for empty in ([], "", 0, False):  # not an object, however empty
        assert refusal(raw(extra=empty)) == "extra: expected an object"
    assert refusal(raw(zz=1, aa=2)) == "aa: unknown field"
    assert parse_event(raw(schema_version=1)).id
    assert refusal(raw(schema_version=2)) == "schema_version: this service reads version 1"
    assert refusal(raw(schema_version="1")) == "schema_version: this service reads version 1"
    assert refusal(raw(schema_version=True)) == "schema_version: this service reads version 1"
    assert parse_event(raw(schema_version=1.0)).id  # JSON has one number 1


def test_an_event_round_trips_through_its_json():
    full = raw(
        type="authorize",
        viewer_groups=["b", "a"],
        outcome="allowed",
        actor="hub",
        profile="small",
        session="s1",
        client="10.0.0.1",
        user_agent="UA",
        reason="why",
        duration_s=2,
        extra={"k": "v"},
        time="2026-11-22T10:00:00.5+00:00",
    )
    e = parse_event(full)
    out = e.to_json()
    assert out == {
        "id": "ev-00000001",
        "time": "2026-11-22T10:00:00.500000Z",
        "type": "authorize",
        "owner": "alice",
        "app": "demo",
        "viewer": "carol",
        "actor": "hub",
        "viewer_groups": ["a", "b"],
        "profile": "small",
        "page": "Details",
        "session": "s1",
        "client": "10.0.0.1",
        "user_agent": "UA",
        "outcome": "allowed",
        "reason": "why",
        "duration_s": 2.0,
        "extra": {"k": "v"},
        "schema_version": 1,
    }
    assert parse_event(out) == e


def test_to_json_leaves_out_what_is_empty_but_keeps_zero():
    e = Event(
        id="ev-00000001",
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
        type="session_end",
        owner="a",
        app="b",
        duration_s=0.0,
    )
    assert e.to_json() == {
        "id": "ev-00000001",
        "time": "2026-01-02T01:04:05.000000Z",
        "type": "session_end",
        "owner": "a",
        "app": "b",
        "duration_s": 0.0,
        "schema_version": 1,
    }


# ---- strict JSON only (check_plain_json) ---------------------------------------------------
def nested(depth, leaf=1):
    """An `extra` value such that the event object is nested `depth` levels deep in all."""
    v = leaf
    for _ in range(depth - 1):  # the event is level 1, extra's object level 2, ...
        v = {"k": v}
    return v


def test_nesting_is_limited_to_max_depth_levels():
    from spawner.audit.events import MAX_DEPTH, check_plain_json

    assert MAX_DEPTH == 16
    check_plain_json({"extra": nested(16)})  # 16 levels: the limit
    with pytest.raises(EventError) as e:
        check_plain_json({"extra": nested(17)})
    assert str(e.value) == "extra" + ".k" * 15 + ": nested more than 16 levels deep"
    check_plain_json([[[]]], max_depth=3)
    with pytest.raises(EventError, match=r"^\[0\]\[0\]\[0\]: nested more than 3 levels deep$"):
        check_plain_json([[[[]]]], max_depth=3)
    assert parse_event(raw(extra=nested(16))).extra
    assert refusal(raw(extra=nested(17))).endswith(": nested more than 16 levels deep")


def test_nesting_too_deep_for_json_itself_is_refused_by_name():
    deep = []
    for _ in range(5000):
        deep = [deep]
    assert refusal(raw(extra={"x": deep})) == "(event): nested more than 16 levels deep"


@pytest.mark.parametrize(
    "value, ok",
    [
        (2**53, True),
        (-(2**53), True),
        (2**53 + 1, False),
        (-(2**53) - 1, False),
        (True, True),
        (1.5, True),
        (1e308, True),
        (float("inf"), False),
        (float("-inf"), False),
        (float("nan"), False),
    ],
)
def test_numbers_must_be_finite_and_at_most_2_to_the_53(value, ok):
    from spawner.audit.events import check_plain_json

    if ok:
        check_plain_json({"extra": {"n": [value]}})
    else:
        with pytest.raises(EventError) as e:
            check_plain_json({"extra": {"n": [value]}})
        message = str(e.value)
        assert message.startswith("extra.n[0]: ")
        if isinstance(value, float):
            assert message == (
                f"extra.n[0]: {value!r} is not a finite number; JSON has no NaN or "
                "Infinity, send a finite number or leave the field out"
            )
        else:
            assert message == (
                "extra.n[0]: a number larger than 2**53 is not read the same by every "
                "JSON reader; send a smaller number or a string"
            )


def test_a_bad_value_at_the_top_is_named_event():
    from spawner.audit.events import check_plain_json

    with pytest.raises(EventError, match=r"^\(event\): nan is not a finite number"):
        check_plain_json(float("nan"))
    with pytest.raises(EventError, match=r"^here: inf is not"):
        check_plain_json(float("inf"), where="here")


def test_a_lowercase_z_is_not_utc():
    with pytest.raises(EventError, match="is not an ISO 8601 time"):
        parse_time("2026-11-22T10:00:00z")


def test_times_are_utc_whatever_the_machines_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        t = parse_time("2026-11-22T10:00:00+00:00")
        assert t.tzinfo is UTC and t.hour == 10
        e = parse_event(raw())
        assert e.to_json()["time"] == "2026-11-22T10:00:00.000000Z"
        local = Event(
            id="ev-00000001",
            time=datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=9))),
            type="app_stop",
            owner="a",
            app="b",
        )
        assert local.to_json()["time"] == "2026-01-01T00:00:00.000000Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
