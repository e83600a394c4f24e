"""The streamlit-kube spawner's pod and PVC, built with no cluster (KubeSpawner(_mock=True)).

`restricted_violations` (tests/helpers/pss.py) encodes the Kubernetes "restricted" Pod
Security Standard for what a pod spec can break; every manifest the spawner builds must have
none.
"""

import asyncio
import os
import tempfile
from types import SimpleNamespace

import pytest

# kubernetes_asyncio reads KUBECONFIG when imported, and KubeSpawner loads it even when
# mocked: give it a config for a cluster that does not exist (nothing listens on port 1).
_KUBECONFIG = tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=False)
_KUBECONFIG.write("""
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: none, user: {token: not-a-secret}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: default}}]
current-context: none
""")
_KUBECONFIG.close()
os.environ.setdefault("KUBECONFIG", _KUBECONFIG.name)

from jupyterhub.spawner import SpawnException  # noqa: E402
from kubernetes_asyncio.client import ApiClient  # noqa: E402

from spawner.kube import StreamlitKubeSpawner  # noqa: E402
from tests.helpers.pss import restricted_violations  # noqa: E402

POLICY = """
profiles:
  small:  {display_name: "Small", cpu_guarantee: 0.25, cpu_limit: 1, mem_guarantee: 512M, mem_limit: 2G}
  gpu:    {display_name: "GPU", cpu_limit: 4, mem_limit: 16G, gpu: 1,
           node_selector: {pool: gpu}, tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]}
groups:
  analysts: {profiles: [small], max_running_apps: 2, max_apps: 5}
  data-scientists: {profiles: [small, gpu], default_profile: small, max_running_apps: 4, max_apps: 10}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
sources:
  git_hosts: [github.com]
  image_prefixes: [ghcr.io/example/apps/]
"""
SHA = "0123456789abcdef0123456789abcdef01234567"


class Group:
    def __init__(self, name):
        self.name = name


class User:
    def __init__(self, name, groups):
        self.name, self.id, self.url = name, 1, f"/user/{name}/"
        self.groups = [Group(g) for g in groups]
        self.spawners, self.orm_spawners = {}, {}


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return str(p)


def make(policy_file, user, groups, name="demo"):
    """A mocked spawner (KubeSpawner wants a running event loop to build its API client)."""

    async def construct():
        orm = SimpleNamespace(
            name=name, user_options=None, state=None, server=None
        )  # Spawner.name reads it
        return StreamlitKubeSpawner(
            _mock=True, user=User(user, groups), orm_spawner=orm, policy_file=policy_file
        )

    return asyncio.run(construct())


def build(policy_file, user, groups, options, name="demo"):
    sp = make(policy_file, user, groups, name)
    sp.user_options = options

    async def go():
        opts = sp.validated_options()
        sp.app_profile_spec = sp.admit(opts)
        sp.app_entry = sp.resolve_app_entry(opts)
        await sp.load_user_options()
        pod = await sp.get_pod_manifest()
        return ApiClient().sanitize_for_serialization(pod)

    return sp, asyncio.run(go())


