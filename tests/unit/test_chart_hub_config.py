"""The chart's own hub configuration, run with the rendered values, in front of configure(c).

tests/helpers/chart_hub.py loads ``files/hub/jupyterhub_config.py`` (+ ``z2jh.py``) the way the
hub pod does, from what ``helm template`` rendered (the ConfigMap and Secret ``hub``, the
hub's env), with its ``/usr/local/etc/jupyterhub/`` paths rewritten into a temporary root; its
``hub.extraConfig`` runs ``configure(c)``; then an app pod is built with the spawner that
configuration makes. The chart sets many KubeSpawner traits unconditionally (volumes,
profile_list, cmd, uid, fs_gid, memory guarantee, ...) and config beats a subclass's
``@default``: these tests show which of the spawner's settings survive, and that the pod is
still what the platform means (home and scratch volumes, the policy's resources, restricted
PSS). tests/integration/test_chart.py starts the same thing for real.
"""

from __future__ import annotations

import pytest
import yaml

from tests.helpers.chart_hub import site_objects, through_chart
from tests.helpers.helm import LOCAL_VALUES, REPO, VALUES, render
from tests.helpers.pss import restricted_violations

NS = "streamlit-hub"


def policy_text() -> str:
    """The example policy, plus a profile that sets limits only (no guarantees)."""
    policy = yaml.safe_load((REPO / "hub_config" / "policy.yaml").read_text())
    policy["profiles"]["limits-only"] = {
        "display_name": "Limits only",
        "cpu_limit": 1,
        "mem_limit": "512M",
    }
    policy["groups"]["testers"] = {
        "profiles": ["limits-only"],
        "max_running_apps": 1,
        "max_apps": 1,
    }
    return yaml.safe_dump(policy)


STARTS = [
    {
        "user": "alice",
        "groups": ["analysts"],
        "options": {"path": "apps/demo/app.py"},
        "name": "demo",
    },
    {"user": "tess", "groups": ["testers"], "options": {}, "name": "tiny"},
]


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    return through_chart(
        render(VALUES, namespace=NS),
        site_objects(policy_text()),
        tmp_path_factory.mktemp("prod"),
        STARTS,
        namespace=NS,
    )


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return through_chart(
        render(VALUES, LOCAL_VALUES, namespace=NS),
        site_objects(policy_text()),
        tmp_path_factory.mktemp("local"),
        STARTS[:1],
        namespace=NS,
    )


@pytest.fixture(scope="module", params=["production", "local"])
def each(request, prod, local):
    values = render(
        VALUES, *([LOCAL_VALUES] if request.param == "local" else []), namespace=NS
    ).values
    return (prod if request.param == "production" else local), values


def container(pod):
    (c,) = pod["spec"]["containers"]
    return c


def test_the_chart_config_ends_with_ours(each):
    result, values = each
    assert result["hub"]["spawner_class"] == "streamlit-kube"
    assert {s["name"] for s in result["services"]} == {"audit", "idle-culler"}
    assert result["proxy"]["should_start"] is False  # the proxy is a pod of its own
    assert result["hub"]["subdomain_host"] == values["hub"]["extraEnv"]["STREAMLIT_HUB_PUBLIC_URL"]
    assert not [line for line in result["log"] if line.startswith(("WARNING", "ERROR"))]


