"""What streamlit-kube keeps over blanket configuration (spawner/kube.py's module docstring).

The chart's hub configuration sets KubeSpawner's profile_list, volumes, volume_mounts and
resource defaults for every pod; tests/unit/test_chart_hub_config.py shows it with the chart
itself. These pin the rules one by one with plain configuration.
"""

import pytest
from traitlets.config import Config

from tests.unit.test_kube_manifest import POLICY, build


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return str(p)


def configured(**kube) -> Config:
    c = Config()
    for k, v in kube.items():
        setattr(c.KubeSpawner, k, v)
    return c


def build_with(policy_file, config, user="alice", groups=("analysts",), options=None):
    from spawner.kube import StreamlitKubeSpawner

    original = StreamlitKubeSpawner.__init__

    def init(self, *a, **kw):
        original(self, *a, config=config, **kw)

    StreamlitKubeSpawner.__init__ = init
    try:
        return build(policy_file, user, list(groups), options or {"path": "apps/demo/app.py"})
    finally:
        StreamlitKubeSpawner.__init__ = original


def test_configured_profile_list_gives_way_to_the_policy_with_a_warning(policy_file, caplog):
    sp, pod = build_with(
        policy_file,
        configured(
            profile_list=[
                {
                    "slug": "chart",
                    "display_name": "Chart's",
                    "kubespawner_override": {"cpu_limit": 64},
                }
            ]
        ),
    )
    assert [p["slug"] for p in sp.profile_list(sp)] == ["small"]
    assert float(pod["spec"]["containers"][0]["resources"]["limits"]["cpu"]) == 1
    assert any("profile_list is configured but ignored" in r.getMessage() for r in caplog.records)


def test_an_empty_configured_profile_list_is_replaced_silently(policy_file, caplog):
    sp, _ = build_with(policy_file, configured(profile_list=[]))
    assert [p["slug"] for p in sp.profile_list(sp)] == ["small"]
    assert not any("ignored" in r.getMessage() for r in caplog.records)


def test_own_volumes_stay_first_and_configured_ones_are_added_unless_they_clash(
    policy_file, caplog
):
    config = configured(
        volumes={
            "data": {"name": "data", "persistentVolumeClaim": {"claimName": "team-data"}},
            "home": {"name": "home", "emptyDir": {}},
        },
        volume_mounts=[
            {"name": "data", "mountPath": "/data", "readOnly": True},
            {"name": "other", "mountPath": "/tmp/"},
        ],
    )
    _, pod = build_with(policy_file, config)
    volumes = pod["spec"]["volumes"]
    assert [v["name"] for v in volumes] == ["home", "scratch", "data"]
    assert volumes[0]["persistentVolumeClaim"]["claimName"] == "home-alice"
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert [(m["name"], m["mountPath"]) for m in mounts] == [
        ("home", "/home/analyst"),
        ("scratch", "/tmp"),
        ("data", "/data"),
    ]
    warnings = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert len(warnings) == 2 and "'home'" in warnings[0] and "/tmp/" in warnings[1]


def test_a_profile_leaves_no_configured_resource_default_behind(policy_file):
    config = configured(mem_guarantee="1G", cpu_guarantee=0.5, cpu_limit=8, mem_limit="64G")
    # gpu: cpu_limit 4, mem_limit 16G, no guarantees
    _, pod = build_with(
        policy_file,
        config,
        "bob",
        ("data-scientists",),
        {"path": "apps/demo/app.py", "profile": "gpu"},
    )
    res = pod["spec"]["containers"][0]["resources"]
    assert float(res["limits"]["cpu"]) == 4 and str(res["limits"]["memory"]) in (
        "17179869184",
        "16G",
    )
    assert "cpu" not in res.get("requests", {}) and "memory" not in res.get("requests", {})


def test_the_configured_volume_group_reaches_the_pod_and_privilege_escalation_never(policy_file):
    _, pod = build_with(
        policy_file, configured(fs_gid=2000, uid=1500, allow_privilege_escalation=True)
    )
    assert pod["spec"]["securityContext"]["fsGroup"] == 2000
    assert pod["spec"]["securityContext"]["runAsUser"] == 1500
    csc = pod["spec"]["containers"][0]["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False and csc["runAsUser"] == 1500
