"""What the audit service answers a sender, exactly, and what it logs of a refusal.

The senders (tests/unit/test_audit_client.py) read these answers: ``stored`` and
``duplicates`` to know a batch landed, ``rejected`` (index and reason) to log and drop what
will never be accepted, the status to tell a forgery (403) from a malformed event (400). An
admin reads the reasons and the service's log lines. test_audit_service.py tests who may write
what; this file pins the wording and the counts.
"""

import io
import json
import logging
from datetime import UTC, datetime

import pytest

from tests.helpers.audit_app import running_service
from tests.helpers.audit_service import FakeHubAuth

APP_SCOPES = ["access:servers!server=alice/demo", "users:activity!user=alice"]
TOKENS = {
    "hub": {"kind": "service", "name": "audit", "scopes": []},
    "prom": {"kind": "service", "name": "prom", "scopes": ["read:metrics"]},
    "app": {"kind": "user", "name": "alice", "scopes": APP_SCOPES},
    # the hub's model of a token may leave out "kind": it is a user's then
    "app-nokind": {"name": "alice", "scopes": APP_SCOPES},
    "reader": {"kind": "user", "name": "admin", "scopes": ["custom:audit:read"]},
}
BAD_ID = "id: expected 8-64 of A-Z a-z 0-9 _ . : - (a UUID is fine)"
NOT_AN_OBJECT = "(event): expected a JSON object"
ONLY_VIEWS = "type: an app server may send only page_view, session_end, session_start"
OWN_APP_ONLY = "owner/app: this token belongs to alice/demo and may write only its events"
LOGGER = "streamlit_hub.audit.service"


@pytest.fixture
def service(tmp_path):
    stream = io.StringIO()
    with running_service(tmp_path, FakeHubAuth(TOKENS), event_stream=stream) as service:
        service.stream = stream
        yield service


def view(i, owner="alice", app="demo", **kw):
    return {
        "id": f"ev-{owner}-{i:06d}",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "type": "page_view",
        "owner": owner,
        "app": app,
        "viewer": "carol",
        "page": "Details",
        **kw,
    }


def post(service, events, token="hub"):
    r = service("POST", "api/events", token=token, body={"events": events})
    return r.code, json.loads(r.body)


def warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelname == "WARNING"]


# ---- who is refused, in words -----------------------------------------------------------------
def test_a_service_that_is_not_trusted_is_refused_as_a_service_by_name(service):
    code, body = post(service, [view(1)], token="prom")
    assert (code, body) == (
        403,
        {
            "status": 403,
            "message": "service 'prom' may not write audit events: only an app server's own "
            "token or the hub may.",
        },
    )


def test_a_body_that_is_not_json_is_a_bad_request_not_an_auth_failure(service):
    r = service("POST", "api/events", token="hub", body=b'{"events": [')
    assert r.code == 400
    assert json.loads(r.body) == {
        "status": 400,
        "message": 'Body is not JSON; send {"events": [ … ]}.',
    }


# ---- the answer to a batch ----------------------------------------------------------------------
def test_a_batch_refused_whole_says_so_with_every_reason(service):
    code, body = post(service, [{"id": "x"}, 5])
    assert (code, body) == (
        400,
        {
            "status": 400,
            "stored": 0,
            "rejected": [
                {"index": 0, "message": BAD_ID},
                {"index": 1, "message": NOT_AN_OBJECT},
            ],
            "message": BAD_ID,
        },
    )


def test_an_app_servers_batch_for_another_app_is_a_forgery_403(service):
    code, body = post(service, [view(1, owner="bob", app="demo")], token="app")
    assert (code, body) == (
        403,
        {
            "status": 403,
            "stored": 0,
            "rejected": [{"index": 0, "message": OWN_APP_ONLY}],
            "message": OWN_APP_ONLY,
        },
    )
    assert service.store.count() == 0


