"""Publishing on a real hub (#14): deploy a bundle with its own package, run it, roll back.

A real hub and proxy, real ``uv`` building the per-app environment from a local wheelhouse
(wheels written by ``tests/helpers/wheels.py``; no index is ever asked), real app servers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.bundles import tar_gz as bundle
from tests.helpers.hub import running_hub
from tests.helpers.streamlit_ws import session, ws_url
from tests.helpers.wheels import build_wheel

pytestmark = pytest.mark.integration

APP = """
import streamlit as st
import hubtestpkg
st.title("Sales {tag}")
st.write("package " + hubtestpkg.__version__)
"""


# alice (analysts) may publish uploads of up to 1 MiB; bob is in analysts too, but carol
# (no group) may not publish at all.
POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 2G}
groups:
  analysts: {profiles: [small], max_running_apps: 20, max_apps: 60, max_upload_size: 1M}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0, may_publish: false}
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    wheels = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(wheels, "hubtestpkg", "1.0")
    build_wheel(wheels, "hubtestpkg", "2.0")
    # examples/sales needs humanize: a stand-in, so that no index is ever asked
    build_wheel(
        wheels,
        "humanize",
        "4.9.0",
        source="def intword(n):\n    return f'{n / 1e6:.1f} million'\n\n\n"
        "def intcomma(n):\n    return f'{n:,}'\n",
    )
    wheels.chmod(0o755)
    with running_hub(
        tmp_path_factory.mktemp("publish"),
        env={"STREAMLIT_HUB_FIND_LINKS": str(wheels), "STREAMLIT_HUB_PACKAGE_OFFLINE": "true"},
        policy=POLICY,
    ) as h:
        yield h


@pytest.fixture(scope="module")
def alice(hub):
    return hub.api(hub.token("alice"))


def deploy(hub, api, app: str, body: bytes, *, stream=True, **query):
    url = f"{hub.url}/hub/api/streamlit/apps/alice/{app}/versions"
    headers = {"Content-Type": "application/gzip"}
    if stream:
        headers["Accept"] = "application/x-ndjson"
    r = api.post(url, data=body, headers=headers, params=query, timeout=180)
    if not stream:
        return r.status_code, r.json(), []
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert r.status_code == 200, r.text
    return lines[-1]["status"], lines[-1], lines[:-1]


def rendered(hub, api_session, app: str) -> str:
    result = session(
        ws_url(hub.app_origin("alice"), f"/user/alice/{app}/"),
        {"Authorization": api_session.headers["Authorization"]},
    )
    assert result["finished"] == 1
    return " ".join(result["texts"])


def test_deploy_builds_the_environment_and_the_app_runs_it(hub, alice):
    status, last, steps = deploy(
        hub,
        alice,
        "sales",
        bundle({"app.py": APP.format(tag="one"), "requirements.txt": "hubtestpkg==1.0\n"}),
        filename="sales.tar.gz",
    )
    assert status == 201, last
    version = last["version"]
    assert version["id"] == "v1" and version["active"] and version["environment"]
    assert version["source"] == {"kind": "upload", "filename": "sales.tar.gz"}
    messages = [s["message"] for s in steps]
    assert messages[0] == "Checking the bundle"
    assert any("environment" in m.lower() for m in messages), messages
    hub.start_app(alice, "alice", "sales")
    text = rendered(hub, alice, "sales")
    assert "Sales one" in text and "package 1.0" in text


def test_a_broken_deploy_changes_nothing_and_keeps_its_log(hub, alice):
    status, last, _ = deploy(
        hub,
        alice,
        "sales",
        bundle({"app.py": APP.format(tag="two"), "requirements.txt": "no-such-package-xyz\n"}),
    )
    assert status == 422, last
    assert "no-such-package-xyz" in last["message"]
    assert "still runs the version it ran before" in last["message"]
    listing = alice.get(f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions", timeout=10)
    assert listing.json()["active"] == "v1" and len(listing.json()["versions"]) == 1
    log = alice.get(f"{hub.url}/hub/api/streamlit/apps/alice/sales/build-log", timeout=10)
    assert log.status_code == 200 and "no-such-package-xyz" in log.text
    assert "Sales one" in rendered(hub, alice, "sales")


def test_a_new_version_restarts_the_running_app_and_rollback_goes_back(hub, alice):
    status, last, _ = deploy(
        hub,
        alice,
        "sales",
        bundle({"app.py": APP.format(tag="three"), "requirements.txt": "hubtestpkg==2.0\n"}),
        stream=False,
    )
    assert status == 201, last
    assert last["version"]["id"] == "v2" and last["restarted"] is True
    hub.wait_ready(alice, "alice", "sales")
    text = rendered(hub, alice, "sales")
    assert "Sales three" in text and "package 2.0" in text
    r = alice.put(f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions/v1/active", timeout=90)
    assert r.status_code == 200 and r.json()["restarted"] is True, r.text
    hub.wait_ready(alice, "alice", "sales")
    assert "package 1.0" in rendered(hub, alice, "sales")
    r = alice.delete(f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions/v1", timeout=10)
    assert r.status_code == 409 and "active version" in r.json()["message"]


def test_bad_bundles_are_refused_with_a_sentence(hub, alice):
    status, last, _ = deploy(hub, alice, "sales", b"not an archive", stream=False)
    assert status == 400 and last["message"]
    status, last, _ = deploy(hub, alice, "sales", bundle({"main.py": "print(1)"}), stream=False)
    assert status == 400 and "app.py" in last["message"]
    status, last, _ = deploy(
        hub,
        alice,
        "sales",
        bundle({"app.py": "x", "requirements.txt": "-e git+https://example.com/x.git\n"}),
        stream=False,
    )
    assert status == 400 and "Line 1 of requirements.txt" in last["message"], last
    versions = alice.get(f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions", timeout=10)
    assert [v["id"] for v in versions.json()["versions"]] == ["v1", "v2"]


def test_a_viewer_the_app_is_shared_with_may_neither_publish_nor_list_versions(hub, alice):
    r = alice.post(f"{hub.url}/hub/api/shares/alice/sales", json={"user": "carol"}, timeout=10)
    assert r.status_code == 200, r.text  # carol holds access:servers on alice/sales now
    carol = hub.api(hub.token("carol"))
    r = carol.post(
        f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions",
        data=bundle({"app.py": "x"}),
        timeout=30,
    )
    assert r.status_code == 404
    r = carol.get(f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions", timeout=10)
    assert r.status_code == 404, hub.log_tail(30)


# ---- the analysts' command line (streamlit-hub) ---------------------------------------------
REPO = Path(__file__).resolve().parents[2]


def cli(hub, token, *args, config=None, stdin=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_HUB_")}
    env["XDG_CONFIG_HOME"] = str(config) if config else env.get("XDG_CONFIG_HOME", "/nonexistent")
    if token:
        env.update(STREAMLIT_HUB_URL=hub.url, STREAMLIT_HUB_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "spawner.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def alice_token(hub):
    return hub.token("alice")


def test_login_keeps_the_token_private_and_never_prints_it(hub, alice_token, tmp_path):
    r = cli(
        hub, None, "login", "--url", hub.url, "--token-stdin", config=tmp_path, stdin=alice_token
    )
    assert r.returncode == 0, r.stderr
    assert "as alice" in r.stdout and alice_token not in r.stdout + r.stderr
    kept = tmp_path / "streamlit-hub" / "credentials.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    r = cli(hub, None, "versions", "--app", "sales", config=tmp_path)
    assert r.returncode == 0 and "v1" in r.stdout, r.stderr
    r = cli(hub, None, "login", "--url", hub.url, "--token-stdin", config=tmp_path, stdin="wrong")
    assert r.returncode == 1 and "refused the token" in r.stderr


def test_the_cli_deploys_the_example_app_leaving_out_what_is_ignored(
    hub, alice, alice_token, tmp_path
):
    folder = tmp_path / "sales"
    shutil.copytree(REPO / "examples" / "sales", folder)
    (folder / "scratch").mkdir()
    (folder / "scratch" / "notes.txt").write_text("not for the bundle")
    (folder / "old.csv.bak").write_text("a,b\n")
    r = cli(hub, alice_token, "deploy", str(folder), "--app", "shop")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Deployed v1 of shop" in r.stdout and "[ 15%] Bundle" in r.stdout
    assert "shop is at http://alice.localhost:" in r.stdout
    versions = alice.get(f"{hub.url}/hub/api/streamlit/apps/alice/shop/versions", timeout=10)
    assert versions.json()["versions"][0]["files"] == 4  # app, page, requirements, ignore file
    assert "Sales overview" in rendered(hub, alice, "shop")
    r = cli(hub, alice_token, "versions", "--app", "shop")
    assert r.returncode == 0 and "*    v1" in r.stdout and "upload sales.tar.gz" in r.stdout


def test_a_failed_build_exits_1_with_the_sentence_and_the_log(hub, alice_token, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "app.py").write_text("import streamlit as st\n")
    (folder / "requirements.txt").write_text("no-such-package-xyz==1.0\n")
    r = cli(hub, alice_token, "deploy", str(folder), "--app", "shop")
    assert r.returncode == 1
    assert "could not be built" in r.stderr and "no-such-package-xyz" in r.stderr
    assert "---- build log" in r.stdout
    r = cli(hub, alice_token, "logs", "--build", "--app", "shop")
    assert r.returncode == 0 and "no-such-package-xyz" in r.stdout
    r = cli(hub, alice_token, "rollback", "v9", "--app", "shop")
    assert r.returncode == 1 and "shop has no version v9" in r.stderr


def test_an_upload_over_the_groups_limit_is_refused_before_it_is_stored(hub, alice):
    big = bundle({"app.py": "x", "data.bin": os.urandom(1_200_000)})
    status, last, _ = deploy(hub, alice, "sales", big, stream=False)
    assert status == 413 and "the most your groups allow" in last["message"], last

    def chunks():  # no Content-Length: the body is cut off as it arrives
        yield big

    r = alice.post(
        f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions", data=chunks(), timeout=60
    )
    assert r.status_code == 413 and "the most your groups allow" in r.json()["message"]
    versions = alice.get(f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions", timeout=10)
    assert versions.status_code == 200  # the connection the refusal closed is not reused
    spool = hub.data_dir / "publish" / "bundles" / "tmp"
    assert not any(p.name.startswith("upload-") for p in spool.iterdir())


def test_a_user_whose_groups_may_not_publish_is_told_so(hub):
    carol = hub.api(hub.token("carol"))
    r = carol.post(
        f"{hub.url}/hub/api/streamlit/apps/carol/mine/versions",
        data=bundle({"app.py": "x"}),
        timeout=30,
    )
    assert r.status_code == 403 and "may not publish apps" in r.json()["message"]


def test_a_version_that_cannot_start_is_recorded_and_the_restart_says_why(hub, alice):
    model = alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()
    if not (model["servers"].get("sales") or {}).get("ready"):
        hub.start_app(alice, "alice", "sales")
    status, last, _ = deploy(
        hub, alice, "sales", bundle({"app.py": "import streamlit as st\nst.title(\n"}), stream=False
    )
    assert status == 201, last
    assert last["restarted"] is False
    assert "syntax" in last["restart_problem"].lower() or "line" in last["restart_problem"]
    r = alice.put(f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions/v1/active", timeout=90)
    assert r.status_code == 200, r.text


def test_deleting_the_app_deletes_its_versions(hub, alice):
    hub.stop_app(alice, "alice", "sales", remove=True)
    r = alice.get(f"{hub.url}/hub/api/streamlit/apps/alice/sales/versions", timeout=10)
    assert r.status_code == 200 and r.json()["versions"] == [] and r.json()["active"] is None
    assert not (hub.data_dir / "publish" / "runs" / "alice" / "sales").exists()
