"""The audit service's small endpoints and exports, exactly (for mutation testing).

test_audit_service.py tests who may write and read what; these pin the health, stats,
OpenAPI and metrics endpoints, the exports, the ingest refusals and main(). The usage page:
test_audit_usage_page.py and test_audit_usage_words.py.
"""

import asyncio
import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from spawner.audit.events import TYPES
from spawner.audit.service import OPENAPI_FILE, make_app


# ---- the small endpoints ----------------------------------------------------------------------
class HubAuth:
    tokens = {
        "reader": {"kind": "user", "name": "admin", "scopes": ["custom:audit:read"]},
        "metrics": {"kind": "service", "name": "prom", "scopes": ["read:metrics"]},
        "nobody": {"kind": "user", "name": "x", "scopes": []},
    }

    async def user_for_token(self, token, sync=False):
        return self.tokens.get(token)

    async def get_user(self, handler, sync=False):
        return self.tokens.get(handler.request.headers.get("Authorization", "").partition(" ")[2])


@pytest.fixture
def fetch(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app, settings = make_app(
        {"STREAMLIT_HUB_AUDIT_DB_URL": f"sqlite:///{tmp_path / 'a.sqlite'}"}, hub_auth=HubAuth()
    )

    async def go(path, token=None):
        server = app.listen(port, "127.0.0.1")
        try:
            headers = {"Authorization": f"token {token}"} if token else {}
            return await AsyncHTTPClient().fetch(
                HTTPRequest(f"http://127.0.0.1:{port}/services/audit/{path}", headers=headers),
                raise_error=False,
            )
        finally:
            server.stop()

    yield lambda *a, **kw: asyncio.run(go(*a, **kw))
    settings["audit_store"].engine.dispose()
    settings["audit_executor"].shutdown()


def test_health(fetch):
    r = fetch("api/health")
    assert r.code == 200 and json.loads(r.body) == {"status": "ok"}


def test_stats_count_from_zero(fetch):
    r = fetch("api/stats")
    assert r.code == 200 and json.loads(r.body) == {"received": 0, "stored": 0}


def test_the_openapi_document_is_served_as_json(fetch):
    r = fetch("api/openapi.json")
    assert r.code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.body == OPENAPI_FILE.read_bytes() and json.loads(r.body)["openapi"]


@pytest.mark.parametrize(
    "token, code, words",
    [
        (None, 401, "Scrape with a hub API token (read:metrics)."),
        ("nobody", 403, "This token has neither read:metrics nor custom:audit:read."),
        ("metrics", 200, None),
        ("reader", 200, None),
    ],
)
def test_metrics_need_one_of_two_scopes(fetch, token, code, words):
    r = fetch("metrics", token)
    assert r.code == code
    if words:
        assert json.loads(r.body) == {"status": code, "message": words}
    else:
        from prometheus_client import CONTENT_TYPE_LATEST

        assert r.headers["Content-Type"] == CONTENT_TYPE_LATEST
        assert b"streamlit_hub_audit_events_received" in r.body


# ---- the usage page and the exports, over HTTP ------------------------------------------------
class Tokens(HubAuth):
    tokens = {
        **HubAuth.tokens,
        "hub": {"kind": "service", "name": "audit", "scopes": []},
        "alice": {"kind": "user", "name": "alice", "scopes": []},
        "apptok": {"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/demo"]},
        "nokind": {"name": "alice", "scopes": []},
        "audit-user": {"kind": "user", "name": "audit", "scopes": []},
    }

    async def user_for_token(self, token, sync=False):
        if token == "hub-down":
            from tornado import web

            raise web.HTTPError(502, "the hub is down")
        return self.tokens.get(token)

    login_url = "/hub/login-here"

    async def get_user(self, handler, sync=False):
        # a browser's cookie counts for pages and the events API, never for /metrics
        cookie = handler.request.headers.get("Cookie", "")
        if cookie.startswith("session="):
            return self.tokens.get(cookie.partition("=")[2])
        return await super().get_user(handler, sync)


