"""streamlit-kube end to end against a Kubernetes API **test double** (not a cluster).

tests/helpers/kube_double.py: kmock's KubernetesEmulator (0.8, its gaps patched) plus a
loopback kubelet that runs each pod's command as a local process on its own 127.0.x.y. The
real hub runs in kubernetes mode with the real KubeSpawner subclass and the real proxy:
alice starts the demo app, opens it through the proxy (HTTP and websocket), is refused a
start over her quota, stops it, and the pod goes while her home PVC stays.

Credentials (issue #16): the app server's hub API token reaches the pod only through a
per-app Secret made before the pod (the double's kubelet resolves ``secretKeyRef`` as a
kubelet does, so the app authenticating with the hub shows the reference works), the pod
spec holds no token, and the Secret is gone after the stop. Data access: her group's volume
and service account are in the pod.
"""

import base64
import json
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from tests.helpers.hub import REPO, Hub, free_port
from tests.helpers.k8s_models import problems
from tests.helpers.kube_double import kubeconfig
from tests.helpers.pss import restricted_violations
from tests.helpers.streamlit_ws import session, ws_url

pytestmark = pytest.mark.integration

POLICY = """
profiles:
  small: {display_name: "Small", cpu_guarantee: 0.1, cpu_limit: 1, mem_guarantee: 256M, mem_limit: 1G}
groups:
  analysts:
    profiles: [small]
    max_running_apps: 1
    max_apps: 5
    volumes: [{claim: sales-data, mount_path: /data/sales}]
    service_account: bq-sales
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


@pytest.fixture
def double(tmp_path):
    port = free_port()
    workdir = tmp_path / "cluster"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.helpers.kube_double",
            "--port",
            str(port),
            "--workdir",
            str(workdir),
            "--requests",
            str(tmp_path / "api-requests.jsonl"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "double.log", "wb"),
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready", (tmp_path / "double.log").read_text()
        config = tmp_path / "kubeconfig"
        config.write_text(kubeconfig(port))
        yield {
            "url": f"http://127.0.0.1:{port}",
            "kubeconfig": str(config),
            "workdir": workdir,
            "log": tmp_path / "double.log",
            "requests": tmp_path / "api-requests.jsonl",
        }
    finally:
        proc.terminate()
        proc.wait(30)


def k8s(double, path):
    return requests.get(double["url"] + path, timeout=10).json()


def api_requests(double) -> list[tuple[str, str]]:
    """(action, resource) of every API request the hub made, in order."""
    lines = double["requests"].read_text().splitlines()
    return [(r["action"], r["resource"]) for r in map(json.loads, lines) if r["resource"]]


def test_an_app_runs_as_a_pod_through_the_real_hub_and_proxy(tmp_path, double):
    home = double["workdir"] / "pvc" / "home-alice" / "apps" / "demo"
    home.mkdir(parents=True)
    for f in (REPO / "hub_config" / "demo_app").rglob("*.py"):
        target = home / f.relative_to(REPO / "hub_config" / "demo_app")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.read_text())
    env = {
        "STREAMLIT_HUB_MODE": "kubernetes",
        "STREAMLIT_HUB_AUTH": "demo",
        "KUBECONFIG": double["kubeconfig"],
        "STREAMLIT_HUB_AUDIT_HOST": "127.0.0.1",
        "STREAMLIT_HUB_AUDIT_BIND": "127.0.0.1",
    }
    hub = Hub(tmp_path / "h", env=env, policy=POLICY)
    env["STREAMLIT_HUB_PUBLIC_URL"] = hub.url  # each analyst's apps on <analyst>.localhost
    hub.extra_config = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        data = Path(os.environ["STREAMLIT_HUB_DATA_DIR"])
        data.mkdir(parents=True, exist_ok=True)
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {hub.port}
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.db_url = f"sqlite:///{{data / 'jupyterhub.sqlite'}}"
        c.JupyterHub.cookie_secret_file = str(data / "cookie_secret")
        c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
        c.ConfigurableHTTPProxy.command = [r"{REPO / "node_modules/.bin/configurable-http-proxy"}"]
        c.ConfigurableHTTPProxy.pid_file = str(data / "proxy.pid")
        c.JupyterHub.cleanup_servers = True
        c.JupyterHub.cleanup_proxy = True
        c.KubeSpawner.image = "ghcr.io/example/jupyterhub-streamlit-app:0.1.0"
        c.StreamlitKubeSpawner.app_command = [sys.executable, "-m", "spawner.app_server"]
        c.KubeSpawner.start_timeout = 60
        c.KubeSpawner.http_timeout = 60
        c.Spawner.poll_interval = 1
    """)
    hub.start()
    try:
        alice = hub.login("alice")
        hub.start_app(alice, "alice", "demo", {"path": "apps/demo/app.py"})
        (pod,) = k8s(double, "/api/v1/namespaces/default/pods")["items"]
        assert pod["status"]["podIP"].startswith("127.0.")
        assert pod["metadata"]["labels"]["streamlit-hub.io/app"] == "demo"
        assert restricted_violations(pod) == [] and problems(pod, "V1Pod") == []
        reasons = {
            e["reason"]
            for e in k8s(double, "/api/v1/namespaces/default/events")["items"]
            if e["involvedObject"]["name"] == pod["metadata"]["name"]
        }
        assert {"Scheduled", "Pulled", "Started"} <= reasons
        # the token: in a per-app Secret made before the pod, referenced, never in the spec
        (secret,) = k8s(double, "/api/v1/namespaces/default/secrets")["items"]
        assert secret["metadata"]["name"] == pod["metadata"]["name"] + "-credentials"
        token = base64.b64decode(secret["data"]["JUPYTERHUB_API_TOKEN"]).decode()
        assert len(token) >= 32 and token not in json.dumps(pod)
        (main,) = pod["spec"]["containers"]
        env = {e["name"]: e for e in main["env"]}
        assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": secret["metadata"]["name"],
            "key": "JUPYTERHUB_API_TOKEN",
        }
        assert "JPY_API_TOKEN" not in env
        made = api_requests(double)
        assert made.index(("CREATE", "secrets")) < made.index(("CREATE", "pods"))
        # the group's data access
        mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
        assert mounts["/data/sales"]["readOnly"] is True
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes[mounts["/data/sales"]["name"]]["persistentVolumeClaim"] == {
            "claimName": "sales-data",
            "readOnly": True,
        }
        assert pod["spec"]["serviceAccountName"] == "bq-sales"
        assert pod["spec"]["automountServiceAccountToken"] is True
        page = hub.open_app(alice, "alice", "demo")
        assert page.status_code == 200 and "/user/alice/demo/" in page.url
        out = session(
            ws_url(hub.app_origin("alice"), "/user/alice/demo/"),
            {"Cookie": hub.app_cookie_header(alice, "alice", "demo")},
        )
        assert out["finished"] == 1 and any("Sales demo" in t for t in out["texts"])
        # over the quota (one running app for analysts): refused before any pod is made
        r = alice.post(
            f"{hub.url}/hub/api/users/alice/servers/second",
            json={"path": "apps/demo/app.py"},
            timeout=60,
        )
        assert r.status_code == 403 and "at once" in r.json()["message"]
        assert len(k8s(double, "/api/v1/namespaces/default/pods")["items"]) == 1
        hub.stop_app(alice, "alice", "demo")
        deadline = time.monotonic() + 30
        while (
            k8s(double, "/api/v1/namespaces/default/pods")["items"] and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert k8s(double, "/api/v1/namespaces/default/pods")["items"] == []
        pvcs = [
            p["metadata"]["name"]
            for p in k8s(double, "/api/v1/namespaces/default/persistentvolumeclaims")["items"]
        ]
        assert pvcs == ["home-alice"]
        assert k8s(double, "/api/v1/namespaces/default/secrets")["items"] == []
        assert ("DELETE", "secrets") in api_requests(double)
    finally:
        left = hub.stop()
    assert left == [], f"processes left behind: {left}"
