"""A hostile analyst's app against the hub, other analysts and its own viewers (local mode).

The app below is what an analyst could publish: on its first run it tries to read the hub's
secrets, other analysts' homes and logs, the environment of every other process (the proxy's
auth token, the audit service's, the culler's and other apps' hub tokens) and its own API
token in ``/proc/self/environ``, then steals the session tokens of the viewers its own app
server holds. It writes what it got into its own folder; each test shows one attack refused.

Per-analyst Unix accounts need the hub to run as root (as in CI and as a service); as another
user these tests are skipped with that reason (the hub then warns that apps are trusted).
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import requests

from tests.helpers.hub import running_hub
from tests.helpers.streamlit_ws import WebsocketRefused, session, ws_url

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-analyst app accounts need root")

HOSTILE = r"""
import gc, json, os, pathlib
import streamlit as st

loot = {"files": {}, "environ": {}, "tokens": [], "uid": os.getuid()}
for name, path in json.loads(pathlib.Path("targets.json").read_text()).items():
    try:
        loot["files"][name] = pathlib.Path(path).read_bytes()[:200].decode("latin-1")
    except OSError as e:
        loot["files"][name] = f"refused: {e.__class__.__name__}"
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            loot["environ"][pid] = pathlib.Path(f"/proc/{pid}/environ").read_bytes().decode("latin-1")
        except OSError:
            pass
loot["listings"] = {}
for name, path in json.loads(pathlib.Path("folders.json").read_text()).items():
    try:
        loot["listings"][name] = sorted(os.listdir(path))
    except OSError as e:
        loot["listings"][name] = f"refused: {e.__class__.__name__}"
try:
    loot["self_environ"] = pathlib.Path("/proc/self/environ").read_bytes().decode("latin-1")
except OSError as e:  # non-dumpable (per-user accounts): closed even to the app itself
    loot["self_environ"] = f"refused: {e.__class__.__name__}"
loot["self_environ"] += "\0" + "\0".join(f"{k}={v}" for k, v in os.environ.items())
for obj in gc.get_objects():
    if type(obj).__name__ == "HubAuthMiddleware":
        loot["tokens"] += [entry[0] for entry in obj._logins.values()]
pathlib.Path("loot.json").write_text(json.dumps(loot))
st.title("Totally harmless")
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(
        tmp_path_factory.mktemp("hostile"),
        extra_config="""
c.StreamlitSpawnerMixin.auth_cache_seconds = 1.0
""",
    ) as h:
        yield h


@pytest.fixture(scope="module")
def world(hub):
    """bob runs demo (shared with the viewers group); alice runs evil (shared with carol)."""
    bob = hub.login("bob")
    hub.start_app(bob, "bob", "demo", {"path": "apps/demo/app.py"})
    assert (
        bob.post(
            f"{hub.url}/hub/api/shares/bob/demo", json={"group": "viewers"}, timeout=10
        ).status_code
        == 200
    )
    hub.open_app(bob, "bob", "demo")  # bob's app server now holds bob's session

    alice = hub.login("alice")
    folder = hub.add_app("alice", "evil", "import streamlit as st\nst.title('warming up')\n")
    data = hub.data_dir
    targets = {
        "cookie secret": data / "jupyterhub_cookie_secret",
        "hub database": data / "jupyterhub.sqlite",
        "audit store": data / "audit.sqlite",
        "bob's app": data / "homes" / "bob" / "apps" / "demo" / "app.py",
        "bob's log": data / "logs" / "bob" / "demo.log",
        "hub log": hub.log_path,
    }
    hub.start_app(alice, "alice", "evil", {"path": "apps/evil/app.py"})
    assert (
        alice.post(
            f"{hub.url}/hub/api/shares/alice/evil", json={"user": "carol"}, timeout=10
        ).status_code
        == 200
    )
    (folder / "targets.json").write_text(json.dumps({k: str(v) for k, v in targets.items()}))
    folders = {
        "the data dir": data,
        "bob's home": data / "homes" / "bob",
        "bob's logs": data / "logs" / "bob",
    }
    (folder / "folders.json").write_text(json.dumps({k: str(v) for k, v in folders.items()}))
    (folder / "app.py").write_text(HOSTILE)
    hub.hand_over("alice", folder)
    hub.stop_app(alice, "alice", "evil")
    hub.start_app(alice, "alice", "evil", {"path": "apps/evil/app.py"})

    carol = hub.login("carol")  # a viewer of both apps
    page = open_as(hub, carol, "alice", "evil")
    assert page.status_code == 200, page.status_code
    cookie = hub.app_cookie_header(carol, "alice", "evil")
    (folder / "loot.json").unlink(missing_ok=True)
    assert (
        session(ws_url(hub.app_origin("alice"), "/user/alice/evil/"), {"Cookie": cookie})[
            "finished"
        ]
        == 1
    )  # the script runs for carol
    loot = json.loads((folder / "loot.json").read_text())
    return {"loot": loot, "targets": targets, "carol": carol, "bob": bob}


def open_as(hub, s, owner, app):
    """Open an app as a browser would, saying yes on the hub's consent page."""
    r = s.get(hub.app_url(owner, app), timeout=30)
    if r.status_code == 200 and 'id="authorize-open-app"' in r.text:
        xsrf = re.search(r'name="_xsrf" value="([^"]*)"', r.text).group(1)
        scopes = re.findall(r'name="scopes" value="([^"]*)"', r.text)
        r = s.post(r.url, data={"_xsrf": xsrf, "scopes": scopes}, timeout=30)
    return r


def test_the_app_runs_as_an_account_of_its_own(world):
    assert world["loot"]["uid"] != 0


