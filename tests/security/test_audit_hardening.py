"""Attacks on the audit service and the share-codes API with a real hub, proxy, audit service
and app servers (issue #12, point 5):

- an app server's own token reads only its own app's audit events (not its owner's whole
  trail), on the API, the exports and the usage page, and writes only its own app's events;
- a non-finite number (``NaN``, ``Infinity``, ``1e999``) in an event is refused with a 400
  naming the field, and nothing of it is stored;
- an audit batch nested ~1,000 deep, and bodies of the wrong shape (a list, a number, a
  string) on the audit ingest route and on ``POST /hub/api/share-codes/...`` get a 4xx,
  never a 500.
"""

import csv
import io
import json
import time

import pytest
import requests
from traitlets.config import Config

from spawner.hubconfig import StreamlitHub, configure_common
from tests.helpers.hub import running_hub
from tests.integration.test_audit import audit_service_pid

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(
        tmp_path_factory.mktemp("audit-hardening"), extra_config="c.Spawner.poll_interval = 1\n"
    ) as h:
        alice = h.login("alice")
        for app in ("one", "two"):
            h.start_app(alice, "alice", app, {"path": "apps/demo/app.py"})
        h.admin_token = h.token("admin")
        h.alice_token = h.token("alice")
        h.app_one_token = server_token_like(h, "alice", "one")
        env = open(f"/proc/{audit_service_pid(h)}/environ", "rb").read().split(b"\0")
        h.writer_token = next(
            e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"JUPYTERHUB_API_TOKEN=")
        )
        yield h


def server_token_like(hub, user: str, app: str) -> str:
    """A token with exactly the scopes the hub gives ``user/app``'s own server token: the
    configured ``Spawner.server_token_scopes`` with ``!server`` / ``!user`` resolved as
    JupyterHub does, plus the ``users:activity!user`` JupyterHub 6.1.1 adds to every server
    token. The audit service knows a caller only by what ``GET /hub/api/user`` says of its
    token, which is the same for both; the server's real token no longer shows in /proc."""
    c = Config()
    configure_common(c, StreamlitHub(environ={}))
    scopes = {
        s
        + (f"={user}/{app}" if s.endswith("!server") else f"={user}" if s.endswith("!user") else "")
        for s in [*c.Spawner.server_token_scopes, "users:activity!user"]
    }
    r = hub.api(hub.token("admin")).post(
        f"{hub.url}/hub/api/users/{user}/tokens",
        timeout=30,
        json={"scopes": sorted(scopes), "expires_in": 3600, "note": f"as {user}/{app}'s server"},
    )
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    model = hub.api(token).get(f"{hub.url}/hub/api/user", timeout=30).json()
    assert model["kind"] == "user" and model["name"] == user
    assert f"access:servers!server={user}/{app}" in model["scopes"]
    assert not {f"access:servers!user={user}", "access:servers"} & set(model["scopes"]), model
    return token


def audit(hub, path: str = "") -> str:
    """The audit service, straight on its port (as app servers reach it)."""
    return f"http://127.0.0.1:{hub.audit_port}/services/audit/{path}"