def test_an_app_servers_batch_goes_on_after_an_event_of_another_app(service):
    # an app's spool may hold events of a former token; they must not hold back the rest
    code, body = post(service, [view(1, app="other"), view(2), view(3)], token="app")
    assert (code, body) == (
        200,
        {
            "received": 2,
            "stored": 2,
            "duplicates": 0,
            "rejected": [{"index": 0, "message": OWN_APP_ONLY}],
        },
    )


def test_the_answer_counts_resends_as_duplicates(service):
    first, second, third = view(1), view(2), view(3)
    assert post(service, [first, first, second]) == (
        200,
        {"received": 3, "stored": 2, "duplicates": 1, "rejected": []},
    )
    assert post(service, [first, third]) == (
        200,
        {"received": 2, "stored": 1, "duplicates": 1, "rejected": []},
    )


def test_at_most_100_reasons_are_sent_back_and_every_refusal_is_counted(service):
    bad = [{"id": f"x{i}"} for i in range(150)]
    code, body = post(service, bad)
    assert code == 400 and body["message"] == BAD_ID
    assert [r["index"] for r in body["rejected"]] == list(range(100))
    code, body = post(service, [view(1), *bad])
    assert code == 200 and (body["received"], body["stored"]) == (1, 1)
    assert [r["index"] for r in body["rejected"]] == list(range(1, 101))
    metrics = service("GET", "metrics", token="reader").body.decode().splitlines()
    assert "streamlit_hub_audit_events_rejected_total 300.0" in metrics  # both batches, whole


# ---- what an admin reads in the service's log -------------------------------------------------
def test_a_batch_refused_whole_is_logged_with_its_sender_and_first_reason(service, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    authorize = {**view(1), "type": "authorize", "outcome": "allowed"}
    stop = {**view(2), "type": "app_stop", "reason": "crash"}
    assert post(service, [authorize, stop], token="app-nokind")[0] == 403
    assert post(service, [{"id": "x"}])[0] == 400
    assert warnings(caplog) == [
        f"refused a batch of 2 events from user alice: {ONLY_VIEWS}",
        f"refused a batch of 1 events from service audit: {BAD_ID}",
    ]


def test_a_batch_refused_in_part_is_logged_with_its_sender_and_first_reason(service, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert post(service, [view(1), view(2, app="other")], token="app-nokind")[0] == 200
    assert post(service, [view(3), {"id": "x"}, 5])[0] == 200
    assert post(service, [view(4)])[0] == 200  # nothing refused: nothing logged
    assert warnings(caplog) == [
        f"refused 1 of 2 events from user alice: {OWN_APP_ONLY}",
        f"refused 2 of 3 events from service audit: {BAD_ID}",
    ]


def test_each_stored_event_is_one_json_line_for_log_collectors(service):
    first, second = view(1), view(2)
    post(service, [first, second, first])
    lines = service.stream.getvalue().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [first["id"], second["id"]]
    assert {json.loads(line)["log_type"] for line in lines} == {"streamlit_hub_audit"}


# ---- the Authorization header, read as the hub reads it ---------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        "token hub",
        "Token hub",
        "Bearer hub",
        "bearer hub",
        "BEARER hub",
        "token  hub",
        "token hub ",
    ],
)
def test_a_token_is_taken_as_token_or_bearer_in_any_case(service, header):
    # Prometheus sends "Bearer" (authorization: {type: Bearer}); the hub's own clients "token"
    r = service("POST", "api/events", headers={"Authorization": header}, body={"events": []})
    assert r.code == 200, r.body
    r = service("GET", "metrics", headers={"Authorization": header.replace("hub", "prom")})
    assert r.code == 200, r.body


@pytest.mark.parametrize("header", ["Basic hub", "hub", "token", "token  ", "Bearer", "hub token"])
def test_a_token_under_another_scheme_or_none_is_not_read(service, header):
    r = service("POST", "api/events", headers={"Authorization": header}, body={"events": []})
    assert r.code == 401
    assert json.loads(r.body)["message"] == (
        "Send events with a hub API token: Authorization: token …"
    )
    r = service("GET", "metrics", headers={"Authorization": header.replace("hub", "prom")})
    assert r.code == 401