def test_pod_meets_the_restricted_pod_security_standard(policy_file):
    _, pod = build(policy_file, "alice", ["analysts"], {"path": "apps/demo/app.py"})
    assert restricted_violations(pod) == []
    c = pod["spec"]["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "scratch", "mountPath": "/tmp"} in c["volumeMounts"]


def test_the_checker_itself_catches_violations():
    bad = {
        "spec": {
            "hostNetwork": True,
            "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "x", "securityContext": {"privileged": True}}],
        }
    }
    found = restricted_violations(bad)
    assert any("hostNetwork" in f for f in found) and any("hostPath" in f for f in found)
    assert any("privileged" in f for f in found) and any("drop ALL" in f for f in found)


def test_resources_labels_and_command_follow_the_admitted_profile(policy_file):
    _sp, pod = build(
        policy_file, "bob", ["data-scientists"], {"path": "apps/demo/app.py", "profile": "gpu"}
    )
    c = pod["spec"]["containers"][0]
    assert c["resources"]["limits"]["cpu"] == 4.0 or str(c["resources"]["limits"]["cpu"]) in (
        "4",
        "4.0",
    )
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert pod["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    labels = pod["metadata"]["labels"]
    assert labels["streamlit-hub.io/owner"] == "bob" and labels["streamlit-hub.io/app"] == "demo"
    assert labels["streamlit-hub.io/profile"] == "gpu"
    assert pod["metadata"]["annotations"]["streamlit-hub.io/owner"] == "bob"
    # KubeSpawner passes the command as container args (the image's entrypoint runs it)
    assert c["args"] == ["python", "-m", "spawner.app_server"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["STREAMLIT_HUB_ENTRY"] == "/home/analyst/apps/demo/app.py"
    assert env["STREAMLIT_HUB_PROFILE"] == "gpu" and env["HOME"] == "/home/analyst"


def test_default_profile_and_its_resources(policy_file):
    _, pod = build(policy_file, "alice", ["analysts"], {})
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    requests = pod["spec"]["containers"][0]["resources"]["requests"]
    assert str(limits["memory"]) in ("2147483648", "2G", "2Gi")
    assert str(requests["memory"]) in ("536870912", "512M", "512Mi")


def test_profile_list_is_the_users_allowed_profiles(policy_file):
    sp, _ = build(policy_file, "alice", ["analysts"], {})
    assert [p["slug"] for p in sp.profile_list(sp)] == ["small"]
    sp, _ = build(policy_file, "bob", ["data-scientists"], {})
    assert [p["slug"] for p in sp.profile_list(sp)] == ["small", "gpu"]


def test_a_profile_outside_the_group_is_refused_before_any_pod(policy_file):
    with pytest.raises(SpawnException) as e:
        build(policy_file, "alice", ["analysts"], {"profile": "gpu"})
    assert e.value.status_code == 403 and "'GPU' is not one of them" in e.value.message


@pytest.mark.parametrize("path", ["../x.py", "/etc/x.py", "apps/a/app.txt"])
def test_unsafe_entry_paths_are_refused_without_looking_at_the_volume(policy_file, path):
    from spawner.names import EntryPathError

    sp = make(policy_file, "alice", ["analysts"])
    with pytest.raises(EntryPathError):
        sp.resolve_app_entry(sp.validated_options().__class__(path=path))


def test_home_is_one_pvc_per_user_and_kept(policy_file):
    sp, pod = build(policy_file, "alice", ["analysts"], {})

    async def pvc_manifest():
        return ApiClient().sanitize_for_serialization(sp.get_pvc_manifest())

    pvc = asyncio.run(pvc_manifest())
    assert pvc["metadata"]["name"] == "home-alice"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "home")
    assert claim["persistentVolumeClaim"]["claimName"] == "home-alice"
    other, _ = build(policy_file, "alice", ["analysts"], {}, name="other")
    assert other.pvc_name == "home-alice"  # every app of alice mounts the same home


def test_no_secret_is_a_literal_in_the_pod(policy_file):
    """(tests/unit/test_kube_credentials.py reads the whole pod for the credentials put in)"""
    _, pod = build(policy_file, "alice", ["analysts"], {})
    env = pod["spec"]["containers"][0]["env"]
    token = next(e for e in env if e["name"] == "JUPYTERHUB_API_TOKEN")
    assert "value" not in token and token["valueFrom"]["secretKeyRef"]["key"] == token["name"]
    secretish = [
        e["name"]
        for e in env
        if "value" in e
        and any(w in e["name"] for w in ("SECRET", "PASSWORD", "CRYPT", "PRIVATE", "KEY"))
    ]
    assert secretish == []
    assert not any("token" in a.lower() for a in pod["spec"]["containers"][0].get("args") or [])


def _env(container) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def test_git_source_clones_the_pinned_commit_in_a_restricted_init_container(policy_file):
    sp, pod = build(
        policy_file,
        "alice",
        ["analysts"],
        {
            "source": "git",
            "repo": "https://github.com/example/sales.git",
            "ref": SHA,
            "path": "dash/app.py",
        },
    )
    assert restricted_violations(pod) == []
    (init,) = pod["spec"]["initContainers"]
    assert init["name"] == "git-clone" and init["image"] == "alpine/git:2.47.2"
    assert _env(init)["REPO"] == "https://github.com/example/sales.git" and _env(init)["REF"] == SHA
    assert "https://github.com" not in " ".join(init["command"])  # data via env, not shell text
    main = pod["spec"]["containers"][0]
    assert {"name": "app-source", "mountPath": "/app", "readOnly": True} in main["volumeMounts"]
    assert _env(main)["STREAMLIT_HUB_ENTRY"] == "/app/dash/app.py"
    assert any(v["name"] == "app-source" and "emptyDir" in v for v in pod["spec"]["volumes"])
    assert pod["metadata"]["annotations"]["streamlit-hub.io/source"] == "git"
    # the traits are back as they were: the next start of this spawner has no init container
    assert sp.init_containers == [] and not any(v["name"] == "app-source" for v in sp.volumes)


def test_image_source_runs_the_apps_image(policy_file):
    sp, pod = build(
        policy_file,
        "alice",
        ["analysts"],
        {"source": "image", "image": "ghcr.io/example/apps/alice-sales:1a2b3c"},
    )
    assert restricted_violations(pod) == []
    main = pod["spec"]["containers"][0]
    assert main["image"] == "ghcr.io/example/apps/alice-sales:1a2b3c"
    assert _env(main)["STREAMLIT_HUB_ENTRY"] == "/app/app.py"
    assert sp.image != "ghcr.io/example/apps/alice-sales:1a2b3c"


@pytest.mark.parametrize(
    "options, words",
    [
        (
            {"source": "git", "repo": "https://gitlab.evil.example/x/y.git", "ref": SHA},
            "may not be cloned from gitlab.evil.example",
        ),
        (
            {"source": "image", "image": "docker.io/evil/miner:1"},
            "not from a registry the group policy allows",
        ),
    ],
)
def test_sources_outside_the_policy_allow_lists_are_refused(policy_file, options, words):
    with pytest.raises(SpawnException) as e:
        build(policy_file, "alice", ["analysts"], options)
    assert e.value.status_code == 403 and words in e.value.message


def test_app_secrets_come_from_a_secret_by_name_never_as_literals(policy_file):
    _, pod = build(policy_file, "alice", ["analysts"], {}, name="sales")
    main = pod["spec"]["containers"][0]
    assert main["envFrom"] == [{"secretRef": {"name": "app-secrets-alice-sales", "optional": True}}]


def test_the_local_spawner_says_git_and_image_need_kubernetes():
    from spawner.local import StreamlitLocalSpawner
    from spawner.names import EntryPathError
    from spawner.options import parse_user_options

    opts = parse_user_options({"source": "image", "image": "ghcr.io/example/apps/x:1"})
    with pytest.raises(EntryPathError, match="runs on Kubernetes only"):
        StreamlitLocalSpawner.resolve_app_entry(SimpleNamespace(), opts)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"profile": "gpu"},
        {"source": "git", "repo": "https://github.com/example/sales.git", "ref": SHA},
        {"source": "image", "image": "ghcr.io/example/apps/alice-sales:1a2b3c"},
    ],
    ids=["home", "gpu-profile", "git", "image"],
)
def test_every_generated_object_is_strictly_valid_kubernetes(policy_file, options):
    from tests.helpers.k8s_models import problems

    sp, pod = build(policy_file, "bob", ["data-scientists"], options)
    assert problems(pod, "V1Pod") == []

    async def pvc():
        return ApiClient().sanitize_for_serialization(sp.get_pvc_manifest())

    assert problems(asyncio.run(pvc()), "V1PersistentVolumeClaim") == []