def read(hub, token, **params) -> list[dict]:
    r = hub.api(token).get(audit(hub, "api/events"), params={"limit": 1000, **params}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def wait_for(hub, predicate, timeout=30.0, **params) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = read(hub, hub.admin_token, **params)
        if predicate(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def session_end(ident: str, duration: str) -> str:
    """A session_end batch whose duration_s is the raw JSON text ``duration`` (NaN, 1e999…,
    which json.dumps would not write)."""
    event = {
        "id": ident,
        "time": "2026-11-22T10:00:00Z",
        "type": "session_end",
        "viewer": "mallory",
        "duration_s": "__D__",
    }
    return json.dumps({"events": [event]}).replace('"__D__"', duration)


# ---- (c) what an app server's own token may read and write ------------------------------


def test_an_app_token_reads_only_its_own_apps_events(hub):
    # the hub recorded both starts; the owner reads both apps
    both = wait_for(
        hub, lambda ev: {e["app"] for e in ev} >= {"one", "two"}, owner="alice", type="app_start"
    )
    assert {e["app"] for e in both} >= {"one", "two"}
    assert {e["app"] for e in read(hub, hub.alice_token)} >= {"one", "two"}

    mine = read(hub, hub.app_one_token)
    assert mine, "the app's own events are readable"
    assert {(e["owner"], e["app"]) for e in mine} == {("alice", "one")}
    for params in ({"app": "two"}, {"owner": "alice", "app": "two"}, {"owner": "bob"}):
        assert read(hub, hub.app_one_token, **params) == [], params
    api = hub.api(hub.app_one_token)
    r = api.get(audit(hub, "api/events"), params={"format": "csv"}, timeout=30)
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.status_code == 200 and rows
    assert {(row["owner"], row["app"]) for row in rows} == {("alice", "one")}
    r = api.get(audit(hub, "api/events"), params={"format": "jsonl"}, timeout=30)
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert r.status_code == 200 and rows
    assert {(row["owner"], row["app"]) for row in rows} == {("alice", "one")}
    page = api.get(audit(hub), timeout=30)
    assert page.status_code == 200 and "alice/one" in page.text
    assert "alice/two" not in page.text


def test_an_app_token_writes_only_its_own_apps_events(hub):
    api = hub.api(hub.app_one_token)
    base = {"time": "2026-11-22T10:00:00Z", "type": "page_view", "viewer": "mallory", "page": "x"}
    r = api.post(
        audit(hub, "api/events"),
        json={"events": [{**base, "id": "hardening-other-app", "owner": "alice", "app": "two"}]},
        timeout=30,
    )
    assert r.status_code == 403, r.text
    r = api.post(
        audit(hub, "api/events"), json={"events": [{**base, "id": "hardening-own-app"}]}, timeout=30
    )
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    stored = {e["id"]: e for e in read(hub, hub.admin_token, viewer="mallory")}
    assert "hardening-other-app" not in stored
    assert (stored["hardening-own-app"]["owner"], stored["hardening-own-app"]["app"]) == (
        "alice",
        "one",
    )


# ---- (a) non-finite numbers ---------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("writer", ["app", "hub"])
def test_non_finite_numbers_are_refused_and_never_stored(hub, literal, writer):
    ident = f"nonfinite-{writer}-{literal.strip('-')}-{'neg' if literal[0] == '-' else 'pos'}"
    token = hub.app_one_token if writer == "app" else hub.writer_token
    body = session_end(ident, literal)
    if writer == "hub":
        body = body.replace('"type"', '"owner": "alice", "app": "one", "type"')
    r = requests.post(
        audit(hub, "api/events"),
        data=body,
        timeout=30,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("duration_s:"), r.text
    assert not [e for e in read(hub, hub.admin_token, viewer="mallory") if e["id"] == ident]
    r = hub.api(hub.admin_token).get(
        audit(hub, "api/events"), params={"format": "jsonl"}, timeout=30
    )
    for line in r.text.splitlines():  # the export stays strict JSON
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the export"))


# ---- (b) any shape or depth: a 4xx, never a 500 --------------------------------------------

DEEP = "[" * 1000 + "]" * 1000
SHAPES = [
    "[]",
    "[1, 2]",
    '"events"',
    "3",
    "true",
    "null",
    "NaN",
    "-1e999",
    DEEP,
    '{"events": ' + DEEP + "}",
    '{"events": [{"id": "deep-000001", "extra": {"a": ' + DEEP + "}}]}",
    '{"events": [{"type": ["page_view"]}]}',
    '{"events": [{"type": {}}]}',
    "{" * 100_000,
]


@pytest.mark.parametrize("body", SHAPES, ids=lambda b: b[:24])
@pytest.mark.parametrize("writer", ["app", "hub"])
def test_audit_ingest_answers_any_shape_or_depth_with_a_4xx(hub, body, writer):
    token = hub.app_one_token if writer == "app" else hub.writer_token
    r = requests.post(
        audit(hub, "api/events"),
        data=body,
        timeout=30,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        "[1, 2]",
        '[{"expires_in": 3600}]',
        '"a string"',
        "3",
        "1.5",
        "true",
        "NaN",
        DEEP,
        "{" * 100_000,
        '{"scopes": ["bogus"]}',
        '{"scopes": ["read:users!foo=bar"]}',
        '{"expires_in": 1' + "0" * 400 + "}",
        '{"expires_in": 1e999}',
        '{"expires_in": NaN}',
    ],
    ids=lambda b: b[:24],
)
def test_share_codes_answer_any_shape_or_depth_with_a_4xx(hub, body):
    api, codes = hub.api(hub.alice_token), f"{hub.url}/hub/api/share-codes/alice/one"
    before = len(api.get(codes, timeout=30).json()["items"])
    r = api.post(codes, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["message"] and "Traceback" not in r.text
    # no link was made from a refused request
    assert len(api.get(codes, timeout=30).json()["items"]) == before


def test_a_plain_share_code_request_still_makes_a_link(hub):
    api = hub.api(hub.alice_token)
    r = api.post(f"{hub.url}/hub/api/share-codes/alice/two", json={"expires_in": 3600}, timeout=30)
    assert r.status_code == 200 and r.json()["code"], r.text
    r = api.post(f"{hub.url}/hub/api/share-codes/alice/two", timeout=30)  # no body: defaults
    assert r.status_code == 200, r.text