@pytest.fixture
def service(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app, settings = make_app(
        {"STREAMLIT_HUB_AUDIT_DB_URL": f"sqlite:///{tmp_path / 'a.sqlite'}"}, hub_auth=Tokens()
    )

    async def go(method, path, token=None, body=None, headers=None):
        server = app.listen(port, "127.0.0.1")
        try:
            headers = dict(headers or {})
            if token:
                headers["Authorization"] = f"token {token}"
            return await AsyncHTTPClient().fetch(
                HTTPRequest(
                    f"http://127.0.0.1:{port}/services/audit/{path}",
                    method=method,
                    headers=headers,
                    body=json.dumps(body) if body is not None else None,
                    follow_redirects=False,
                    allow_nonstandard_methods=True,
                ),
                raise_error=False,
            )
        finally:
            server.stop()

    run = lambda *a, **kw: asyncio.run(go(*a, **kw))  # noqa: E731
    run.settings, run.app, run.port = settings, app, port
    run.url = f"http://127.0.0.1:{port}/services/audit/"
    yield run
    settings["audit_store"].engine.dispose()
    settings["audit_executor"].shutdown()


def view(i, owner="alice", app="demo", ago=timedelta(minutes=1), **kw):
    t = datetime.now(UTC) - ago
    return {
        "id": f"ev-{owner}-{i:06d}",
        "time": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "type": "page_view",
        "owner": owner,
        "app": app,
        "viewer": "carol",
        "page": "Détails",
        **kw,
    }


def test_exports_are_files_of_their_format(service):
    service(
        "POST",
        "api/events",
        "hub",
        {"events": [view(i) for i in range(1001)] + [view(1, owner="bob")]},
    )
    r = service("GET", "api/events?format=csv", "alice")
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"] == 'attachment; filename="audit-events.csv"'
    assert len(r.body.decode().strip().splitlines()) == 1 + 1001  # header, alice's only, every page
    r = service("GET", "api/events?format=jsonl", "alice")
    assert r.headers["Content-Type"] == "application/jsonl; charset=utf-8"
    assert r.headers["Content-Disposition"] == 'attachment; filename="audit-events.jsonl"'
    lines = r.body.decode("utf-8").splitlines()
    assert len(lines) == 1001 and '"page": "Détails"' in lines[0]  # UTF-8, not \\u escapes
    assert {json.loads(line)["owner"] for line in lines} == {"alice"}


def test_an_export_stops_at_its_cap(service, monkeypatch):
    import spawner.audit.service as service_module

    monkeypatch.setattr(service_module, "EXPORT_CAP", 1001)
    service("POST", "api/events", "hub", {"events": [view(i) for i in range(2001)]})
    r = service("GET", "api/events?format=jsonl", "reader")
    assert len(r.body.decode().splitlines()) == 2000  # pages of 1000 until the cap is passed


def test_errors_are_json_with_the_reason(service, monkeypatch):
    r = service("DELETE", "api/events", "reader")
    assert r.code == 405 and r.headers["Content-Type"] == "application/json"
    assert json.loads(r.body) == {"status": 405, "message": "Method Not Allowed"}
    r = service("GET", "api/events")
    assert json.loads(r.body) == {
        "status": 401,
        "message": "Sign in through the hub, or send a hub API token.",
    }

    def broken(**kw):
        raise RuntimeError("the database is gone")

    monkeypatch.setattr(service.settings["audit_store"], "query", broken)
    r = service("GET", "api/events", "reader")
    assert r.code == 500 and r.headers["Content-Type"] == "application/json"
    assert json.loads(r.body) == {
        "status": 500,
        "message": "The audit service failed; the error is in its log.",
    }


@pytest.mark.parametrize(
    "query, code, n",
    [
        ("", 200, 100),
        ("?limit=1", 200, 1),
        ("?limit=1000", 200, 101),
        ("?limit=5", 200, 5),
        ("?limit=0", 400, 0),
        ("?limit=1001", 400, 0),
    ],
)
def test_page_sizes(service, query, code, n):
    service("POST", "api/events", "hub", {"events": [view(i) for i in range(101)]})
    r = service("GET", "api/events" + query, "reader")
    assert r.code == code
    if code == 200:
        assert len(json.loads(r.body)["events"]) == n
    else:
        assert json.loads(r.body)["message"] == "limit: expected a whole number from 1 to 1000"


def test_stats_count_what_was_received_and_stored(service):
    service("POST", "api/events", "hub", {"events": [view(1), view(1), view(2)]})
    assert json.loads(service("GET", "api/stats").body) == {"received": 3, "stored": 2}


def test_metrics_take_a_token_in_the_header_only(service):
    assert service("GET", "metrics", headers={"Cookie": "session=reader"}).code == 401
    assert service("GET", "", headers={"Cookie": "session=reader"}).code == 200  # the page does


def test_main_refuses_a_bad_setting_with_its_name(monkeypatch, capsys):
    from spawner.audit.service import main

    monkeypatch.setenv("STREAMLIT_HUB_AUDIT_RETENTION_DAYS", "soon")
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "streamlit-hub-audit: STREAMLIT_HUB_AUDIT_RETENTION_DAYS='soon' is not a number\n"
    )