@pytest.mark.parametrize(
    "what", ["cookie secret", "hub database", "audit store", "bob's app", "bob's log", "hub log"]
)
def test_the_hubs_files_and_other_analysts_files_are_closed_to_the_app(world, what):
    got = world["loot"]["files"][what]
    assert got.startswith("refused:"), f"the app read the {what}: {got[:60]!r}"


@pytest.mark.parametrize("what", ["the data dir", "bob's home", "bob's logs"])
def test_the_hubs_folders_and_other_analysts_folders_cannot_be_listed(world, what):
    got = world["loot"]["listings"][what]
    assert isinstance(got, str) and got.startswith("refused:"), f"the app listed {what}: {got}"


def test_no_other_process_environment_is_readable(world, hub):
    """The proxy's auth token, the audit service's and the culler's hub tokens, and bob's app
    server's environment: none readable from alice's app."""
    environs = world["loot"]["environ"]
    leaked = {
        pid: env[:80]
        for pid, env in environs.items()
        if "CONFIGPROXY_AUTH_TOKEN" in env or "JUPYTERHUB_API_TOKEN" in env
    }
    assert leaked == {}
    assert str(hub.proxy_pid()) not in environs


def test_the_apps_own_token_is_not_in_its_environment(world):
    env = world["loot"]["self_environ"]
    assert "JUPYTERHUB_API_TOKEN=" not in env and "JPY_API_TOKEN=" not in env


def test_a_viewer_token_stolen_by_one_app_does_not_open_another(world, hub):
    """Cross-app replay: carol's token, issued to alice/evil's OAuth client, held in evil's
    memory, does not open bob/demo although bob shared it with carol's group."""
    stolen = world["loot"]["tokens"]
    assert stolen, "the hostile app found no viewer token to replay (test set-up)"
    for token in stolen:
        headers = {"Authorization": f"token {token}"}
        r = requests.get(
            hub.app_url("bob", "demo"), headers=headers, allow_redirects=False, timeout=10
        )
        assert r.status_code == 403, (r.status_code, r.text[:200])
        with pytest.raises(WebsocketRefused):
            session(ws_url(hub.app_origin("bob"), "/user/bob/demo/"), headers)
    # carol herself, through bob's own sign-in (the hub's authorize step), still gets in
    assert open_as(hub, world["carol"], "bob", "demo").status_code == 200


def test_every_admission_has_an_authorize_event_at_the_hub(world, hub):
    """Each session opened in bob's app follows a sign-in the hub recorded: the stolen
    tokens, tried on the websocket here, open no session the hub never saw."""
    import datetime as dt

    since = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for token in world["loot"]["tokens"]:
        try:
            session(
                ws_url(hub.app_origin("bob"), "/user/bob/demo/"),
                {"Authorization": f"token {token}"},
            )
        except WebsocketRefused:
            pass
    admin = hub.api(hub.token("admin"))

    def viewers(kind):
        r = admin.get(
            f"{hub.url}/services/audit/api/events",
            timeout=10,
            params={"type": kind, "owner": "bob", "app": "demo", "since": since},
        )
        return [e.get("viewer") for e in r.json()["events"]]

    time.sleep(3)  # app-side events reach the service within a second or two
    opened, authorized = viewers("session_start"), viewers("authorize")
    assert [v for v in opened if v not in authorized] == [], (opened, authorized)


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site", None])
def test_a_link_elsewhere_cannot_start_an_app(world, hub, fetch_site):
    """A top-level GET of /hub/spawn/<user>/<app> from another site (or from an app, whose
    host is a sibling of the hub's) shows a confirmation, never starts the app."""
    alice = hub.login("alice")
    hub.start_app(alice, "alice", "sleepy", {"path": "apps/demo/app.py"})
    hub.stop_app(alice, "alice", "sleepy")
    headers = {"Sec-Fetch-Site": fetch_site} if fetch_site else {}
    for url in (
        f"{hub.url}/hub/spawn/alice/sleepy",
        f"{hub.url}/hub/spawn/alice/sleepy?path=apps/demo/app.py",
    ):
        r = alice.get(url, headers=headers, timeout=30)
        # (with options in the query, the confirmation also says why, as a 400)
        assert r.status_code in (200, 400) and 'id="streamlit-restart"' in r.text, r.text[:300]
        time.sleep(0.5)
        server = (
            alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"].get("sleepy")
        )
        assert server is None or not (server["ready"] or server["pending"]), (url, server)
    # the confirmation's one button starts it (a POST with the hub's XSRF token, which this
    # session sends as X-XSRFToken)
    r = alice.post(f"{hub.url}/hub/spawn/alice/sleepy", data={"streamlit-restart": "1"}, timeout=60)
    assert r.status_code == 200, r.text[:300]
    hub.wait_ready(alice, "alice", "sleepy")
    hub.stop_app(alice, "alice", "sleepy")


def test_the_hub_signs_nobody_in_on_an_apps_host(hub):
    """The proxy sends unknown paths on alice's host to the hub; its login form must not be
    served there (a cookie set on alice's host is alice's JavaScript's to use)."""
    r = requests.get(f"{hub.app_origin('alice')}/hub/login", allow_redirects=False, timeout=10)
    assert r.status_code in (301, 302) and r.headers["location"].startswith(f"{hub.url}/hub/login")
    r = requests.post(
        f"{hub.app_origin('alice')}/hub/login",
        allow_redirects=False,
        timeout=10,
        data={"username": "carol", "password": hub.password},
    )
    assert "set-cookie" not in {
        k.lower() for k in r.headers
    } or "jupyterhub-hub-login" not in r.headers.get("set-cookie", "")
