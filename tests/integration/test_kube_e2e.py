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
import time

import pytest

from tests.helpers.hub import REPO
from tests.helpers.k8s_models import problems
from tests.helpers.kube_hub import api_requests, k8s, kube_hub
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


def test_an_app_runs_as_a_pod_through_the_real_hub_and_proxy(tmp_path, double):
    home = double["workdir"] / "pvc" / "home-alice" / "apps" / "demo"
    home.mkdir(parents=True)
    for f in (REPO / "hub_config" / "demo_app").rglob("*.py"):
        target = home / f.relative_to(REPO / "hub_config" / "demo_app")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.read_text())
    hub = kube_hub(tmp_path / "h", double, POLICY)
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