def test_main_purges_old_events_and_listens_where_it_is_told(monkeypatch, tmp_path, caplog):
    import logging

    import spawner.audit.service as service_module
    from spawner.audit.events import parse_event
    from spawner.audit.store import AuditStore

    db = f"sqlite:///{tmp_path / 'a.sqlite'}"
    store = AuditStore(db)
    old = datetime.now(UTC) - timedelta(days=400)
    store.add(
        [parse_event({**view(1), "time": old.strftime("%Y-%m-%dT%H:%M:%SZ")}), parse_event(view(2))]
    )
    store.engine.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {
        "STREAMLIT_HUB_AUDIT_DB_URL": db,
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_CLIENT_ID": "service-audit",
    }.items():
        monkeypatch.setenv(k, v)
    listened = []

    class Stop:
        async def wait(self):
            listened.append(socket.create_connection(("127.0.0.1", port), timeout=2).close())
            raise KeyboardInterrupt

    monkeypatch.setattr(service_module.asyncio, "Event", Stop)
    caplog.set_level(logging.INFO, "streamlit_hub.audit.service")
    assert service_module.main([]) == 0
    assert listened == [None]  # it was listening on the port of JUPYTERHUB_SERVICE_URL
    assert "retention: removed 1 events older than 365.0 days" in caplog.messages
    assert (
        f"audit service on http://127.0.0.1:{port} (store {db}, retention 365.0 days)"
    ) in caplog.messages
    check = AuditStore(db)
    assert check.count() == 1
    check.engine.dispose()