def test_the_strict_validator_rejects_unknown_and_mistyped_fields():
    from tests.helpers.k8s_models import problems

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x", "labelz": {}},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "securityContext": {"runAsUser": "1000"},
                    "resources": {"limits": {"cpu": "1"}},
                    "imagePullPolicyy": "Never",
                }
            ]
        },
    }
    found = problems(pod, "V1Pod")
    assert ".metadata.labelz: unknown field of V1ObjectMeta" in found
    assert ".spec.containers[0].imagePullPolicyy: unknown field of V1Container" in found
    assert ".spec.containers[0].securityContext.runAsUser: expected int, got str" in found


def test_progress_shows_our_steps_with_the_pods_events_in_between(policy_file, monkeypatch):
    from kubespawner import KubeSpawner

    from spawner.mixin import StreamlitSpawnerMixin

    async def pod_events(self):
        for p, msg in (
            (30, "Successfully assigned default/jupyter-alice to node-1"),
            (50, 'Pulling image "ghcr.io/example/jupyterhub-streamlit-app:0.1.0"'),
            (63, "Started container notebook"),
        ):
            await asyncio.sleep(0.01)
            yield {"progress": p, "message": msg, "raw_event": {"type": "Normal"}}

    async def our_steps(self):
        yield {"progress": 10, "message": "Validating the app and its options"}
        yield {"progress": 30, "message": "Starting Streamlit for demo"}
        await asyncio.sleep(0.1)
        yield {"progress": 60, "message": "Waiting for the app to answer"}
        yield {"progress": 100, "message": "App is ready"}

    monkeypatch.setattr(KubeSpawner, "progress", pod_events)
    monkeypatch.setattr(StreamlitSpawnerMixin, "progress", our_steps)
    sp = make(policy_file, "alice", ["analysts"])

    async def collect():
        return [e async for e in sp.progress()]

    events = asyncio.run(collect())
    messages = [e["message"] for e in events]
    assert (
        messages.index("Starting Streamlit for demo")
        < messages.index('Pulling image "ghcr.io/example/jupyterhub-streamlit-app:0.1.0"')
        < messages.index("Waiting for the app to answer")
    )
    bars = [e["progress"] for e in events]
    assert (
        bars == sorted(bars)
        and bars[-1] == 100
        and all(30 <= b <= 60 for b, m in zip(bars, messages, strict=False) if "container" in m)
    )
    assert all("raw_event" not in e for e in events)


