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


SHA = "0123456789abcdef0123456789abcdef01234567"
GIT = {"source": "git", "repo": "https://github.com/example/sales.git", "ref": SHA}


def test_a_configured_cmd_gives_way_to_app_command_with_a_warning(policy_file, caplog):
    _, pod = build_with(policy_file, configured(cmd=["jupyterhub-singleuser", "--debug"]))
    assert pod["spec"]["containers"][0]["args"] == ["python", "-m", "spawner.app_server"]
    assert any("cmd is configured" in r.getMessage() for r in caplog.records)


def test_a_null_cmd_the_charts_way_of_leaving_it_unset_is_replaced_silently(policy_file, caplog):
    config = Config()
    config.Spawner.cmd = None
    _, pod = build_with(policy_file, config)
    assert pod["spec"]["containers"][0]["args"] == ["python", "-m", "spawner.app_server"]
    assert not any("is configured" in r.getMessage() for r in caplog.records)


def test_app_command_is_the_one_setting_of_the_app_servers_command(policy_file):
    config = Config()
    config.StreamlitKubeSpawner.app_command = ["/opt/app/bin/python", "-m", "spawner.app_server"]
    sp, pod = build_with(policy_file, config)
    assert pod["spec"]["containers"][0]["args"] == sp.cmd == list(sp.app_command)
    assert sp.get_args() == []


def test_configured_security_contexts_keep_their_other_keys_but_never_win(policy_file):
    from tests.helpers.pss import restricted_violations

    config = configured(
        privileged=True,
        container_security_context={
            "readOnlyRootFilesystem": False,
            "runAsUser": 0,
            "seLinuxOptions": {"level": "s0:c123,c456"},
        },
        pod_security_context={"runAsNonRoot": False, "supplementalGroups": [7]},
    )
    _, pod = build_with(policy_file, config)
    assert restricted_violations(pod) == []
    psc, csc = pod["spec"]["securityContext"], pod["spec"]["containers"][0]["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["supplementalGroups"] == [7]
    assert csc["readOnlyRootFilesystem"] is True and csc["runAsUser"] == 1000
    assert csc["seLinuxOptions"] == {"level": "s0:c123,c456"} and "privileged" not in csc


def test_a_callable_uid_is_resolved_for_every_security_context(policy_file):
    _, pod = build_with(policy_file, configured(uid=lambda spawner: 1234), options=GIT)
    (init,) = pod["spec"]["initContainers"]
    for ctx in (
        pod["spec"]["securityContext"],
        pod["spec"]["containers"][0]["securityContext"],
        init["securityContext"],
    ):
        assert ctx["runAsUser"] == 1234


def test_configured_env_from_is_kept_before_the_apps_secret(policy_file):
    config = configured(extra_container_config={"envFrom": [{"configMapRef": {"name": "team"}}]})
    _, pod = build_with(policy_file, config)
    assert pod["spec"]["containers"][0]["envFrom"] == [
        {"configMapRef": {"name": "team"}},
        {"secretRef": {"name": "app-secrets-alice-demo", "optional": True}},
    ]


def test_configured_init_containers_as_a_dict_run_before_the_clone(policy_file):
    config = configured(
        init_containers={"pre": {"name": "pre", "image": "busybox:1.37", "command": ["true"]}}
    )
    _, pod = build_with(policy_file, config, options=GIT)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["pre", "git-clone"]


def test_the_repository_url_is_data_not_a_template(policy_file):
    # KubeSpawner expands {username} & co. in what is configured; the analyst's URL is not
    repo = "https://github.com/example/{username}-sales.git"
    _, pod = build_with(policy_file, configured(), options={**GIT, "repo": repo})
    (init,) = pod["spec"]["initContainers"]
    assert {e["name"]: e["value"] for e in init["env"]}["REPO"] == repo


def test_volumes_from_extra_pod_config_come_after_the_pods_own(policy_file):
    config = configured(extra_pod_config={"volumes": [{"name": "team", "emptyDir": {}}]})
    _, pod = build_with(policy_file, config)
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["home", "scratch", "team"]


def test_the_home_mount_may_name_the_user_as_kubespawner_templates_do(policy_file):
    config = Config()
    config.StreamlitKubeSpawner.home_mount = "/home/{username}"
    _, pod = build_with(policy_file, config)
    mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["home"] == "/home/alice"
