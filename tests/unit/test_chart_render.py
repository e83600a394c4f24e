"""helm-values/ rendered by a real Helm (v3.17.3, from PyPI) with the real Zero to JupyterHub chart.

tests/helpers/helm.py: ``helm template hub <chart> -f helm-values/values.yaml
[-f helm-values/values-local.yaml] --kube-version 1.32.0``. These check what the platform
relies on in the *output* (what Kubernetes would get), not in the values: the hub's env and
extra config, the audit port and the network paths to it, the app image and command, the
ingress for the hub's host and every app host, the hub's service account and RBAC, and that
no secret ends up in a ConfigMap. tests/unit/test_chart_hub_config.py runs the chart's hub
configuration with these renders; tests/integration/test_chart.py starts it all.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlparse

import pytest

from tests.helpers.helm import LOCAL_VALUES, VALUES, render

NS = "streamlit-hub"
# What docs/deploy.md tells the operator to create; everything else must come from the chart.
SITE_SECRETS = {"streamlit-hub-google", "streamlit-hub-secrets"}
SECRET_LIKE = re.compile(r"SECRET|PASSWORD|TOKEN|CRYPT|DB_URL|CLIENT_ID")


@pytest.fixture(scope="module")
def prod():
    return render(VALUES, namespace=NS)


@pytest.fixture(scope="module")
def local():
    return render(VALUES, LOCAL_VALUES, namespace=NS)


@pytest.fixture(scope="module", params=["production", "local"])
def each(request, prod, local):
    return prod if request.param == "production" else local


def hub_env(r) -> dict:
    return {e["name"]: e for e in r.container("Deployment", "hub", "hub")["env"]}


def test_helm_renders_both_value_sets(prod, local):
    kinds = {o["kind"] for o in prod.objects}
    assert {
        "Deployment",
        "Service",
        "NetworkPolicy",
        "Ingress",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
    } <= kinds
    assert len(prod.objects) > len(local.objects) > 10  # the overlay drops the pre-puller etc.


def test_the_hub_runs_our_image_in_kubernetes_mode_with_every_value_of_extra_env(each):
    values = each.values
    c = each.container("Deployment", "hub", "hub")
    assert c["image"] == f"{values['hub']['image']['name']}:{values['hub']['image']['tag']}"
    env = hub_env(each)
    assert set(values["hub"]["extraEnv"]) <= set(env)
    assert env["STREAMLIT_HUB_MODE"]["value"] == "kubernetes"
    assert env["STREAMLIT_HUB_POLICY"]["value"] == "/usr/local/etc/streamlit-hub/policy.yaml"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/usr/local/etc/streamlit-hub/policy.yaml"]["subPath"] == "policy.yaml"


def test_production_secrets_reach_the_hub_only_by_reference(prod):
    for name, e in hub_env(prod).items():
        if SECRET_LIKE.search(name):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            assert ref, f"{name} is a literal in the hub's pod spec"
            assert ref["name"] in SITE_SECRETS | {"hub"}, ref
    key_file = hub_env(prod)["GOOGLE_SERVICE_ACCOUNT_KEY_FILE"]["value"]
    mounts = prod.container("Deployment", "hub", "hub")["volumeMounts"]
    mount = next(m for m in mounts if key_file.startswith(m["mountPath"].rstrip("/") + "/"))
    volumes = prod.get("Deployment", "hub")["spec"]["template"]["spec"]["volumes"]
    assert (
        next(v for v in volumes if v["name"] == mount["name"])["secret"]["secretName"]
        in SITE_SECRETS
    )


def test_the_extra_config_only_imports_and_calls_configure_after_the_charts_own(each):
    assert each.values["hub"]["extraConfig"] == {
        "streamlit-hub": "from spawner.startup import configure_or_exit\nconfigure_or_exit(c)\n"
    }
    config = each.get("ConfigMap", "hub")["data"]["jupyterhub_config.py"]
    # the chart runs hub.extraConfig last: configure(c) sees (and may override) all of it
    assert config.rindex('get_config("hub.extraConfig"') > config.rindex(
        "c.KubeSpawner.volume_mounts ="
    )
    assert config.rindex('get_config("hub.extraConfig"') > config.rindex('get_config("hub.config"')


def test_the_audit_port_is_on_the_hub_service_and_reachable_from_app_pods_and_the_proxy(each):
    ports = {p["name"]: p for p in each.get("Service", "hub")["spec"]["ports"]}
    assert ports["audit"]["port"] == 8082 and ports["audit"]["targetPort"] == 8082
    ingress = each.get("NetworkPolicy", "hub")["spec"]["ingress"]
    audit_rules = [r for r in ingress if {"port": 8082} in r.get("ports", [])]
    sources = [s["podSelector"]["matchLabels"] for r in audit_rules for s in r["from"]]
    assert {"hub.jupyter.org/network-access-hub": "true"} in sources
    assert {"component": "proxy"} in sources
    # app pods carry that label (KubeSpawner's extra_labels from the chart's values) ...
    assert each.values["singleuser"]["extraLabels"]["hub.jupyter.org/network-access-hub"] == "true"
    # ... and their own policy and the proxy's let them out to it
    for policy in ("singleuser", "proxy"):
        egress = each.get("NetworkPolicy", policy)["spec"]["egress"]
        assert any(
            {"port": 8082} in r.get("ports", [])
            and {"podSelector": {"matchLabels": {"component": "hub"}}} in r.get("to", [])
            for r in egress
        ), policy


def test_app_pods_accept_only_the_proxy_and_the_hub_and_never_reach_cloud_metadata(prod):
    spec = prod.get("NetworkPolicy", "singleuser")["spec"]
    sources = [s for r in spec["ingress"] for s in r["from"]]
    assert sources == [
        {"podSelector": {"matchLabels": {"hub.jupyter.org/network-access-singleuser": "true"}}}
    ]
    blocked = [b["ipBlock"] for r in spec["egress"] for b in r.get("to", []) if "ipBlock" in b]
    assert blocked and all(
        "169.254.169.254/32" in b.get("except", []) for b in blocked if b["cidr"] == "0.0.0.0/0"
    )
    # no privileged iptables init container: the chart only adds it for blockWithIptables
    assert prod.values["singleuser"]["cloudMetadata"]["blockWithIptables"] is False


def test_the_app_image_and_command(each):
    su = each.values["singleuser"]
    assert su["image"]["name"].endswith("jupyterhub-streamlit-app")
    # the app server's command is the spawner's (app_command: the image's Python): the values
    # leave singleuser.cmd null, so the chart's jupyterhub-singleuser is dropped too
    assert "cmd" not in su
    if su["image"]["name"].startswith("ghcr.io/"):  # production pre-pulls it on every node
        images = {
            c["image"]
            for d in each.all("DaemonSet")
            for c in d["spec"]["template"]["spec"]["initContainers"]
        }
        assert f"{su['image']['name']}:{su['image']['tag']}" in images


def test_the_ingress_serves_the_hub_host_and_every_app_host_over_tls(prod):
    public = urlparse(hub_env(prod)["STREAMLIT_HUB_PUBLIC_URL"]["value"])
    assert public.scheme == "https"
    (ingress,) = prod.all("Ingress")
    hosts = {public.hostname, f"*.{public.hostname}"}
    assert hosts == {"apps.example.com", "*.apps.example.com"}
    rules = {r["host"]: r for r in ingress["spec"]["rules"]}
    assert set(rules) == hosts
    for rule in rules.values():
        (path,) = rule["http"]["paths"]
        assert path["backend"]["service"] == {"name": "proxy-public", "port": {"name": "http"}}
        assert path["path"] == "/" and path["pathType"] == "Prefix"
    (tls,) = ingress["spec"]["tls"]
    assert set(tls["hosts"]) == hosts and tls["secretName"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]


def test_the_proxy_routes_by_host_as_the_hub_does(each):
    """configure() gives every analyst's apps a host of their own (subdomain_host); the chart
    starts the proxy with --host-routing only if hub.config.JupyterHub.subdomain_host is set.
    Without it the proxy ignores the host: every app URL falls through to the hub."""
    args = each.container("Deployment", "proxy", "chp")["args"]
    assert "--host-routing" in args
    public = hub_env(each)["STREAMLIT_HUB_PUBLIC_URL"]["value"]
    assert each.values["hub"]["config"]["JupyterHub"]["subdomain_host"] == public


def test_the_trial_overlay_has_a_host_name_apps_can_live_under(local):
    public = urlparse(hub_env(local)["STREAMLIT_HUB_PUBLIC_URL"]["value"])
    try:
        ipaddress.ip_address(public.hostname)
    except ValueError:
        pass
    else:
        pytest.fail(
            f"{public.geturl()}: configure() refuses an IP address (apps live on "
            "<analyst>.<host>); browsers send every *.localhost name to loopback"
        )
    assert public.hostname == "localhost" and public.port == 8000  # kubectl port-forward 8000:80


# What the streamlit-kube spawner (KubeSpawner) asks the API for, and what issue 16 will add:
# a per-app Secret holding the app's token (created before the pod, deleted on stop).
NEEDED = {
    "pods": {"create", "delete", "get", "list", "watch"},
    "persistentvolumeclaims": {"create", "get"},
    "events": {"list", "watch"},
    "secrets": {"create", "delete", "get"},
}


def allowed(role: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rule in role["rules"]:
        if "" not in rule.get("apiGroups", []):
            continue
        for res in rule["resources"]:
            out.setdefault(res, set()).update(rule["verbs"])
    return out


def test_the_hub_service_account_may_do_what_the_spawner_does(each):
    spec = each.get("Deployment", "hub")["spec"]["template"]["spec"]
    sa = spec["serviceAccountName"]
    assert each.get("ServiceAccount", sa)
    binding = each.get("RoleBinding", "hub")
    assert {"kind": "ServiceAccount", "name": sa, "namespace": NS} in binding["subjects"]
    role = each.get(binding["roleRef"]["kind"], binding["roleRef"]["name"])
    granted = allowed(role)
    for resource, verbs in NEEDED.items():
        assert verbs <= granted.get(resource, set()), (
            resource,
            verbs - granted.get(resource, set()),
        )


def _secret_values(r) -> set[str]:
    out = set()
    for s in r.all("Secret"):
        for key, value in r.secret_data(s["metadata"]["name"]).items():
            if key != "values.yaml" and len(value) >= 8:
                out.add(value)
    for name, e in hub_env(r).items():
        if SECRET_LIKE.search(name) and "value" in e and len(str(e["value"])) >= 8:
            out.add(str(e["value"]))
    return out


def test_no_secret_value_in_a_config_map(each):
    secret_values = _secret_values(each)
    assert secret_values  # the chart's proxy token, cookie secret and crypt key at least
    for cm in each.all("ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            leaked = [v[:4] + "..." for v in secret_values if v in text]
            assert not leaked, f"ConfigMap {cm['metadata']['name']} key {key} holds {leaked}"
    # the values (with the trial password) go to the Secret, never to a ConfigMap
    assert all("values.yaml" not in (cm.get("data") or {}) for cm in each.all("ConfigMap"))
