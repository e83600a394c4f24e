"""App secrets through a real hub, proxy, audit service and Streamlit app servers (local mode;
#16 point 5).

alice sets a secret on her app through the hub API; the running app does not see it until she
restarts it (the listing says so), then finds it in ``os.environ``. The app only says whether
the variable equals what was set (it holds a hash), never the value; neither the hub's log,
the app's log, the audit trail, the API's answers, the store on disk, nor the app process's
environment and command line hold it. Viewers and other analysts cannot list or set; admins
can. Deleting the app deletes its secrets. The home page has the section.

tests/security/test_app_secrets.py attacks it from other apps.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers.hub import running_hub
from tests.helpers.procs import processes_mentioning
from tests.helpers.streamlit_ws import session, ws_url

pytestmark = pytest.mark.integration

VALUE = "pw-" + secrets.token_hex(12) + " with spaces, é and = signs"
VAULT = textwrap.dedent(
    """
    import hashlib, os
    import streamlit as st
    got = os.environ.get("DB_PASSWORD")
    if got is None:
        verdict = "secret missing"
    elif hashlib.sha256(got.encode()).hexdigest() == "{digest}":
        verdict = "secret matches"
    else:
        verdict = "secret differs"
    print("vault:", verdict, flush=True)
    st.write(verdict)
    """
).replace("{digest}", hashlib.sha256(VALUE.encode()).hexdigest())


VERDICTS = ("secret missing", "secret matches", "secret differs")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(
        tmp_path_factory.mktemp("secrets"), extra_config="c.Spawner.poll_interval = 1\n"
    ) as h:
        h.add_app("alice", "vault", VAULT)
        h.admin_token = h.token("admin")
        yield h


def url(hub, app="vault", name=None, owner="alice"):
    base = f"{hub.url}/hub/api/streamlit/apps/{owner}/{app}/secrets"
    return f"{base}/{name}" if name else base


def verdict(hub, s, owner="alice", app="vault") -> str:
    hub.open_app(s, owner, app)
    out = session(
        ws_url(hub.app_origin(owner), f"/user/{owner}/{app}/"),
        {"Cookie": hub.app_cookie_header(s, owner, app)},
    )
    found = [v for t in out["texts"] for v in VERDICTS if f'"{v}"' in t]
    assert found, out
    return found[-1]


def restart(hub, s, owner="alice", app="vault"):
    hub.stop_app(s, owner, app)
    hub.start_app(s, owner, app, {"path": f"apps/{app}/app.py"})


def audit_events(hub, **filters) -> list[dict]:
    r = hub.api(hub.admin_token).get(
        hub.url + "/services/audit/api/events", params={**filters, "limit": 1000}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()["events"]


def wait_for_event(hub, kind, match=lambda e: True, **filters) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [e for e in audit_events(hub, type=kind, **filters) if match(e)]
        if found:
            return found[-1]
        time.sleep(0.3)
    raise AssertionError(f"no {kind} event for {filters}")


def app_pids(hub, app) -> list[int]:
    return processes_mentioning(f"apps/{app}/app.py")


def nowhere_but_the_app(hub, app="vault"):
    """The value is in none of the places it must never be."""
    places = {
        "hub log": hub.log_path.read_bytes(),
        "app log": (hub.data_dir / "logs" / "alice" / f"{app}.log").read_bytes(),
        "audit trail": json.dumps(audit_events(hub)).encode(),
        "the store on disk": b"".join(
            p.read_bytes() for p in (hub.data_dir / "app-secrets").rglob("*") if p.is_file()
        ),
    }
    for pid in app_pids(hub, app):
        for part in ("environ", "cmdline"):
            places[f"/proc/{pid}/{part}"] = Path(f"/proc/{pid}/{part}").read_bytes()
    for forms in (VALUE.encode(), json.dumps(VALUE).encode()[1:-1], VALUE.split(",")[0].encode()):
        assert [where for where, text in places.items() if forms in text] == []


def test_an_owner_sets_a_secret_and_the_app_sees_it_after_a_restart(hub):
    alice = hub.login("alice")
    hub.start_app(alice, "alice", "vault", {"path": "apps/vault/app.py"})
    r = alice.get(url(hub), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "app": "vault",
        "owner": "alice",
        "secrets": [],
        "running": True,
        "restart_needed": False,
        "note": "An app gets its secrets when it starts: restart it to apply a change.",
    }
    assert r.headers["Cache-Control"] == "no-store"

    r = alice.put(url(hub, name="DB_PASSWORD"), json={"value": VALUE}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["restart_needed"] is True and r.json()["set_by"] == "alice"
    assert VALUE not in r.text
    listed = alice.get(url(hub), timeout=10)
    assert [(s["name"], s["set_by"]) for s in listed.json()["secrets"]] == [
        ("DB_PASSWORD", "alice")
    ]
    assert listed.json()["restart_needed"] is True and VALUE not in listed.text

    # the running app keeps its environment until it restarts
    assert verdict(hub, alice) == "secret missing"
    restart(hub, alice)
    assert verdict(hub, alice) == "secret matches"
    assert alice.get(url(hub), timeout=10).json()["restart_needed"] is False
    assert b"vault: secret matches" in (hub.data_dir / "logs/alice/vault.log").read_bytes()

    event = wait_for_event(hub, "app_secret_set", owner="alice", app="vault")
    assert (event["actor"], event["reason"], event["extra"]) == (
        "alice",
        "user",
        {"secret": "DB_PASSWORD"},
    )
    nowhere_but_the_app(hub)

    # deleted: gone from the listing, recorded, and gone from the app at its next start
    r = alice.delete(url(hub, name="DB_PASSWORD"), timeout=10)
    assert r.status_code == 204, r.text
    listed = alice.get(url(hub), timeout=10).json()
    assert listed["secrets"] == [] and listed["restart_needed"] is True
    event = wait_for_event(hub, "app_secret_deleted", owner="alice", app="vault")
    assert (event["actor"], event["extra"]) == ("alice", {"secret": "DB_PASSWORD"})
    assert alice.delete(url(hub, name="DB_PASSWORD"), timeout=10).status_code == 404
    restart(hub, alice)
    assert verdict(hub, alice) == "secret missing"
    nowhere_but_the_app(hub)


def test_viewers_and_other_analysts_cannot_list_or_set_admins_can(hub):
    alice, carol, bob = (hub.login(u) for u in ("alice", "carol", "bob"))
    r = alice.post(f"{hub.url}/hub/api/shares/alice/vault", json={"user": "carol"}, timeout=10)
    assert r.status_code == 200, r.text
    alice.put(url(hub, name="API_KEY"), json={"value": VALUE}, timeout=10).raise_for_status()
    for who in (carol, hub.api(hub.token("carol"))):
        for method, target, body in (
            ("GET", url(hub), None),
            ("PUT", url(hub, name="API_KEY"), {"value": "carols"}),
            ("PUT", url(hub, name="NEW"), {"value": "carols"}),
            ("DELETE", url(hub, name="API_KEY"), None),
        ):
            r = who.request(method, target, json=body, timeout=10)
            assert r.status_code == 403, (method, target, r.status_code, r.text)
            assert r.json()["message"] == "Only the app's owner and admins manage its secrets."
    for who in (bob, hub.api(hub.token("bob"))):
        r = who.get(url(hub), timeout=10)
        assert r.status_code == 404 and r.json()["message"] == "No such app, or it is not yours."
        assert who.put(url(hub, name="X"), json={"value": "b"}, timeout=10).status_code == 404
    import requests

    assert requests.get(url(hub), timeout=10).status_code in (403, 404)  # nobody signed in
    listed = alice.get(url(hub), timeout=10).json()["secrets"]
    assert [(s["name"], s["set_by"]) for s in listed] == [("API_KEY", "alice")]

    admin = hub.api(hub.admin_token)
    r = admin.put(url(hub, name="ADMIN_SET"), json={"value": "a"}, timeout=10)
    assert r.status_code == 200 and r.json()["set_by"] == "admin"
    assert {s["name"] for s in admin.get(url(hub), timeout=10).json()["secrets"]} == {
        "API_KEY",
        "ADMIN_SET",
    }
    event = wait_for_event(
        hub, "app_secret_set", lambda e: e["actor"] == "admin", owner="alice", app="vault"
    )
    assert event["reason"] == "admin" and event["extra"] == {"secret": "ADMIN_SET"}
    assert admin.delete(url(hub, name="ADMIN_SET"), timeout=10).status_code == 204
    alice.delete(url(hub, name="API_KEY"), timeout=10).raise_for_status()


@pytest.mark.parametrize(
    "name, body, words",
    [
        ("PATH", {"value": "x"}, "PATH is reserved"),
        ("JUPYTERHUB_API_TOKEN", {"value": "x"}, "is reserved"),
        ("STREAMLIT_SERVER_PORT", {"value": "x"}, "is reserved"),
        ("1PASSWORD", {"value": "x"}, "not an environment variable name"),
        ("OK", {"value": ""}, "needs a value"),
        ("OK", {"value": 5}, "must be text"),
        ("OK", {"value": "x" * 20000}, "at most 16384 bytes"),
        ("OK", {"value": "x", "extra": 1}, "one key"),
        ("OK", None, "one key"),
    ],
)
def test_refusals_are_sentences_that_never_hold_the_value(hub, name, body, words):
    alice = hub.login("alice")
    r = alice.put(url(hub, name=name), json=body, timeout=10)
    assert r.status_code == 400, r.text
    assert words in r.json()["message"]
    if body and isinstance(body.get("value"), str) and body["value"]:
        assert body["value"][:8] not in r.json()["message"]
    assert name not in {s["name"] for s in alice.get(url(hub), timeout=10).json()["secrets"]}


def test_deleting_the_app_deletes_its_secrets(hub):
    alice = hub.login("alice")
    hub.add_app("alice", "gone", "import streamlit as st\nst.write('x')\n")
    r = alice.put(f"{hub.url}/hub/api/users/alice/servers/gone", json={}, timeout=30)
    assert r.status_code in (200, 201), r.text  # the app, created without starting it
    assert alice.put(url(hub, "gone", "TOKEN"), json={"value": VALUE}, timeout=10).ok
    stored = hub.data_dir / "app-secrets" / "alice" / "gone.json"
    assert stored.is_file()
    hub.stop_app(alice, "alice", "gone", remove=True)
    assert not stored.exists()
    alice.put(f"{hub.url}/hub/api/users/alice/servers/gone", json={}, timeout=30)
    assert alice.get(url(hub, "gone"), timeout=10).json()["secrets"] == []


def test_the_home_page_has_a_secrets_section_per_app(hub):
    alice = hub.login("alice")
    page = alice.get(f"{hub.url}/hub/home", timeout=10).text
    assert 'id="app-secrets"' in page and 'id="secrets-vault"' in page
    assert "Restart the app to apply a change" in page
    assert 'type="password"' in page
    carol_page = hub.login("carol").get(f"{hub.url}/hub/home", timeout=10).text
    assert 'id="app-secrets"' not in carol_page  # a viewer has no apps of her own


def test_the_command_line_lists_sets_and_deletes_without_showing_a_value(hub):
    import os

    alice = hub.login("alice")
    alice.put(f"{hub.url}/hub/api/users/alice/servers/vault", json={}, timeout=30)
    import subprocess
    import sys

    from tests.helpers.hub import REPO

    env = {
        **os.environ,
        "STREAMLIT_HUB_URL": hub.url,
        "STREAMLIT_HUB_TOKEN": hub.token("alice"),
        "XDG_CONFIG_HOME": str(hub.workdir / "no-config"),
    }

    def cli(*args, stdin=""):
        out = subprocess.run(
            [sys.executable, "-m", "spawner.cli", "secrets", *args, "--app", "vault"],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=60,
        )
        assert VALUE not in out.stdout + out.stderr
        return out

    out = cli("set", "CLI_TOKEN", "--stdin", stdin=VALUE + "\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("CLI_TOKEN is set.")
    assert hub.data_dir.joinpath("app-secrets/alice/vault.json").is_file()
    out = cli("list")
    assert out.returncode == 0 and "CLI_TOKEN" in out.stdout and "by alice" in out.stdout
    listed = hub.login("alice").get(url(hub), timeout=10).json()["secrets"]
    assert [s["name"] for s in listed] == ["CLI_TOKEN"]
    out = cli("set", "PATH", "--stdin", stdin="x")
    assert out.returncode == 1 and "PATH is reserved" in out.stderr
    out = cli("set", "NO_TTY")  # no --stdin and no terminal: refused, nothing read
    assert out.returncode == 1 and "--stdin" in out.stderr
    out = cli("delete", "CLI_TOKEN")
    assert out.returncode == 0 and out.stdout.startswith("CLI_TOKEN is deleted.")
    assert cli("list").stdout.strip().startswith("vault has no secrets.")