def test_app_pods_keep_their_home_and_scratch_volumes(prod):
    """The chart ends its storage section with c.KubeSpawner.volumes = {} (storage.type none):
    the spawner's home PVC and the /tmp emptyDir a read-only root filesystem needs must stay."""
    pod = prod["starts"][0]["pod"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == "home-alice"
    assert "emptyDir" in volumes["scratch"]
    mounts = {m["mountPath"]: m["name"] for m in container(pod)["volumeMounts"]}
    assert mounts["/home/analyst"] == "home" and mounts["/tmp"] == "scratch"
    assert prod["starts"][0]["pvc"]["metadata"]["name"] == "home-alice"
    assert prod["starts"][0]["spawner"]["storage_pvc_ensure"] is True


def test_profiles_and_their_resources_come_from_the_group_policy(prod):
    """The chart sets c.KubeSpawner.profile_list = [] (singleuser.profileList's default),
    which replaced the spawner's policy-driven callable: 'No such profile: small'."""
    pod = prod["starts"][0]["pod"]
    res = container(pod)["resources"]
    assert str(res["limits"]["memory"]) in ("2147483648", "2G")
    assert str(res["requests"]["memory"]) in ("536870912", "512M")
    assert float(res["limits"]["cpu"]) == 1 and float(res["requests"]["cpu"]) == 0.25
    assert pod["metadata"]["labels"]["streamlit-hub.io/profile"] == "small"


def test_a_profile_without_guarantees_gets_none_from_the_chart(prod):
    """singleuser.memory.guarantee defaults to 1G in the chart: a profile with a 512M limit and
    no guarantee would ask for more than its limit (the API server refuses such a pod)."""
    res = container(prod["starts"][1]["pod"])["resources"]
    assert str(res["limits"]["memory"]) in ("536870912", "512M")
    assert "memory" not in res.get("requests", {}) and "cpu" not in res.get("requests", {})


def test_what_the_chart_sets_for_every_app_pod_agrees_with_the_spawner(each):
    # (imported here: kubernetes_asyncio reads KUBECONFIG when first imported, and
    # tests/unit/test_kube_manifest.py sets its own before that at collection)
    from tests.helpers.k8s_models import problems

    result, values = each
    su = values["singleuser"]
    start = result["starts"][0]
    pod, sp = start["pod"], start["spawner"]
    c = container(pod)
    assert restricted_violations(pod) == [] and problems(pod, "V1Pod") == []
    assert c["image"] == f"{su['image']['name']}:{su['image']['tag']}"
    # the app server's command, user and volume group are the spawner's: the values leave them
    # null, so the chart sets none of them (tests/unit/test_values_agree.py)
    assert not {"cmd", "uid", "fsGid"} & set(su)
    assert c["args"] == sp["cmd"] == ["python", "-m", "spawner.app_server"]
    assert (
        pod["spec"]["securityContext"]["runAsUser"]
        == c["securityContext"]["runAsUser"]
        == sp["uid"]
        == 1000
    )
    assert pod["spec"]["securityContext"]["fsGroup"] == sp["fs_gid"] == 1000
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    assert not pod["spec"].get("initContainers")  # no privileged iptables container
    assert not c.get("lifecycle") and not sp["extra_pod_config"] and not sp["extra_containers"]
    assert sp["start_timeout"] == su["startTimeout"]  # the chart's, over configure()'s 90 s
    assert sp["namespace"] == NS
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HOME"] == "/home/analyst"
    assert result["hub"]["hub_connect_url"] == "http://hub:8081"  # app pods reach the hub Service
    if su.get("image", {}).get("pullPolicy"):
        assert c["imagePullPolicy"] == su["image"]["pullPolicy"]
    scheduling = values["scheduling"]
    if scheduling["userScheduler"]["enabled"]:  # the chart's own scheduler packs app pods
        rendered = render(VALUES, namespace=NS)
        config = yaml.safe_load(rendered.get("ConfigMap", "user-scheduler")["data"]["config.yaml"])
        assert pod["spec"]["schedulerName"] == config["profiles"][0]["schedulerName"]
    else:
        assert "schedulerName" not in pod["spec"]
    if scheduling["podPriority"]["enabled"]:
        assert pod["spec"]["priorityClassName"] in {
            p["metadata"]["name"] for p in render(VALUES, namespace=NS).all("PriorityClass")
        }
    else:
        assert "priorityClassName" not in pod["spec"]


def test_app_pods_send_audit_events_to_the_hub_service_port(each):
    result, _ = each
    rendered = render(VALUES, namespace=NS)
    ports = {p["name"]: p["port"] for p in rendered.get("Service", "hub")["spec"]["ports"]}
    (audit,) = [s for s in result["services"] if s["name"] == "audit"]
    assert audit["url"] == f"http://hub:{ports['audit']}"
    assert (
        result["starts"][0]["spawner"]["audit_url"]
        == f"http://hub:{ports['audit']}/services/audit/api/events"
    )


def test_the_crypt_key_configure_checks_is_the_one_that_encrypts_auth_state(each):
    """The chart sets c.CryptKeeper.keys from its own Secret, which beats JUPYTERHUB_CRYPT_KEY:
    a key given only in the variable would be checked by configure() and never used."""
    result, _ = each
    assert result["crypt"]["config"] and result["crypt"]["env"]
    assert result["crypt"]["env"].split(";") == result["crypt"]["config"]
