"""Publishing on Kubernetes, against the Kubernetes API test double (not a cluster).

alice deploys a bundle with a requirements.txt to a hub in kubernetes mode; the hub records
the version without building anything (a pod has no share with the hub's disk). Her app pod
then fetches the bundle from the hub with its own server token, verifies its digest,
extracts it into its scratch volume, builds the environment with uv into a cache on her home
volume (from a local wheelhouse: no index is asked), and serves the app on it. A viewer may
not fetch the bundle; a bundle changed at rest never runs. The double's kubelet runs the pod's
command as a local process, so this is the app server's real code path, not a cluster's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.helpers.bundles import tar_gz as bundle
from tests.helpers.kube_hub import k8s, kube_hub
from tests.helpers.streamlit_ws import session, ws_url
from tests.helpers.wheels import build_wheel

pytestmark = pytest.mark.integration

POLICY = """
profiles:
  small: {display_name: "Small", cpu_guarantee: 0.1, cpu_limit: 1, mem_guarantee: 256M, mem_limit: 1G}
groups:
  analysts: {profiles: [small], max_running_apps: 2, max_apps: 5, may_share: true}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""

APP = """
import streamlit as st
import podpkg
st.title("Pod app")
st.write("podpkg " + podpkg.__version__)
"""


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_a_published_version_runs_in_its_pod_fetched_verified_and_built(tmp_path, double, request):
    # not under /tmp: the double maps every /tmp path in a pod's env to the pod's scratch volume
    wheels = Path(tempfile.mkdtemp(prefix="sthub-wheels-", dir="/var/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(wheels, ignore_errors=True))
    build_wheel(wheels, "podpkg", "3.1")
    hub = kube_hub(
        tmp_path / "h",
        double,
        POLICY,
        {"STREAMLIT_HUB_FIND_LINKS": str(wheels), "STREAMLIT_HUB_PACKAGE_OFFLINE": "true"},
    )
    hub.start()
    try:
        alice = hub.api(hub.token("alice"))
        r = alice.post(
            f"{hub.url}/hub/api/streamlit/apps/alice/pod/versions",
            data=bundle({"app.py": APP, "requirements.txt": "podpkg==3.1\n"}),
            timeout=120,
        )
        assert r.status_code == 201, r.text
        version = r.json()["version"]
        assert version["id"] == "v1" and version["environment"] is None  # the pod builds it
        r = alice.post(
            f"{hub.url}/hub/api/users/alice/servers/pod", json={"profile": "small"}, timeout=120
        )
        assert r.status_code in (201, 202), r.text
        hub.wait_ready(alice, "alice", "pod", timeout=120)
        (pod,) = k8s(double, "/api/v1/namespaces/default/pods")["items"]
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["STREAMLIT_HUB_BUNDLE_DIGEST"]["value"] == version["digest"]
        assert env["STREAMLIT_HUB_APP_VERSION"]["value"] == "v1"
        assert env["STREAMLIT_HUB_ENTRY"]["value"] == "/tmp/streamlit-hub-bundle/app.py"
        out = session(
            ws_url(hub.app_origin("alice"), "/user/alice/pod/"),
            {"Authorization": alice.headers["Authorization"]},
        )
        text = " ".join(out["texts"])
        assert "Pod app" in text and "podpkg 3.1" in text
        # the environment is cached on her home volume, for the next start
        home = double["workdir"] / "pvc" / "home-alice"
        assert list((home / ".cache" / "streamlit-hub" / "environments" / "envs").iterdir())

        # a viewer of the app (shared with her: access:servers on it) may open it but not
        # download its code
        r = alice.post(f"{hub.url}/hub/api/shares/alice/pod", json={"user": "carol"}, timeout=10)
        assert r.status_code == 200, r.text
        carol = hub.api(hub.token("carol"))
        url = f"{hub.url}/hub/api/streamlit/apps/alice/pod/bundles/{version['digest']}"
        assert carol.get(url, timeout=10).status_code == 404
        got = alice.get(url, timeout=10)
        assert got.status_code == 200 and got.headers["ETag"] == f'"{version["digest"]}"'
        assert requests.get(url, timeout=10).status_code in (403, 404)
    finally:
        left = hub.stop()
    assert left == []


def test_a_bundle_changed_at_rest_never_runs(tmp_path, double):
    hub = kube_hub(tmp_path / "h", double, POLICY)
    hub.start()
    try:
        alice = hub.api(hub.token("alice"))
        r = alice.post(
            f"{hub.url}/hub/api/streamlit/apps/alice/pod/versions",
            data=bundle({"app.py": "import streamlit as st\nst.title('fine')\n"}),
            timeout=120,
        )
        assert r.status_code == 201, r.text
        digest = r.json()["version"]["digest"]
        # someone with the hub's disk swaps the stored bundle for another one
        hexdigest = digest.removeprefix("sha256:")
        stored = hub.data_dir / "publish" / "bundles" / "sha256" / hexdigest[:2]
        blob = stored / f"{hexdigest}.tar.gz"
        blob.chmod(0o600)
        blob.write_bytes(bundle({"app.py": "import streamlit as st\nst.title('evil')\n"}))
        r = alice.post(f"{hub.url}/hub/api/users/alice/servers/pod", json={}, timeout=120)
        assert r.status_code in (201, 202), r.text
        log = double["workdir"] / "jupyter-alice--pod.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "cannot start" not in _text(log):
            time.sleep(0.2)
        assert "The app's code did not arrive intact" in _text(log), _text(log)
        assert "is damaged" in _text(log)
        model = alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()
        assert not model["servers"]["pod"]["ready"]  # it never served the swapped code
        # (KubeSpawner waits for a pod that will not run until start_timeout: README, Limits)
        alice.delete(f"{hub.url}/hub/api/users/alice/servers/pod", timeout=60)
    finally:
        left = hub.stop()
    assert left == []