@pytest.fixture
def post(service, monkeypatch):
    """POST raw bytes to api/events (the service fixture sends JSON)."""
    import spawner.audit.service as service_module

    def send(body: bytes, token="hub", headers=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"token {token}"

        async def go():
            server = service.app.listen(service.port, "127.0.0.1")
            try:
                return await AsyncHTTPClient().fetch(
                    HTTPRequest(service.url + "api/events", method="POST", headers=h, body=body),
                    raise_error=False,
                )
            finally:
                server.stop()

        return asyncio.run(go())

    send.module = service_module
    return send


def message(r):
    return json.loads(r.body)["message"]


def test_ingest_refusals_say_exactly_why(service, post, monkeypatch):
    assert (
        message(post(b"{}", token="hub-down")) == "The hub could not check this token; retry later."
    )
    assert post(b"{}", token="hub-down").code == 503
    r = post(b"{}", token=None)
    assert (
        r.code == 401 and message(r) == "Send events with a hub API token: Authorization: token …"
    )
    r = post(b"{}", token=None, headers={"Cookie": "session=hub"})  # a cookie is no token here
    assert r.code == 401
    r = post(b"{}", token="alice")
    assert r.code == 403 and message(r) == (
        "user 'alice' may not write audit events: only an app server's own token or the hub may."
    )
    r = post(b"{}", token="audit-user")  # a *user* named like the service is not the service
    assert r.code == 403 and message(r).startswith("user 'audit' may not")
    r = post(b"{}", token="nokind")
    assert r.code == 403 and message(r).startswith("user 'alice' may not")
    assert message(post(b"")) == 'Expected a JSON object {"events": [ … ]}.'
    assert message(post(b"[1]")) == 'Expected a JSON object {"events": [ … ]}.'
    assert message(post(b"{x")) == 'Body is not JSON; send {"events": [ … ]}.'
    assert message(post(b"[" * 100000 + b"]" * 100000)) == (
        'Body nests too deeply; send {"events": [ … ]} with plain events.'
    )
    monkeypatch.setattr(post.module, "MAX_BODY", 20)
    assert post(b'{"events": []}      ').code == 200  # 20 bytes: the limit
    r = post(b'{"events": []}       ')
    assert r.code == 413 and message(r) == "Body over 20 bytes; send smaller batches."
    monkeypatch.setattr(post.module, "MAX_BODY", 8 * 1024 * 1024)
    monkeypatch.setattr(post.module, "MAX_BATCH", 2)
    assert post(json.dumps({"events": [view(1), view(2)]}).encode()).code == 200
    r = post(json.dumps({"events": [view(1), view(2), view(3)]}).encode())
    assert r.code == 413 and message(r) == "At most 2 events per request."


def test_an_app_server_batch_keeps_going_after_a_refused_event(service, post):
    bad = {**view(1), "type": "authorize", "outcome": "allowed"}
    r = post(json.dumps({"events": [bad, view(2)]}).encode(), token="apptok")
    assert r.code == 200
    body = json.loads(r.body)
    assert body["stored"] == 1 and body["rejected"] == [
        {
            "index": 0,
            "message": "type: an app server may send only page_view, session_end, session_start",
        }
    ]


def test_a_token_without_a_kind_is_a_users(service):
    service("POST", "api/events", "hub", {"events": [view(1), view(2, owner="bob")]})
    events = json.loads(service("GET", "api/events", "nokind").body)["events"]
    assert [e["owner"] for e in events] == ["alice"]


@pytest.mark.parametrize(
    "query, code, words",
    [
        ("owner=" + "o" * 255, 200, None),
        ("owner=" + "o" * 256, 400, "owner: expected 1 to 255 characters"),
        ("app=", 400, "app: expected 1 to 255 characters"),
        (
            "type=x",
            400,
            # every type of the schema, in its order (the list grows with the schema)
            "type: expected one of authorize, session_start, page_view, session_end, app_start, "
            "app_stop, share_granted, share_revoked" + "".join(f", {t}" for t in TYPES[8:]),
        ),
        ("until=soon", 400, "until: 'soon' is not an ISO 8601 time"),
        ("since=soon", 400, "since: 'soon' is not an ISO 8601 time"),
    ],
)
def test_query_filters_exactly(service, query, code, words):
    r = service("GET", "api/events?" + query, "reader")
    assert r.code == code
    if words:
        assert message(r) == words


def test_until_and_since_filter(service):
    service(
        "POST",
        "api/events",
        "hub",
        {"events": [view(1, ago=timedelta(hours=3)), view(2, ago=timedelta(hours=1))]},
    )
    cut = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = json.loads(service("GET", f"api/events?until={cut}", "reader").body)["events"]
    after = json.loads(service("GET", f"api/events?since={cut}", "reader").body)["events"]
    assert [e["id"] for e in before] == ["ev-alice-000001"] and [e["id"] for e in after] == [
        "ev-alice-000002"
    ]


def test_events_are_logged_one_json_line_each_in_utf_8():
    import io

    from spawner.audit.events import parse_event
    from spawner.audit.service import emit_json_lines

    out = io.StringIO()
    emit_json_lines([parse_event(view(1)), parse_event(view(2))], out)
    lines = out.getvalue().split("\n")
    assert lines[2] == "" and len(lines) == 3
    assert lines[0].startswith('{"log_type": "streamlit_hub_audit", "id": "ev-alice-000001"')
    assert '"page": "Détails"' in lines[1]
    emit_json_lines([], out)
    emit_json_lines([parse_event(view(3))], None)
    assert len(out.getvalue().split("\n")) == 3


def test_metrics_label_received_events_by_type_and_time_their_delivery(service):
    service("POST", "api/events", "hub", {"events": [view(1, ago=timedelta(seconds=0))]})
    text = service("GET", "metrics", "metrics").body.decode()
    assert 'streamlit_hub_audit_events_received_total{type="page_view"} 1.0' in text
    lag = float(
        next(
            line.split()[-1]
            for line in text.splitlines()
            if line.startswith("streamlit_hub_audit_delivery_lag_seconds_sum")
        )
    )
    assert 0 <= lag < 1


def test_the_csv_export_says_who_did_what_and_carries_extra(service):
    """A share or stop row names its actor; ``extra`` (who got access) is a JSON cell."""
    import csv
    import io

    event = view(1, type="share_granted", actor="alice", extra={"with": "carol", "kind": "user"})
    for key in ("page", "session"):
        event.pop(key, None)
    service("POST", "api/events", "hub", {"events": [event]})
    r = service("GET", "api/events?format=csv", "alice")
    rows = list(csv.DictReader(io.StringIO(r.body.decode())))
    assert [(row["type"], row["actor"], row["extra"]) for row in rows] == [
        ("share_granted", "alice", '{"kind": "user", "with": "carol"}')
    ]
