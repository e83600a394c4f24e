"""What an operator of the audit service relies on: its metrics as Prometheus reads them, its
access log, and its database used from one thread when it is sqlite.
"""

import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.audit_app import running_service
from tests.helpers.audit_service import FakeHubAuth

TOKENS = {
    "hub": {"kind": "service", "name": "audit", "scopes": []},
    "prom": {"kind": "service", "name": "prom", "scopes": ["read:metrics"]},
    "reader": {"kind": "user", "name": "admin", "scopes": ["custom:audit:read"]},
}
LOGGER = "streamlit_hub.audit.service"


@pytest.fixture
def service(tmp_path):
    with running_service(tmp_path, FakeHubAuth(TOKENS)) as service:
        yield service


def view(i, ago=timedelta(0), **kw):
    return {
        "id": f"ev-alice-{i:06d}",
        "time": (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "type": "page_view",
        "owner": "alice",
        "app": "demo",
        "viewer": "carol",
        "page": "Details",
        **kw,
    }


def scrape(service) -> list[str]:
    r = service("GET", "metrics", token="prom")
    assert r.code == 200
    return r.body.decode().splitlines()


# ---- metrics -----------------------------------------------------------------------------------
def test_every_metric_is_named_typed_and_described(service):
    lines = scrape(service)
    described = [line for line in lines if line.startswith("#") and "_created" not in line]
    assert described == [
        "# HELP streamlit_hub_audit_events_received_total "
        "Valid events received (resends included), by type.",
        "# TYPE streamlit_hub_audit_events_received_total counter",
        "# HELP streamlit_hub_audit_events_stored_total Events stored for the first time.",
        "# TYPE streamlit_hub_audit_events_stored_total counter",
        "# HELP streamlit_hub_audit_events_rejected_total Events refused as malformed or forged.",
        "# TYPE streamlit_hub_audit_events_rejected_total counter",
        "# HELP streamlit_hub_audit_page_views_total Page views stored, by app.",
        "# TYPE streamlit_hub_audit_page_views_total counter",
        "# HELP streamlit_hub_audit_delivery_lag_seconds "
        "Seconds from an event happening to the service storing it.",
        "# TYPE streamlit_hub_audit_delivery_lag_seconds histogram",
    ]


def test_stored_events_are_counted_once_and_their_delivery_lag_bucketed(service):
    late = [
        view(1, ago=timedelta(seconds=45)),
        view(2, ago=timedelta(minutes=20)),
        view(3, ago=timedelta(hours=2), type="app_start", actor="alice", reason="user"),
    ]
    assert service("POST", "api/events", token="hub", body={"events": late + late}).code == 200
    lines = scrape(service)
    assert "streamlit_hub_audit_events_stored_total 3.0" in lines
    assert 'streamlit_hub_audit_events_received_total{type="page_view"} 4.0' in lines
    assert 'streamlit_hub_audit_events_received_total{type="app_start"} 2.0' in lines
    buckets = [
        line.removeprefix("streamlit_hub_audit_delivery_lag_seconds_bucket")
        for line in lines
        if line.startswith("streamlit_hub_audit_delivery_lag_seconds_bucket")
    ]
    assert buckets == [
        '{le="0.1"} 0.0',
        '{le="0.25"} 0.0',
        '{le="0.5"} 0.0',
        '{le="1.0"} 0.0',
        '{le="2.0"} 0.0',
        '{le="5.0"} 0.0',
        '{le="10.0"} 0.0',
        '{le="30.0"} 0.0',
        '{le="60.0"} 1.0',
        '{le="300.0"} 1.0',
        '{le="3600.0"} 2.0',
        '{le="+Inf"} 3.0',
    ]
    assert json.loads(service("GET", "api/stats").body) == {"received": 6, "stored": 3}


# ---- the access log ----------------------------------------------------------------------------
def test_the_access_log_has_one_line_per_request_but_successful_posts(service, caplog, monkeypatch):
    # App servers post every few seconds: a successful POST is not worth a line, a failed one is.
    from tornado.httputil import HTTPServerRequest

    monkeypatch.setattr(HTTPServerRequest, "request_time", lambda self: 0.25)
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert service("GET", "api/health").code == 200
    assert service("POST", "api/events", token="hub", body={"events": [view(1)]}).code == 200
    assert service("POST", "api/events", token="hub", body=b"{").code == 400
    assert service("POST", "api/events", body={"events": []}).code == 401
    assert service("GET", "api/nowhere").code == 404
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "200 GET /services/audit/api/health 250.0ms",
        "400 POST /services/audit/api/events 250.0ms",
        "401 POST /services/audit/api/events 250.0ms",
        "404 GET /services/audit/api/nowhere 250.0ms",
    ]


# ---- the database's thread -------------------------------------------------------------------
def test_sqlite_is_used_from_one_thread_off_the_event_loop(service, monkeypatch):
    # sqlite takes one writer at a time ("database is locked"): the service queues its
    # database work on one thread of its own, never on the event loop's.
    real, lock = service.store.query, threading.Lock()
    seen = {"now": 0, "most": 0, "threads": set()}

    def query(**kw):
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
            seen["threads"].add(threading.current_thread().name)
        time.sleep(0.05)
        with lock:
            seen["now"] -= 1
        return real(**kw)

    monkeypatch.setattr(service.store, "query", query)
    answers = service.many(*[("GET", "api/events", {"token": "reader"})] * 5)
    assert [r.code for r in answers] == [200] * 5
    assert seen["most"] == 1 and seen["threads"] == {"audit-db_0"}


# ---- where the hub mounts it, and how much an export may send --------------------------------
def test_the_service_answers_under_the_prefix_and_name_the_hub_gives_it(tmp_path):
    # An admin may register the service under another name: the hub gives it that prefix
    # (JupyterHub does not promise a trailing slash) and its own token that name.
    tokens = {
        "usage": {"kind": "service", "name": "usage", "scopes": []},
        "audit": {"kind": "service", "name": "audit", "scopes": []},
    }
    env = {"JUPYTERHUB_SERVICE_PREFIX": "/services/usage", "JUPYTERHUB_SERVICE_NAME": "usage"}
    with running_service(
        tmp_path, FakeHubAuth(tokens), env=env, prefix="/services/usage/"
    ) as service:
        assert service("GET", "api/health").code == 200
        r = service("POST", "api/events", token="usage", body={"events": [view(1)]})
        assert r.code == 200 and json.loads(r.body)["stored"] == 1
        r = service("POST", "api/events", token="audit", body={"events": [view(2)]})
        assert r.code == 403  # another service that happens to be called audit: not trusted


def test_an_export_stops_when_it_has_sent_its_cap(service, monkeypatch):
    import spawner.audit.service as service_module

    monkeypatch.setattr(service_module, "EXPORT_CAP", 1000)
    events = [view(i) for i in range(1500)]
    assert service("POST", "api/events", token="hub", body={"events": events}).code == 200
    r = service("GET", "api/events?format=jsonl", token="reader")
    assert r.code == 200 and len(r.body.decode().splitlines()) == 1000
