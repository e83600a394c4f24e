"""Deploys from git on a real hub (#14 point 3): a repository served over smart HTTP on
127.0.0.1 by ``git http-backend`` (``tests/helpers/git_server.py``; never the internet), the
policy's ``sources.git_hosts`` allowing it, a real hub, proxy and app servers.

A branch deploys as a version that records the commit; the same commit again is "unchanged"
(no version); a pushed commit makes v2 and restarts the running app on it; a host the policy
does not allow is a 403. A private repository's token, the app's secret, reaches the git
server in a header only: it is in none of the hub's log, the app's log, the audit trail, the
API's answers, the version records, the build log or a URL the git server saw.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from tests.helpers.git_server import GitServer
from tests.helpers.hub import running_hub
from tests.helpers.streamlit_ws import session, ws_url

pytestmark = pytest.mark.integration

TOKEN = "glpat-" + secrets.token_urlsafe(24)
APP = """import streamlit as st
st.title("Sales {tag}")
"""
POLICY = """
profiles:
  small: {{display_name: "Small", cpu_limit: 1, mem_limit: 2G}}
groups:
  analysts: {{profiles: [small], max_running_apps: 20, max_apps: 60}}
defaults: {{profiles: [], max_running_apps: 0, max_apps: 0, may_publish: false}}
sources:
  git_hosts: ["{public}", "{private}"]
