"""The chart's own hub configuration, run: the hub pod as the chart renders it, end to end.

tests/helpers/chart_cluster.py renders helm-values/values.yaml + values-local.yaml (the trial
overlay: demo users, sqlite audit store) with the real chart and a real Helm, and starts, in
one pod network of their own, the rendered proxy command (the real configurable-http-proxy),
the rendered hub command with the chart's ``jupyterhub_config.py``/``z2jh.py`` reading the
rendered values at their paths (``hub.extraConfig`` runs ``configure(c)``), and the Kubernetes
API test double with its loopback kubelet as the API server. Not a cluster: see
docs/deploy.md, "Proven without a cluster".

alice starts the demo app: it becomes a pod (restricted PSS, the policy's resources, home
and scratch volumes), is served over HTTP and websocket on her own host, audit events from
the hub and from the app pod arrive; every API request the hub made is one the chart's RBAC
grants its service account.
"""

from __future__ import annotations

import time

import pytest
import yaml

from tests.helpers import netns
from tests.helpers.chart_cluster import ChartCluster
from tests.helpers.hub import REPO
from tests.helpers.k8s_models import problems
from tests.helpers.pss import restricted_violations
from tests.helpers.streamlit_ws import session, ws_url

_why_not = netns.available()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(_why_not is not None, reason=str(_why_not)),
]

NS = "streamlit-hub"
VERBS = {
    "LIST": "list",
    "WATCH": "watch",
    "FETCH": "get",
    "CREATE": "create",
    "UPDATE": "patch",
    "DELETE": "delete",
}


def wait(predicate, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture
def cluster(tmp_path):
    # the policy ConfigMap, as values-local.yaml's header creates it: the example policy
    c = ChartCluster(tmp_path / "chart", (REPO / "hub_config" / "policy.yaml").read_text(), NS)
    try:
        c.start()
        yield c
    finally:
        left = c.stop()
    assert left == [], f"processes left behind: {left}"


def seed_demo_app(cluster, user):
    home = cluster.home(user) / "apps" / "demo"
    home.mkdir(parents=True)
    for f in (REPO / "hub_config" / "demo_app").rglob("*.py"):
        target = home / f.relative_to(REPO / "hub_config" / "demo_app")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.read_text())


def audit_events(cluster, token) -> list[dict]:
    r = cluster.api(token).get(
        cluster.url + "/services/audit/api/events", params={"limit": 1000}, timeout=10
    )
    return r.json()["events"] if r.status_code == 200 else []


def test_the_chart_runs_our_hub_and_serves_an_app_pod(cluster):
    # the kubelet's probes, as rendered, find both pods ready and alive
    for deployment, container in (("hub", "hub"), ("proxy", "chp")):
        for kind in ("readinessProbe", "livenessProbe"):
            assert cluster.probe(deployment, container, kind) == 200, (deployment, kind)

    seed_demo_app(cluster, "alice")
    alice = cluster.login("alice")
    cluster.start_app(alice, "alice", "demo", {"path": "apps/demo/app.py"})

    (pod,) = cluster.k8s(f"/api/v1/namespaces/{NS}/pods")["items"]
    assert restricted_violations(pod) == [] and problems(pod, "V1Pod") == []
    (c,) = pod["spec"]["containers"]
    values = cluster.rendered.values["singleuser"]
    assert c["image"] == f"{values['image']['name']}:{values['image']['tag']}"
    assert c["imagePullPolicy"] == values["image"]["pullPolicy"]
    assert c["args"] == ["python", "-m", "spawner.app_server"]  # the spawner's app_command
    # what the chart's config would have taken away (volumes, profile) is there
    assert {v["name"] for v in pod["spec"]["volumes"]} >= {"home", "scratch"}
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/home/analyst", "/tmp"}
    policy = yaml.safe_load((REPO / "hub_config" / "policy.yaml").read_text())
    small = policy["profiles"]["small"]
    assert float(c["resources"]["limits"]["cpu"]) == small["cpu_limit"]
    assert pod["metadata"]["labels"]["streamlit-hub.io/profile"] == "small"
    # the labels the chart's network policies select on, the port its ingress rule names
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    netpol = cluster.rendered.get("NetworkPolicy", "singleuser")["spec"]
    assert {"port": c["ports"][0]["name"]} in netpol["ingress"][0]["ports"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["JUPYTERHUB_API_URL"] == "http://hub:8081/hub/api"
    assert env["STREAMLIT_HUB_AUDIT_URL"] == "http://hub:8082/services/audit/api/events"

    # served over HTTP and websocket, on alice's own host, through the chart's proxy
    page = cluster.open_app(alice, "alice", "demo")
    assert page.status_code == 200 and page.url.startswith(cluster.app_url("alice", "demo"))
    out = session(
        ws_url(cluster.app_origin("alice"), "/user/alice/demo/"),
        {"Cookie": cluster.app_cookie_header(alice, "alice", "demo")},
    )
    assert out["finished"] == 1 and any("Sales demo" in t for t in out["texts"])

    # audit: from the hub (start, authorization) and from the app pod (over the hub Service)
    admin = cluster.token("admin")
    found = wait(
        lambda: (
            lambda ev: (
                ev if {"app_start", "authorize", "page_view"} <= {e["type"] for e in ev} else None
            )
        )(audit_events(cluster, admin)),
        timeout=30,
    )
    assert found, f"audit events missing:\n{cluster.log_tail()}"
    assert any(
        e["type"] == "page_view" and e["owner"] == "alice" and e["app"] == "demo" for e in found
    )

    cluster.stop_app(alice, "alice", "demo")
    assert wait(lambda: not cluster.k8s(f"/api/v1/namespaces/{NS}/pods")["items"], timeout=30)
    pvcs = cluster.k8s(f"/api/v1/namespaces/{NS}/persistentvolumeclaims")["items"]
    assert [p["metadata"]["name"] for p in pvcs] == ["home-alice"]

    # every request the hub made, the chart's Role lets its service account make
    role = cluster.rendered.get("Role", "hub")
    granted = {}
    for rule in role["rules"]:
        for res in rule["resources"]:
            granted.setdefault(res, set()).update(rule["verbs"])
    made = {(r["resource"], VERBS[r["action"]]) for r in cluster.api_requests() if r["resource"]}
    assert {("pods", "create"), ("persistentvolumeclaims", "create"), ("pods", "delete")} <= made
    assert all(r["namespace"] == NS for r in cluster.api_requests() if r["resource"])
    missing = sorted((res, verb) for res, verb in made if verb not in granted.get(res, set()))
    assert missing == [], f"the hub asked for what its Role does not grant: {missing}"
