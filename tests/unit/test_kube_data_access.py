"""Data access per group, applied to the app pod (issue #16, point 4).

The group policy grants a group existing PVCs (read-only or read-write, at a mount path) and a
Kubernetes service account (Workload Identity on GKE, IRSA on EKS). streamlit-kube puts them
into the pod: the volumes and their mounts with ``readOnly``, ``serviceAccountName``, and
``automountServiceAccountToken`` true only with a granted account. Pods still meet the
restricted Pod Security Standard, and the chart's blanket configuration does not undo it.
The policy side (schema, combination) is tests/unit/test_policy_data_access.py.
"""

from __future__ import annotations

import asyncio

import pytest
import yaml
from jupyterhub.spawner import SpawnException
from traitlets.config import Config

from tests.helpers.pss import restricted_violations
from tests.unit import test_kube_manifest

make = test_kube_manifest.make  # (it points KUBECONFIG nowhere before kubernetes_asyncio loads)

from kubernetes_asyncio.client import ApiClient  # noqa: E402

POLICY = """
profiles:
  small: {display_name: "Small", cpu_guarantee: 0.25, cpu_limit: 1, mem_guarantee: 512M, mem_limit: 2G}
groups:
  analysts:
    profiles: [small]
    max_running_apps: 2
    max_apps: 5
    volumes:
      - {claim: sales-data, mount_path: /data/sales}
  finance:
    profiles: [small]
    max_running_apps: 2
    max_apps: 5
    volumes:
      - {claim: sales-data, mount_path: /data/sales, read_only: false}
      - {claim: ledger.archive, mount_path: /data/ledger}
    service_account: bq-finance
  bq-readers: {profiles: [small], max_running_apps: 1, max_apps: 1, service_account: bq-readers}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return str(p)


def build(policy_file, groups, config=None, user="alice", options=None):
    from spawner.kube import StreamlitKubeSpawner

    original = StreamlitKubeSpawner.__init__

    def init(self, *a, **kw):
        original(self, *a, config=config or Config(), **kw)

    StreamlitKubeSpawner.__init__ = init
    try:
        sp = make(policy_file, user, list(groups), "sales")
    finally:
        StreamlitKubeSpawner.__init__ = original
    sp.user_options = options or {}

    async def go():
        opts = sp.validated_options()
        sp.app_profile_spec = sp.admit(opts)
        sp.app_entry = sp.resolve_app_entry(opts)
        await sp.load_user_options()
        return ApiClient().sanitize_for_serialization(await sp.get_pod_manifest())

    return sp, asyncio.run(go())


def data_volumes(pod):
    return {
        v["name"]: v["persistentVolumeClaim"]
        for v in pod["spec"]["volumes"]
        if v["name"].startswith("data-")
    }


def data_mounts(pod):
    return {
        m["mountPath"]: (m["name"], m.get("readOnly", False))
        for m in pod["spec"]["containers"][0]["volumeMounts"]
        if m["name"].startswith("data-")
    }


def test_a_groups_volume_is_mounted_read_only_and_no_service_account_token(policy_file):
    from tests.helpers.k8s_models import problems

    _, pod = build(policy_file, ["analysts"])
    assert data_volumes(pod) == {"data-sales-data": {"claimName": "sales-data", "readOnly": True}}
    assert data_mounts(pod) == {"/data/sales": ("data-sales-data", True)}
    spec = pod["spec"]
    assert "serviceAccountName" not in spec and "serviceAccount" not in spec
    assert spec["automountServiceAccountToken"] is False
    assert "streamlit-hub.io/service-account" not in pod["metadata"]["labels"]
    assert restricted_violations(pod) == [] and problems(pod, "V1Pod") == []


def test_several_groups_add_up_and_a_granted_account_brings_its_token(policy_file):
    from tests.helpers.k8s_models import problems

    _, pod = build(policy_file, ["analysts", "finance"])
    # read-write because finance grants write; the dotted claim gets a DNS-label volume name
    ledger = next(n for n in data_volumes(pod) if n.startswith("data-ledger-archive-"))
    assert data_volumes(pod) == {
        "data-sales-data": {"claimName": "sales-data", "readOnly": False},
        ledger: {"claimName": "ledger.archive", "readOnly": True},
    }
    assert data_mounts(pod) == {
        "/data/sales": ("data-sales-data", False),
        "/data/ledger": (ledger, True),
    }
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "bq-finance"
    assert spec["automountServiceAccountToken"] is True
    assert pod["metadata"]["labels"]["streamlit-hub.io/service-account"] == "bq-finance"
    # own volumes first, then the granted ones
    assert [v["name"] for v in spec["volumes"]][:2] == ["home", "scratch"]
    assert restricted_violations(pod) == [] and problems(pod, "V1Pod") == []


def test_different_service_accounts_refuse_the_start_before_any_pod(policy_file):
    with pytest.raises(SpawnException) as e:
        build(policy_file, ["finance", "bq-readers"])
    assert e.value.status_code == 403
    assert "different service accounts" in e.value.message
    assert "finance: bq-finance" in e.value.message and "bq-readers: bq-readers" in e.value.message


def test_the_policy_owns_the_pods_identity_over_configuration(policy_file, caplog):
    config = Config()
    config.KubeSpawner.service_account = "chart-wide"
    config.KubeSpawner.automount_service_account_token = True
    config.KubeSpawner.extra_pod_config = {
        "serviceAccountName": "sneaky",
        "automountServiceAccountToken": True,
    }
    _, pod = build(policy_file, ["analysts"], config)
    assert "serviceAccountName" not in pod["spec"] and "serviceAccount" not in pod["spec"]
    assert pod["spec"]["automountServiceAccountToken"] is False
    warned = [
        r.getMessage() for r in caplog.records if "is configured but ignored" in r.getMessage()
    ]
    assert len(warned) == 2 and "service_account" in warned[0]
    _, pod = build(policy_file, ["bq-readers"], config)
    assert pod["spec"]["serviceAccountName"] == "bq-readers"
    assert pod["spec"]["automountServiceAccountToken"] is True


def test_a_configured_volume_at_a_granted_path_is_dropped_with_a_warning(policy_file, caplog):
    config = Config()
    config.KubeSpawner.volumes = [{"name": "other", "emptyDir": {}}]
    config.KubeSpawner.volume_mounts = [{"name": "other", "mountPath": "/data/sales"}]
    _, pod = build(policy_file, ["analysts"], config)
    assert data_mounts(pod) == {"/data/sales": ("data-sales-data", True)}
    mounts = [m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]]
    assert mounts.count("/data/sales") == 1
    assert any(
        "/data/sales" in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records
    )


def test_a_grant_where_a_configured_home_is_refuses_the_start(policy_file):
    config = Config()
    config.StreamlitKubeSpawner.home_mount = "/data"
    with pytest.raises(SpawnException) as e:
        build(policy_file, ["analysts"], config)
    assert e.value.status_code == 500
    assert "sales-data at /data/sales" in e.value.message and "overlaps /data" in e.value.message


def test_the_charts_configuration_keeps_the_granted_volumes_and_account(tmp_path):
    """Through the chart's own hub configuration (volumes = {}, its service-account handling),
    rendered from helm-values/values.yaml by a real Helm."""
    from tests.helpers.chart_hub import site_objects, through_chart
    from tests.helpers.helm import VALUES, render

    policy = yaml.safe_load(POLICY)
    result = through_chart(
        render(VALUES, namespace="streamlit-hub"),
        site_objects(yaml.safe_dump(policy)),
        tmp_path,
        [{"user": "fred", "groups": ["finance"], "options": {}, "name": "ledger"}],
    )
    pod = result["starts"][0]["pod"]
    assert data_mounts(pod)["/data/sales"] == ("data-sales-data", False)
    assert pod["spec"]["serviceAccountName"] == "bq-finance"
    assert pod["spec"]["automountServiceAccountToken"] is True
    assert restricted_violations(pod) == []
