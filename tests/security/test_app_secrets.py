"""Hostile apps against another app's secrets (local mode, per-analyst accounts; #16 pt 5).

alice's app ``vault`` runs with a secret. Two hostile apps try to get it: ``spy``, alice's
other app (the same Unix account as ``vault``), and ``snoop``, bob's. Each one's code, on its
first run: reads the hub's store and key, lists the store's folder, reads the victim
process's environment and command line, scans its memory for the value (``/proc/<pid>/mem``),
looks in its own environment, and asks the hub's secrets API for ``vault``'s secrets with
every token it holds (its app server's own, and the viewers' it keeps in memory). It writes
what it got into its own folder. Each test shows one way refused.

Per-analyst Unix accounts need the hub to run as root; as another user these are skipped.
"""

from __future__ import annotations

import json
import os
import secrets

import pytest

from tests.helpers.hub import running_hub
from tests.helpers.procs import processes_mentioning
from tests.helpers.streamlit_ws import session, ws_url

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="per-analyst app accounts need root")

NEEDLE = "needle-" + secrets.token_hex(16)

HOSTILE = r"""
import gc, json, os, pathlib, urllib.request
import streamlit as st
from spawner.app_server.settings import Settings

plan = json.loads(pathlib.Path("plan.json").read_text())
needle = plan["needle"].encode()
loot = {"files": {}, "listings": {}, "proc": {}, "api": {}, "uid": os.getuid()}
for name, path in plan["files"].items():
    try:
        loot["files"][name] = "read " + str(len(pathlib.Path(path).read_bytes())) + " bytes"
    except OSError as e:
        loot["files"][name] = f"refused: {e.__class__.__name__}"
for name, path in plan["folders"].items():
    try:
        loot["listings"][name] = sorted(os.listdir(path))
    except OSError as e:
        loot["listings"][name] = f"refused: {e.__class__.__name__}"
pid = plan["victim_pid"]
for part in ("environ", "cmdline"):
    try:
        data = pathlib.Path(f"/proc/{pid}/{part}").read_bytes()
        loot["proc"][part] = "found" if needle in data else "not found"
    except OSError as e:
        loot["proc"][part] = f"refused: {e.__class__.__name__}"

def scan():
    try:
        maps = pathlib.Path(f"/proc/{pid}/maps").read_text()
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
    except OSError as e:
        return f"refused: {e.__class__.__name__}"
    with mem:
        for line in maps.splitlines():
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if "r" not in perms or end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return "found"
            except (OSError, ValueError, OverflowError):
                continue
    return "not found"

loot["proc"]["mem"] = scan()
loot["own_environ"] = [k for k, v in os.environ.items() if k == "DB_PASSWORD" or plan["needle"] in v]
settings = next(o for o in gc.get_objects() if isinstance(o, Settings))
loot["own_app_secrets"] = sorted(settings.app_secrets)
tokens = {"app server": settings.api_token}
for obj in gc.get_objects():
    if type(obj).__name__ == "HubAuthMiddleware":
        for i, entry in enumerate(obj._logins.values()):
            tokens[f"viewer {i}"] = entry[0]
loot["tokens"] = sorted(tokens)
api = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + "/streamlit/apps/alice/vault/secrets"
for who, token in tokens.items():
    for method, url, body in (
        ("GET", api, None),
        ("PUT", api + "/DB_PASSWORD", b'{"value": "replaced"}'),
        ("PUT", api + "/PLANTED", b'{"value": "planted"}'),
        ("DELETE", api + "/DB_PASSWORD", None),
    ):
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Authorization", f"token {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                loot["api"][f"{who} {method} {url.rsplit('/', 1)[-1]}"] = [r.status, r.read().decode()]
        except urllib.error.HTTPError as e:
            loot["api"][f"{who} {method} {url.rsplit('/', 1)[-1]}"] = [e.code, ""]
pathlib.Path("loot.json").write_text(json.dumps(loot))
st.write("harmless")
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("secrets-attack")) as h:
        yield h


def run_as_owner(hub, s, owner, app):
    """Open the app as its owner and run its script once (a session over the websocket)."""
    hub.open_app(s, owner, app)
    out = session(
        ws_url(hub.app_origin(owner), f"/user/{owner}/{app}/"),
        {"Cookie": hub.app_cookie_header(s, owner, app)},
    )
    assert out["finished"] == 1, out


@pytest.fixture(scope="module")
def loot(hub):
    alice, bob = hub.login("alice"), hub.login("bob")
    hub.add_app("alice", "vault", "import streamlit as st\nst.write('vault')\n")
    r = alice.put(f"{hub.url}/hub/api/users/alice/servers/vault", json={}, timeout=30)
    assert r.status_code in (200, 201), r.text
    r = alice.put(
        f"{hub.url}/hub/api/streamlit/apps/alice/vault/secrets/DB_PASSWORD",
        json={"value": NEEDLE},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    hub.start_app(alice, "alice", "vault", {"path": "apps/vault/app.py"})
    (victim,) = processes_mentioning("apps/vault/app.py")
    data = hub.data_dir
    store = data / "app-secrets"
    plan = {
        "needle": NEEDLE,
        "victim_pid": victim,
        "files": {
            "the store": str(store / "alice" / "vault.json"),
            "the hub's key": str(store / "hub.key"),
        },
        "folders": {"the store": str(store), "alice's secrets": str(store / "alice")},
    }
    out = {}
    for owner, session_, app in (("alice", alice, "spy"), ("bob", bob, "snoop")):
        folder = hub.add_app(owner, app, "import streamlit as st\nst.write('warming up')\n")
        hub.start_app(session_, owner, app, {"path": f"apps/{app}/app.py"})
        (folder / "plan.json").write_text(json.dumps(plan))
        (folder / "app.py").write_text(HOSTILE)
        hub.hand_over(owner, folder)
        run_as_owner(hub, session_, owner, app)
        out[app] = json.loads((folder / "loot.json").read_text())
    listed = alice.get(f"{hub.url}/hub/api/streamlit/apps/alice/vault/secrets", timeout=10)
    out["victim's secrets after"] = listed.json()["secrets"]
    out["victim's set_at"] = r.json()["set_at"]
    return out


HOSTILE_APPS = ["spy", "snoop"]


@pytest.mark.parametrize("app", HOSTILE_APPS)
def test_the_hubs_store_and_key_are_closed_to_apps(loot, app):
    assert loot[app]["uid"] != 0
    for what, got in loot[app]["files"].items():
        assert got.startswith("refused:"), f"{app} read {what}: {got}"
    for what, got in loot[app]["listings"].items():
        assert isinstance(got, str) and got.startswith("refused:"), f"{app} listed {what}: {got}"


@pytest.mark.parametrize("app", HOSTILE_APPS)
def test_the_victims_memory_environment_and_command_line_do_not_give_it(loot, app):
    got = loot[app]["proc"]
    assert got["mem"] != "found" and got["environ"] != "found" and got["cmdline"] != "found", got


def test_the_same_analysts_other_app_cannot_even_read_the_victims_memory(loot):
    """Same Unix account as the victim, so only the app server making itself non-dumpable
    keeps /proc/<pid>/mem (and environ, fd, pidfd_getfd) closed."""
    assert loot["spy"]["proc"]["mem"].startswith("refused:"), loot["spy"]["proc"]
    assert loot["spy"]["proc"]["environ"].startswith("refused:"), loot["spy"]["proc"]


@pytest.mark.parametrize("app", HOSTILE_APPS)
def test_an_app_gets_only_its_own_secrets(loot, app):
    assert loot[app]["own_environ"] == [] and loot[app]["own_app_secrets"] == []


@pytest.mark.parametrize("app", HOSTILE_APPS)
def test_no_token_an_app_holds_reads_or_changes_another_apps_secrets(loot, app):
    api = loot[app]["api"]
    assert any(k.startswith("viewer") for k in api), "the app held no viewer token (set-up)"
    assert any(k.startswith("app server") for k in api)
    let_through = {k: v for k, v in api.items() if v[0] < 400}
    assert let_through == {}
    assert {v[0] for v in api.values()} == {404}  # it does not even learn the app exists


def test_the_victims_secrets_are_unchanged(loot):
    after = loot["victim's secrets after"]
    assert [(s["name"], s["set_by"], s["set_at"]) for s in after] == [
        ("DB_PASSWORD", "alice", loot["victim's set_at"])
    ]
