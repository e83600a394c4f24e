"""An app server's token posts activity only for its own app (issue #12, point 5), with a real
hub, proxy and app servers.

JupyterHub 6.1.1 gives every server token ``users:activity!user`` and applies whatever
``servers`` an activity post names, so a hostile app could keep its owner's *other* apps from
the idle culler. The server's real token no longer shows in ``/proc``; the stand-in has
exactly its scopes (``server_token_like``: the hub describes both alike).
"""

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.hub import running_hub
from tests.helpers.procs import processes_mentioning
from tests.security.test_audit_hardening import server_token_like

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("activity-scope")) as h:
        h.alice = h.login("alice")
        for app in ("one", "two"):
            h.start_app(h.alice, "alice", app, {"path": "apps/demo/app.py"})
        h.admin_token = h.token("admin")
        h.alice_token = h.token("alice")
        h.app_one_token = server_token_like(h, "alice", "one")
        yield h


def activity_url(hub, where: str, user: str = "alice") -> str:
    """The activity API on the hub's public URL, or on its internal address (where app
    servers post it: ``JUPYTERHUB_ACTIVITY_URL``)."""
    base = hub.url if where == "public" else f"http://127.0.0.1:{hub.hub_port}"
    return f"{base}/hub/api/users/{user}/activity"


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def last_activity(hub, app: str, token=None) -> datetime | None:
    model = (
        hub.api(token or hub.admin_token).get(f"{hub.url}/hub/api/users/alice", timeout=30).json()
    )
    value = model["servers"][app]["last_activity"]
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def same(a: datetime | None, b: datetime) -> bool:
    """The hub's answer for a posted time (to the millisecond: it stores what it parses)."""
    return a is not None and abs((a - b).total_seconds()) < 0.001


def post(hub, token, where, body):
    return hub.api(token).post(
        activity_url(hub, where), json=body, timeout=30, allow_redirects=False
    )


def servers(**when: datetime) -> dict:
    return {"servers": {name: {"last_activity": iso(t)} for name, t in when.items()}}


def test_the_app_servers_own_activity_posts_still_land(hub):
    # the real app server posts on the hub's internal address with its real token
    before = last_activity(hub, "one")
    assert hub.open_app(hub.alice, "alice", "one").status_code == 200
    deadline = time.monotonic() + 30
    while last_activity(hub, "one") == before and time.monotonic() < deadline:
        time.sleep(0.3)
    after = last_activity(hub, "one")
    assert after != before and (before is None or after > before), hub.log_tail()
    assert "activity post refused" not in hub.log_tail(400)


@pytest.mark.parametrize("where", ["public", "internal"])
def test_an_app_token_posts_activity_only_for_its_own_app(hub, where):
    # keeps alice/two from the culler for most of an hour (JupyterHub refuses later times),
    # again and again
    far = soon(50 * 60)
    two_before, one_before = last_activity(hub, "two"), last_activity(hub, "one")

    r = post(hub, hub.app_one_token, where, servers(two=far))
    assert r.status_code == 403, (r.status_code, r.text)
    message = r.json()["message"]
    assert "alice/one" in message and "'two'" in message, message
    r = post(hub, hub.app_one_token, where, servers(one=soon(60), two=far))
    assert r.status_code == 403, (r.status_code, r.text)
    assert last_activity(hub, "two") == two_before
    assert last_activity(hub, "one") == one_before  # nothing of a refused post is applied

    own = soon(120)
    r = post(hub, hub.app_one_token, where, servers(one=own))
    assert r.status_code == 200, r.text
    assert same(last_activity(hub, "one"), own)
    # the user-level last_activity may stay
    r = post(hub, hub.app_one_token, where, {"last_activity": iso(soon(120))})
    assert r.status_code == 200, r.text
    assert last_activity(hub, "two") == two_before


def test_people_admins_and_services_still_post_for_any_app(hub):
    by_alice = soon(300)
    r = post(hub, hub.alice_token, "public", servers(two=by_alice))  # the owner's own token
    assert r.status_code == 200, r.text
    assert same(last_activity(hub, "two"), by_alice)
    by_admin = soon(360)
    r = post(hub, hub.admin_token, "internal", servers(one=by_admin, two=by_admin))
    assert r.status_code == 200, r.text
    assert same(last_activity(hub, "one"), by_admin) and same(last_activity(hub, "two"), by_admin)
    # a token with users:activity and no server-limited access (what a service posting
    # activity would hold) is not held to one app
    r = hub.api(hub.admin_token).post(
        f"{hub.url}/hub/api/users/alice/tokens",
        timeout=30,
        json={"scopes": ["users:activity!user=alice"], "expires_in": 3600},
    )
    assert r.status_code == 201, r.text
    by_service = soon(420)
    r = post(hub, r.json()["token"], "public", servers(two=by_service))
    assert r.status_code == 200, r.text
    assert same(last_activity(hub, "two"), by_service)

    # the idle culler reads what it always read, and none of a refused post
    assert post(hub, hub.app_one_token, "internal", servers(two=soon(50 * 60))).status_code == 403
    culler = [
        p
        for p in processes_mentioning("jupyterhub_idle_culler")
        if f"JUPYTERHUB_API_URL=http://127.0.0.1:{hub.hub_port}/".encode()
        in open(f"/proc/{p}/environ", "rb").read()
    ]
    assert len(culler) == 1, culler
    env = open(f"/proc/{culler[0]}/environ", "rb").read().split(b"\0")
    token = next(
        e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"JUPYTERHUB_API_TOKEN=")
    )
    r = hub.api(token).get(f"{hub.url}/hub/api/users", params={"state": "ready"}, timeout=30)
    assert r.status_code == 200, r.text
    seen = next(u for u in r.json() if u["name"] == "alice")["servers"]
    seen = {
        name: datetime.fromisoformat(s["last_activity"].replace("Z", "+00:00"))
        for name, s in seen.items()
    }
    assert same(seen["one"], by_admin) and same(seen["two"], by_service), seen
