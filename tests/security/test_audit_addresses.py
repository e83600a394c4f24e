"""Forged client addresses in the audit trail (issue #12, point 4), with a real hub, the real
configurable-http-proxy, the audit service and a Streamlit app server.

A viewer sends ``X-Forwarded-For: 6.6.6.6`` and ``X-Real-Ip: 7.7.7.7`` on every request: the
sign-in to an app (the hub's ``/hub/api/oauth2/authorize``), a share made by the owner (hub
side) and the app's Streamlit websocket session (app side). The trail records the address the
local proxy saw (127.0.0.1), never 6.6.6.6 or 7.7.7.7, and the hub's and the app server's
events of the one visit name the same address.
"""

import json
import time

import pytest

from tests.helpers.hub import running_hub
from tests.helpers.streamlit_ws import session

pytestmark = pytest.mark.integration

SPOOF = {"X-Forwarded-For": "6.6.6.6", "X-Real-Ip": "7.7.7.7"}
FORGED = {"6.6.6.6", "7.7.7.7"}

APP = """
import streamlit as st
st.write("addresses")
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("audit-addresses")) as h:
        h.add_app("alice", "where", APP)
        h.admin_token = h.token("admin")
        yield h


def events(hub, **filters) -> list[dict]:
    r = hub.api(hub.admin_token).get(
        hub.url + "/services/audit/api/events", params={"limit": 1000, **filters}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()["events"]


def wait_for(hub, kinds: set[str], timeout=30.0, **filters) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = events(hub, **filters)
        if kinds <= {e["type"] for e in found} or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_forwarded_headers_from_a_client_never_become_its_recorded_address(hub):
    alice, carol = hub.login("alice"), hub.login("carol")
    hub.start_app(alice, "alice", "where", {"path": "apps/where/app.py"})

    # hub side, REST API: the owner shares the app while lying about her address
    alice.headers.update(SPOOF)
    r = alice.post(f"{hub.url}/hub/api/shares/alice/where", json={"user": "carol"}, timeout=10)
    assert r.status_code == 200, r.text

    # hub side, sign-in: every request of the OAuth dance carries the forged headers
    carol.headers.update(SPOOF)
    r = hub.open_app(carol, "alice", "where")
    if 'id="authorize-open-app"' in r.text:  # the consent page, once per app
        form = {
            "_xsrf": carol.cookies.get("_xsrf", path="/hub/"),
            "scopes": "read:users:groups!user",
        }
        r = carol.post(r.url, data=form, timeout=30)
    assert r.status_code == 200 and "/user/alice/where/" in r.url, (r.status_code, r.url)
    assert any("/hub/api/oauth2/authorize" in h.url for h in r.history)

    # app side: the Streamlit websocket session, with the same forged headers
    out = session(
        hub.app_ws_url("alice", "where"),
        {
            "Cookie": hub.app_cookie_header(carol, "alice", "where"),
            "User-Agent": "address-test/1",
            **SPOOF,
        },
    )
    assert out["finished"] == 1

    found = wait_for(
        hub,
        {"authorize", "session_start", "session_end", "share_granted"},
        owner="alice",
        app="where",
    )
    by_type: dict[str, list[dict]] = {}
    for e in found:
        by_type.setdefault(e["type"], []).append(e)
    print(json.dumps({k: [e.get("client") for e in v] for k, v in by_type.items()}))

    (authorize,) = [e for e in by_type["authorize"] if e["viewer"] == "carol"]
    (start,) = [e for e in by_type["session_start"] if e["viewer"] == "carol"]
    (end,) = [e for e in by_type["session_end"] if e["viewer"] == "carol"]
    (shared,) = by_type["share_granted"]
    assert authorize["outcome"] == "allowed"
    assert authorize["client"] == "127.0.0.1", authorize  # the hub
    assert start["client"] == end["client"] == "127.0.0.1", start  # the app server
    assert shared["client"] == "127.0.0.1", shared
    # one visit, one address on both sides
    assert authorize["client"] == start["client"]
    # and the forged values appear nowhere in the trail
    for e in found:
        assert e.get("client") not in FORGED, e
        assert not FORGED & set(json.dumps(e).replace('"', " ").replace(",", " ").split()), e
