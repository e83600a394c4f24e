"""Bad input against the real hub: generated app names, entry paths and option bodies;
share-code bodies (``POST /hub/api/share-codes/...``, the policy's link rules) and audit
batches (the audit service's ingest route), with non-finite and huge numbers, any JSON shape
and nesting up to thousands deep.

Every answer must be a 4xx (or a success for an input that is in fact fine), never a 5xx,
no app may start from a refused request, and the audit export stays strict JSON (no NaN or
Infinity ever stored). The number of cases tried is printed (-s).
"""

import json
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers.hub import PERMISSIVE_POLICY, running_hub

TRIED = {"names": 0, "paths": 0, "bodies": 0, "raw": 0, "share_codes": 0, "audit": 0}
XSS = "<script>alert('x')</script>"
POLICY = PERMISSIVE_POLICY.replace('display_name: "Small"', f'display_name: "{XSS} Small"')


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("badinput"), policy=POLICY) as h:
        yield h
        print(f"bad-input cases tried: {TRIED} (total {sum(TRIED.values())})")


@pytest.fixture(scope="module")
def api(hub):
    s = requests.Session()
    s.headers["Authorization"] = f"token {hub.token('alice')}"
    return s


def _start(hub, api, name_quoted: str, body):
    kwargs = {"data": body} if isinstance(body, (bytes, str)) else {"json": body}
    r = api.post(f"{hub.url}/hub/api/users/alice/servers/{name_quoted}", timeout=60, **kwargs)
    assert r.status_code < 500, (name_quoted, body, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json")
        assert json.loads(r.text)["message"]
        assert "Traceback" not in r.text
    if r.status_code in (201, 202):  # a fine request: undo it
        api.delete(
            f"{hub.url}/hub/api/users/alice/servers/{name_quoted}",
            json={"remove": True},
            timeout=60,
        )
    else:
        api.delete(
            f"{hub.url}/hub/api/users/alice/servers/{name_quoted}",
            json={"remove": True},
            timeout=30,
        )
    return r


common = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@common
@given(name=st.text(min_size=1, max_size=80))
def test_generated_app_names_get_a_4xx_never_a_5xx(hub, api, name):
    TRIED["names"] += 1
    _start(hub, api, quote(name, safe=""), {"path": "apps/none/app.py"})


paths = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(["..", ".", "apps", "demo", "app.py", "", "/", "é", "\x00", "~"]),
        max_size=12,
    ).map("/".join),
)


@common
@given(path=paths)
def test_generated_entry_paths_get_a_4xx_and_nothing_starts(hub, api, path):
    TRIED["paths"] += 1
    before = len(hub.app_processes())
    r = _start(hub, api, "fuzz", {"path": path})
    if r.status_code >= 400:
        assert len(hub.app_processes()) == before


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


@common
@given(
    body=st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(["path", "profile", "source", "extra"]), json_values, max_size=4
        ),
    )
)
def test_generated_option_bodies_get_a_4xx_never_a_5xx(hub, api, body):
    TRIED["bodies"] += 1
    _start(hub, api, "fuzz", body)


@common
@given(
    raw=st.binary(max_size=200)
    | st.just(b"{" * 5000)
    | st.just(b'{"path": "' + b"a" * 100_000 + b'"}')
)
def test_raw_and_huge_bodies_get_a_4xx(hub, api, raw):
    TRIED["raw"] += 1
    _start(hub, api, "fuzz", raw)


def test_html_in_policy_names_is_escaped_in_pages(hub):
    alice = hub.login("alice")
    page = alice.get(f"{hub.url}/hub/spawn/alice/x", timeout=30).text
    assert XSS not in page
    assert "&lt;script&gt;" in page
    home = alice.get(f"{hub.url}/hub/home", timeout=30).text
    assert XSS not in home


# ---- share codes and audit batches (issue #12): any shape, any depth, any number ----------