def test_the_pod_itself_runs_as_non_root_not_only_its_containers(policy_file):
    # Meant (issue 18, survivor 7): the restricted Pod Security Standard accepts runAsNonRoot
    # on every container instead, but a container added later (a sidecar an operator adds
    # through extra_containers, an init container) inherits the pod's setting; without it,
    # that container may run as root. So the pod level carries it, and this test says so.
    for options in (
        {},
        {"source": "git", "repo": "https://github.com/example/sales.git", "ref": SHA},
    ):
        _, pod = build(policy_file, "alice", ["analysts"], options)
        ctx = pod["spec"]["securityContext"]
        assert ctx["runAsNonRoot"] is True
        assert (ctx["runAsUser"], ctx["runAsGroup"], ctx["fsGroup"]) == (1000, 1000, 1000)
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            assert c["securityContext"]["runAsNonRoot"] is True


def test_the_restricted_security_contexts_exactly():
    from spawner.kube import restricted_container_security_context, restricted_pod_security_context

    assert restricted_pod_security_context(1001, 1002) == {
        "runAsNonRoot": True,
        "runAsUser": 1001,
        "runAsGroup": 1002,
        "fsGroup": 1002,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert restricted_container_security_context(1001, 1002) == {
        "runAsNonRoot": True,
        "runAsUser": 1001,
        "runAsGroup": 1002,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_profile_overrides_exactly():
    from spawner.kube import profile_overrides
    from spawner.policy import Profile

    assert profile_overrides(Profile("bare", "Bare")) == {}
    full = Profile(
        "gpu",
        "GPU",
        cpu_guarantee=0.5,
        cpu_limit=4,
        mem_guarantee=2**30,
        mem_limit=16 * 2**30,
        gpu=2,
        node_selector={"pool": "gpu"},
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists"},),
        image="ghcr.io/example/gpu:1",
    )
    o = profile_overrides(full)
    assert o == {
        "cpu_guarantee": 0.5,
        "cpu_limit": 4.0,
        "mem_guarantee": "1G",
        "mem_limit": "16G",
        "extra_resource_limits": {"nvidia.com/gpu": "2"},
        "node_selector": {"pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        "image": "ghcr.io/example/gpu:1",
    }
    assert type(o["cpu_limit"]) is float and type(o["tolerations"]) is list
    assert o["node_selector"] is not full.node_selector  # a copy: KubeSpawner may change it
    # zero is a value, not "unset"
    zero = profile_overrides(
        Profile("z", "Z", cpu_guarantee=0, cpu_limit=0, mem_guarantee=0, mem_limit=0)
    )
    assert zero == {"cpu_guarantee": 0.0, "cpu_limit": 0.0, "mem_guarantee": "0", "mem_limit": "0"}


def test_the_pod_is_made_without_changing_the_spawners_settings(policy_file):
    """get_pod_manifest changes the pod KubeSpawner returns, never the spawner around the call:
    a concurrent reader (the hub's API, a hook) sees its settings as configured."""
    from traitlets import All

    for options in (
        {},
        {"source": "git", "repo": "https://github.com/example/sales.git", "ref": SHA},
        {"source": "image", "image": "ghcr.io/example/apps/alice-sales:1a2b3c"},
    ):
        sp = make(policy_file, "alice", ["analysts"])
        sp.user_options = options

        async def go(sp=sp):
            opts = sp.validated_options()
            sp.app_profile_spec = sp.admit(opts)
            sp.app_entry = sp.resolve_app_entry(opts)
            await sp.load_user_options()
            changed = []
            sp.observe(lambda change: changed.append(change.name), names=All)
            await sp.get_pod_manifest()
            return changed

        assert asyncio.run(go()) == [], options


def test_the_image_source_is_the_images_name_in_the_environment_too(policy_file):
    _, pod = build(
        policy_file,
        "alice",
        ["analysts"],
        {"source": "image", "image": "ghcr.io/example/apps/alice-sales:1a2b3c"},
    )
    env = _env(pod["spec"]["containers"][0])
    assert (
        env["JUPYTER_IMAGE"]
        == env["JUPYTER_IMAGE_SPEC"]
        == "ghcr.io/example/apps/alice-sales:1a2b3c"
    )


def test_the_profile_list_is_the_forms_choices_default_first(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        POLICY.replace(
            "data-scientists: {profiles: [small, gpu], default_profile: small,",
            "data-scientists: {profiles: [gpu, small], default_profile: small,",
        )
    )
    sp, _ = build(str(policy), "bob", ["data-scientists"], {})
    profiles = sp.profile_list(sp)
    assert [(p["slug"], p["display_name"]) for p in profiles] == sp.profile_choices()
    assert [(p["slug"], p["default"]) for p in profiles] == [("small", True), ("gpu", False)]
    assert profiles[1]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}


def test_the_app_source_is_a_value_the_spawner_keeps_for_this_start(policy_file):
    from spawner.options import AppSource

    sp, _ = build(
        policy_file,
        "alice",
        ["analysts"],
        {"source": "git", "repo": "https://github.com/example/sales.git", "ref": SHA},
    )
    assert sp.app_source == AppSource(
        "git", repo="https://github.com/example/sales.git", ref=SHA, git_image="alpine/git:2.47.2"
    )
    sp.resolve_app_entry(sp.validated_options().__class__(path="apps/x/app.py"))
    assert sp.app_source == AppSource()  # a later start from the home has no leftover