"""


@pytest.fixture(scope="module")
def git(tmp_path_factory):
    root = tmp_path_factory.mktemp("git")
    with GitServer(root / "public") as public, GitServer(root / "private", token=TOKEN) as private:
        yield public, private


@pytest.fixture(scope="module")
def hub(tmp_path_factory, git):
    public, private = git
    policy = POLICY.format(public=public.host, private=private.host)
    with running_hub(tmp_path_factory.mktemp("publish-git"), policy=policy) as h:
        h.answers = []  # every API answer's text, searched for the token at the end
        yield h


@pytest.fixture(scope="module")
def alice(hub):
    return hub.api(hub.token("alice"))


def from_git(hub, api, app: str, stream=True, **body):
    url = f"{hub.url}/hub/api/streamlit/apps/alice/{app}/versions/from-git"
    headers = {"Accept": "application/x-ndjson"} if stream else {}
    r = api.post(url, json=body, headers=headers, timeout=180)
    hub.answers.append(r.text)
    if not stream or not r.headers.get("Content-Type", "").startswith("application/x-ndjson"):
        return r.status_code, r.json(), []
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert r.status_code == 200, r.text
    return lines[-1]["status"], lines[-1], lines[:-1]


def versions(hub, api, app: str) -> dict:
    r = api.get(f"{hub.url}/hub/api/streamlit/apps/alice/{app}/versions", timeout=10)
    hub.answers.append(r.text)
    return r.json()


def rendered(hub, api, app: str) -> str:
    result = session(
        ws_url(hub.app_origin("alice"), f"/user/alice/{app}/"),
        {"Authorization": api.headers["Authorization"]},
    )
    assert result["finished"] == 1
    return " ".join(result["texts"])


def audit_events(hub, **filters) -> list[dict]:
    admin = hub.api(hub.token("admin"))
    r = admin.get(
        hub.url + "/services/audit/api/events", params={**filters, "limit": 1000}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()["events"]


def wait_for_event(hub, kind, match) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [e for e in audit_events(hub, type=kind) if match(e)]
        if found:
            return found[-1]
        time.sleep(0.3)
    raise AssertionError(f"no {kind} event")


def test_a_branch_deploys_as_a_version_that_records_its_commit(hub, alice, git):
    public, _ = git
    sha = public.commit("sales", {"app.py": APP.format(tag="one")})
    status, last, steps = from_git(hub, alice, "sales", repo=public.url("sales"), ref="main")
    assert status == 201, last
    version = last["version"]
    assert version["id"] == "v1" and version["active"]
    assert version["source"] == {
        "kind": "git",
        "repo": public.url("sales"),
        "ref": "main",
        "commit": sha,
    }
    messages = [s["message"] for s in steps]
    assert messages[0] == f"Resolving main in {public.url('sales')}"
    assert (
        f"Fetching {sha[:12]} (refs/heads/main)" in messages and "Checking the bundle" in messages
    )
    hub.start_app(alice, "alice", "sales")
    assert "Sales one" in rendered(hub, alice, "sales")
    event = wait_for_event(hub, "app_deploy", lambda e: e.get("app") == "sales")
    assert event["outcome"] == "deployed" and event["version"] == "v1"
    assert event["extra"]["source"] == "git" and event["extra"]["commit"] == sha
    assert event["extra"]["repo"] == public.url("sales")


def test_the_same_commit_again_is_unchanged_and_makes_no_version(hub, alice, git):
    public, _ = git
    status, body, _ = from_git(hub, alice, "sales", stream=False, repo=public.url("sales"))
    assert status == 200 and body["unchanged"] is True, body
    assert body["version"]["id"] == "v1" and body["version"]["active"]
    assert [v["id"] for v in versions(hub, alice, "sales")["versions"]] == ["v1"]


def test_a_pushed_commit_makes_v2_and_restarts_the_running_app(hub, alice, git):
    public, _ = git
    first = versions(hub, alice, "sales")["versions"][0]["source"]["commit"]
    public.tag("sales", "release-1", at=first)
    sha = public.commit("sales", {"app.py": APP.format(tag="two")})
    status, last, _ = from_git(hub, alice, "sales", stream=False, repo=public.url("sales"))
    assert status == 201, last
    assert last["version"]["id"] == "v2" and last["version"]["source"]["commit"] == sha
    assert last["version"]["source"]["ref"] == "HEAD" and last["restarted"] is True
    hub.wait_ready(alice, "alice", "sales")
    assert "Sales two" in rendered(hub, alice, "sales")
    # a tag, or a commit, deploys what it names: here the first commit again, as v3
    status, last, _ = from_git(
        hub, alice, "sales", stream=False, repo=public.url("sales"), ref="release-1"
    )
    assert status == 201 and last["version"]["source"]["commit"] == first, last
    status, last, _ = from_git(
        hub, alice, "sales", stream=False, repo=public.url("sales"), ref=first
    )
    assert status == 200 and last["unchanged"] and last["version"]["id"] == "v3"


def test_refusals_are_sentences_and_change_nothing(hub, alice, git):
    public, _ = git
    before = versions(hub, alice, "sales")
    for body, status, words in [
        ({"repo": "https://github.com/example/sales.git"}, 403, f"git hosts {public.host}"),
        ({"repo": "http://127.0.0.1:1/sales.git"}, 403, "Ask an admin"),
        (
            {"repo": public.url("sales").replace("://", "://alice:pw@")},
            400,
            "never put a token in a URL",
        ),
        ({"repo": "ssh://git@github.com/a/b.git"}, 400, "https://"),
        ({"repo": public.url("sales"), "ref": "--upload-pack=id"}, 400, "not a branch"),
        ({"repo": public.url("sales"), "ref": "nope"}, 422, "has no branch or tag nope"),
        ({"repo": public.url("missing")}, 422, "There is no repository"),
        ({"repo": public.url("sales"), "extra": 1}, 400, "Unknown field extra"),
        ({"repo": public.url("sales"), "token_secret": "GIT_TOKEN"}, 400, "has no secret"),
    ]:
        got, answer, _ = from_git(hub, alice, "sales", stream=False, **body)
        assert got == status and words in answer["message"], (body, answer)
    assert versions(hub, alice, "sales") == before
    carol = hub.api(hub.token("carol"))
    r = carol.post(
        f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions/from-git",
        json={"repo": public.url("sales")},
        timeout=30,
    )
    assert r.status_code == 404


def test_a_private_repository_with_the_apps_token_secret_never_shows_the_token(hub, alice, git):
    public, private = git
    private.commit("vault", {"app.py": APP.format(tag="private")})
    public.commit("vault", {"app.py": APP.format(tag="public")})
    status, last, _ = from_git(hub, alice, "vault", stream=False, repo=public.url("vault"))
    assert status == 201, last
    hub.start_app(alice, "alice", "vault")  # the app exists: it may have secrets
    status, last, _ = from_git(hub, alice, "vault", stream=False, repo=private.url("vault"))
    assert status == 422 and "token_secret" in last["message"], last
    secret = f"{hub.url}/hub/api/streamlit/apps/alice/vault/secrets/GIT_TOKEN"
    r = alice.put(secret, json={"value": "not-the-token"}, timeout=10)
    assert r.status_code == 200, r.text
    status, last, _ = from_git(
        hub, alice, "vault", repo=private.url("vault"), token_secret="GIT_TOKEN"
    )
    assert status == 422 and "refused the token" in last["message"], last
    assert alice.put(secret, json={"value": TOKEN}, timeout=10).status_code == 200
    status, last, _ = from_git(
        hub, alice, "vault", repo=private.url("vault"), ref="main", token_secret="GIT_TOKEN"
    )
    assert status == 201 and last["version"]["id"] == "v2" and last["restarted"], last
    assert last["version"]["source"]["repo"] == private.url("vault")
    hub.wait_ready(alice, "alice", "vault")
    assert "Sales private" in rendered(hub, alice, "vault")
    status, last, _ = from_git(
        hub, alice, "vault", stream=False, repo=private.url("vault"), token_secret="GIT_TOKEN"
    )
    assert status == 200 and last["unchanged"], last
    r = alice.get(f"{hub.url}/hub/api/streamlit/apps/alice/vault/build-log", timeout=10)
    hub.answers.append(r.text)
    wait_for_event(hub, "app_deploy", lambda e: e.get("app") == "vault" and e.get("version"))

    # the git server got it in a header, never in a URL
    sent = [r["headers"].get("Authorization", "") for r in private.seen]
    assert any(h.startswith("Basic ") for h in sent)
    assert all(TOKEN not in r["path"] + r["query"] for r in private.seen)
    places = {
        "hub log": hub.log_path.read_bytes(),
        "app log": (hub.data_dir / "logs" / "alice" / "vault.log").read_bytes(),
        "audit trail": json.dumps(audit_events(hub)).encode(),
        "API answers": "\n".join(hub.answers).encode(),
        "version records and build logs": b"".join(
            p.read_bytes()
            for p in (hub.data_dir / "publish" / "apps").rglob("*")
            if p.is_file() and not p.name.startswith(".lock")
        ),
    }
    import base64

    forms = [TOKEN.encode(), base64.b64encode(f"x-access-token:{TOKEN}".encode())]
    for form in forms:
        assert [where for where, text in places.items() if form in text] == []
    staging = hub.data_dir / "publish" / "bundles" / "tmp"
    assert [p.name for p in staging.iterdir() if p.name.startswith("git-")] == []


def cli(hub, token, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_HUB_")}
    env.update(STREAMLIT_HUB_URL=hub.url, STREAMLIT_HUB_TOKEN=token, XDG_CONFIG_HOME="/nonexistent")
    return subprocess.run(
        [sys.executable, "-m", "spawner.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_cli_deploys_from_git_and_redeploys_only_a_new_commit(hub, git):
    public, _ = git
    sha = public.commit("shop", {"app.py": APP.format(tag="shop")})
    token = hub.token("alice")
    url = public.url("shop")
    r = cli(hub, token, "deploy", "--git", url, "--ref", "main", "--app", "shop", "--no-start")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Deployed v1 of shop" in r.stdout and f"commit {sha[:12]}" in r.stdout
    r = cli(hub, token, "deploy", "--git", url, "--app", "shop", "--no-start")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"shop already runs {sha[:12]} (v1): nothing to deploy." in r.stdout
    r = cli(hub, token, "versions", "--app", "shop")
    assert f"git {url} main@{sha[:12]}" in r.stdout, r.stdout
    r = cli(hub, token, "deploy", "--git", "https://github.com/a/b.git", "--app", "shop")
    assert r.returncode == 1 and "may not be deployed from github.com" in r.stderr
    r = cli(hub, token, "deploy", "somewhere", "--git", url, "--app", "shop")
    assert r.returncode == 1 and "not both" in r.stderr