numbers = (
    st.floats()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**64])
    | st.sampled_from([float("nan"), float("inf"), float("-inf")])
)
hostile = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
deep = st.integers(1, 3000).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n, "[" * n])
)


def _as_text(body) -> str:
    # json.dumps writes NaN / Infinity / huge ints as they come; requests' json= would refuse.
    return body if isinstance(body, str) else json.dumps(body)


def _answer(r, what):
    assert r.status_code < 500, (what, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.headers
        assert json.loads(r.text)["message"] and "Traceback" not in r.text


@pytest.fixture(scope="module")
def linked(hub, api):
    """alice/linked exists (share codes need an app) and the audit service's writer token."""
    from tests.integration.test_audit import audit_service_pid

    hub.start_app(api, "alice", "linked", {"path": "apps/demo/app.py"})
    env = open(f"/proc/{audit_service_pid(hub)}/environ", "rb").read().split(b"\0")
    return next(e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"JUPYTERHUB_API_TOKEN="))


share_fields = st.sampled_from(["expires_in", "scopes", "user", "group", "extra"])
scope_texts = st.sampled_from(
    [
        "access:servers",
        "access:servers!server=alice/linked",
        "bogus",
        "read:users!foo=bar",
        "shares!user",
        "",
        "!",
        "admin:users",
    ]
)


@common
@given(
    body=st.one_of(
        hostile,
        deep,
        st.dictionaries(
            share_fields,
            hostile | numbers | st.lists(scope_texts | hostile, max_size=3),
            max_size=3,
        ),
    )
)
def test_generated_share_code_bodies_get_a_4xx_never_a_5xx(hub, api, linked, body):
    TRIED["share_codes"] += 1
    r = api.post(
        f"{hub.url}/hub/api/share-codes/alice/linked",
        data=_as_text(body),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    _answer(r, body)


EVENT = {
    "id": "fuzz-00000000",
    "time": "2026-11-22T10:00:00Z",
    "type": "page_view",
    "owner": "alice",
    "app": "linked",
    "viewer": "carol",
    "page": "p",
}
event_fields = st.sampled_from(
    [*EVENT, "duration_s", "extra", "viewer_groups", "schema_version", "session", "unknown"]
)
events = st.builds(
    lambda n, over: {**EVENT, "id": f"fuzz-{n:08d}", **over},
    st.integers(0, 10**8),
    st.dictionaries(event_fields, hostile, max_size=3),
)


@common
@given(
    body=st.one_of(
        hostile,
        deep,
        st.builds(lambda evs: {"events": evs}, st.lists(events | hostile, max_size=4)),
    )
)
@example(body={"events": [{**EVENT, "id": "fuzz-nan-extra", "extra": {"x": float("nan")}}]})
@example(
    body={
        "events": [
            {**EVENT, "id": "fuzz-inf-duration", "type": "session_end", "duration_s": float("inf")}
        ]
    }
)
def test_generated_audit_batches_get_a_4xx_never_a_5xx(hub, linked, body):
    TRIED["audit"] += 1
    r = requests.post(
        f"http://127.0.0.1:{hub.audit_port}/services/audit/api/events",
        data=_as_text(body),
        timeout=30,
        headers={"Authorization": f"token {linked}", "Content-Type": "application/json"},
    )
    _answer(r, body)


def test_the_audit_export_is_strict_json_after_the_fuzzing(hub, linked):
    """After the generated batches above (run first, in file order): nothing stored holds a
    NaN or an infinity."""
    r = requests.get(
        f"http://127.0.0.1:{hub.audit_port}/services/audit/api/events",
        params={"format": "jsonl"},
        timeout=30,
        headers={"Authorization": f"token {hub.token('admin')}"},
    )
    assert r.status_code == 200
    for line in r.text.splitlines():
        json.loads(
            line, parse_constant=lambda c, line=line: pytest.fail(f"{c} stored: {line[:200]}")
        )
