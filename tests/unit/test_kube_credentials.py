"""No credential in an app pod's spec (issue #16, point 3).

JupyterHub hands the app server's API token to the spawner in ``get_env()``; KubeSpawner would
put it (and ``JPY_API_TOKEN``, and whatever ``environment``/``env_keep`` bring) into the pod
spec as literals, readable by anyone who may ``get pods``. streamlit-kube moves every
credential into a per-app Secret created right before the pod and deleted when the app stops,
and refers to it (``secretKeyRef``). These read the whole pod (every env value, annotation,
label, argument, init and extra container) for the credentials put into it, drive the
Secret's life through the spawner's own API calls (a recording fake of the Kubernetes API),
check that nothing is logged, and hold the calls made against the Role the chart gives the hub.
tests/integration/test_kube_e2e.py shows the same against the Kubernetes API double.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets

import pytest
from traitlets.config import Config

from tests.helpers.pss import restricted_violations
from tests.unit import test_kube_manifest

# (test_kube_manifest points KUBECONFIG at a cluster that does not exist before
# kubernetes_asyncio is first imported: it reads the variable then)
POLICY, SHA, make = test_kube_manifest.POLICY, test_kube_manifest.SHA, test_kube_manifest.make

from kubernetes_asyncio.client import ApiClient  # noqa: E402
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: E402

TOKEN = "hubtoken-" + secrets.token_hex(16)
PASSWORD = "db-" + secrets.token_hex(8)
KEPT = "kept-" + secrets.token_hex(8)
INIT_SECRET = "init-" + secrets.token_hex(8)
EXTRA_SECRET = "extra-" + secrets.token_hex(8)
CREDENTIALS = (TOKEN, PASSWORD, KEPT, INIT_SECRET, EXTRA_SECRET)


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return str(p)


def spawner(policy_file, config=None, user="alice", groups=("analysts",), name="sales"):
    from spawner.kube import StreamlitKubeSpawner

    original = StreamlitKubeSpawner.__init__

    def init(self, *a, **kw):
        original(self, *a, config=config or Config(), **kw)

    StreamlitKubeSpawner.__init__ = init
    try:
        sp = make(policy_file, user, list(groups), name)
    finally:
        StreamlitKubeSpawner.__init__ = original
    sp.api_token = TOKEN
    return sp


async def manifest(sp, options):
    sp.user_options = options
    opts = sp.validated_options()
    sp.app_profile_spec = sp.admit(opts)
    sp.app_entry = sp.resolve_app_entry(opts)
    await sp.load_user_options()
    return await sp.get_pod_manifest()


RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def hostile_config() -> Config:
    """Credentials from every place configuration can put env into a pod (the containers an
    operator adds keep their own security context: the spawner does not write theirs)."""
    c = Config()
    c.KubeSpawner.environment = {"WAREHOUSE_PASSWORD": PASSWORD, "PLAIN": "not-secret"}
    c.KubeSpawner.env_keep = ["SOME_API_KEY"]
    c.KubeSpawner.init_containers = [
        {
            "name": "warm-cache",
            "image": "busybox:1.36",
            "env": [{"name": "CACHE_TOKEN", "value": INIT_SECRET}],
            "securityContext": RESTRICTED,
        }
    ]
    c.KubeSpawner.extra_containers = [
        {
            "name": "sidecar",
            "image": "busybox:1.36",
            "env": [{"name": "SIDECAR_SECRET", "value": EXTRA_SECRET}],
            "securityContext": RESTRICTED,
        }
    ]
    return c


@pytest.fixture
def kept_in_hub_env(monkeypatch):
    monkeypatch.setenv("SOME_API_KEY", KEPT)


def plain(obj):
    """A Kubernetes model object as its JSON form (the API client wants an event loop)."""

    async def go():
        return ApiClient().sanitize_for_serialization(obj)

    return asyncio.run(go())


def walk(obj, path=""):
    """Every string in a JSON document, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(k, f"{path}.<key>")
            yield from walk(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk(v, f"{path}[{i}]")
    elif isinstance(obj, str):
        yield path, obj


@pytest.mark.parametrize(
    "options",
    [
        {"path": "apps/sales/app.py"},
        {"source": "git", "repo": "https://github.com/example/sales.git", "ref": SHA},
    ],
    ids=["home", "git"],
)
def test_the_whole_pod_manifest_holds_no_credential(policy_file, kept_in_hub_env, options):
    sp = spawner(policy_file, hostile_config())
    pod = plain(asyncio.run(manifest(sp, options)))

    found = [(path, s[:12]) for path, s in walk(pod) for c in CREDENTIALS if c in s]
    assert found == [], f"credentials in the pod spec: {found}"
    # ... and they are there by reference, all to the one per-app Secret
    secret = sp.credentials_secret_name()
    containers = [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for c in containers
        for e in c.get("env") or []
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert set(refs) == {
        "JUPYTERHUB_API_TOKEN",
        "WAREHOUSE_PASSWORD",
        "SOME_API_KEY",
        "CACHE_TOKEN",
        "SIDECAR_SECRET",
    }
    assert {r["name"] for r in refs.values()} == {secret}
    main = pod["spec"]["containers"][0]
    names = [e["name"] for e in main["env"]]
    assert "JPY_API_TOKEN" not in names  # the deprecated copy is gone, not just moved
    assert {"name": "PLAIN", "value": "not-secret"} in main["env"]  # the rest stays as it was
    assert restricted_violations(pod) == []
    # the Secret holds what the pod no longer does
    data = {
        k: base64.b64decode(v).decode()
        for k, v in plain(sp.credentials_secret_manifest())["data"].items()
    }
    assert data == {
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "WAREHOUSE_PASSWORD": PASSWORD,
        "SOME_API_KEY": KEPT,
        "CACHE_TOKEN": INIT_SECRET,
        "SIDECAR_SECRET": EXTRA_SECRET,
    }


def test_the_secret_is_per_app_immutable_and_labelled_for_its_owner(policy_file):
    from tests.helpers.k8s_models import problems

    sp = spawner(policy_file)
    asyncio.run(manifest(sp, {}))
    other = spawner(policy_file, name="costs")
    asyncio.run(manifest(other, {}))
    secret = plain(sp.credentials_secret_manifest())
    assert problems(secret, "V1Secret") == []
    assert secret["metadata"]["name"] == f"{sp.pod_name}-credentials"
    assert other.credentials_secret_name() != sp.credentials_secret_name()
    assert secret["immutable"] is True and secret["type"] == "Opaque"
    labels = secret["metadata"]["labels"]
    assert labels["streamlit-hub.io/owner"] == "alice" and labels["streamlit-hub.io/app"] == "sales"
    assert labels["streamlit-hub.io/credentials"] == "app-server"
    assert secret["metadata"]["annotations"] == {"streamlit-hub.io/pod": sp.pod_name}


def test_a_credential_a_modify_pod_hook_adds_is_moved_too(policy_file):
    """The Secret is made from the pod about to be created, after KubeSpawner's hook."""
    api = FakeApi()
    sp = spawner(policy_file)
    sp.api = api
    pod = asyncio.run(manifest(sp, {}))
    pod.spec.containers[0].env.append(
        type(pod.spec.containers[0].env[0])(name="HOOK_TOKEN", value=PASSWORD)
    )
    assert asyncio.run(sp._make_create_pod_request(pod, 5)) is True
    created = api.created_pods[0]
    assert PASSWORD not in json.dumps(created)
    assert api.secret_data(sp.credentials_secret_name())["HOOK_TOKEN"] == PASSWORD


# ---- the Secret's life, through the spawner's own API calls ---------------------------------
class FakeApi:
    """Records the Kubernetes API calls the spawner makes (only those it makes)."""

    def __init__(self, pod_conflicts=0, secret_status=None):
        self.calls: list[tuple[str, str, str]] = []  # (verb, resource, name)
        self.secrets: dict[str, dict] = {}
        self.created_pods: list[dict] = []
        self.pod_conflicts = pod_conflicts
        self.secret_status = secret_status

    async def create_namespaced_secret(self, namespace, body):
        body = ApiClient().sanitize_for_serialization(body)
        name = body["metadata"]["name"]
        self.calls.append(("create", "secrets", name))
        if self.secret_status:
            raise ApiException(status=self.secret_status, reason="Forbidden")
        if name in self.secrets:
            raise ApiException(status=409, reason="AlreadyExists")
        self.secrets[name] = body

    async def delete_namespaced_secret(self, name, namespace):
        self.calls.append(("delete", "secrets", name))
        if self.secrets.pop(name, None) is None:
            raise ApiException(status=404, reason="NotFound")

    async def create_namespaced_pod(self, namespace, body):
        body = ApiClient().sanitize_for_serialization(body)
        self.calls.append(("create", "pods", body["metadata"]["name"]))
        if self.pod_conflicts:
            self.pod_conflicts -= 1
            raise ApiException(status=409, reason="AlreadyExists")
        for e in body["spec"]["containers"][0].get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            assert not ref or ref["name"] in self.secrets, "the pod came before its Secret"
        self.created_pods.append(body)

    def secret_data(self, name):
        return {k: base64.b64decode(v).decode() for k, v in self.secrets[name]["data"].items()}


@pytest.fixture
def pod_stop_is_a_no_op(monkeypatch):
    """KubeSpawner.stop deletes the pod and waits for its reflector: not what is tested here."""
    from kubespawner import KubeSpawner

    stopped = []

    async def stop(self, now=False):
        stopped.append(now)

    monkeypatch.setattr(KubeSpawner, "stop", stop)
    return stopped


def test_the_secret_is_created_before_the_pod_and_deleted_when_the_app_stops(
    policy_file, pod_stop_is_a_no_op
):
    api = FakeApi()
    sp = spawner(policy_file)
    sp.api = api
    name = sp.credentials_secret_name()
    pod = asyncio.run(manifest(sp, {}))
    assert asyncio.run(sp._make_create_pod_request(pod, 5)) is True
    assert api.calls == [("create", "secrets", name), ("create", "pods", sp.pod_name)]
    assert api.secret_data(name)["JUPYTERHUB_API_TOKEN"] == TOKEN
    asyncio.run(sp.stop())
    assert pod_stop_is_a_no_op == [False]
    assert api.calls[-1] == ("delete", "secrets", name) and api.secrets == {}
    asyncio.run(sp.stop(now=True))  # stopping again (the hub's cleanup): nothing left, no error
    assert api.secrets == {}


def test_a_pod_in_the_way_is_stopped_and_the_secret_made_again_before_the_retry(
    policy_file, pod_stop_is_a_no_op
):
    """KubeSpawner answers a 409 for the pod with stop(now=True), which deletes the Secret;
    the next attempt must not create a pod whose Secret is gone."""
    api = FakeApi(pod_conflicts=1)
    sp = spawner(policy_file)
    sp.api = api
    name = sp.credentials_secret_name()
    pod = asyncio.run(manifest(sp, {}))
    assert asyncio.run(sp._make_create_pod_request(pod, 5)) is False  # exponential_backoff retries
    assert asyncio.run(sp._make_create_pod_request(pod, 5)) is True
    assert api.calls == [
        ("create", "secrets", name),
        ("create", "pods", sp.pod_name),
        ("delete", "secrets", name),
        ("create", "secrets", name),
        ("create", "pods", sp.pod_name),
    ]
    assert pod_stop_is_a_no_op == [True]


def test_a_secret_left_by_an_earlier_start_is_replaced_not_reused(policy_file):
    api = FakeApi()
    sp = spawner(policy_file)
    sp.api = api
    name = sp.credentials_secret_name()
    api.secrets[name] = {"data": {"JUPYTERHUB_API_TOKEN": base64.b64encode(b"old").decode()}}
    pod = asyncio.run(manifest(sp, {}))
    assert asyncio.run(sp._make_create_pod_request(pod, 5)) is True
    assert api.secret_data(name)["JUPYTERHUB_API_TOKEN"] == TOKEN
    assert [c[0] for c in api.calls] == ["create", "delete", "create", "create"]


def credentials_in_logs(caplog) -> list[str]:
    text = caplog.text + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.exc_info[1] if r.exc_info else ''}"
        for r in caplog.records
    )
    return [c[:12] for c in CREDENTIALS if c in text]


def test_a_refused_secret_is_reported_without_its_data(policy_file, kept_in_hub_env, caplog):
    caplog.set_level(logging.DEBUG)
    sp = spawner(policy_file, hostile_config())
    sp.log.setLevel(logging.DEBUG)
    sp.api = FakeApi(secret_status=403)
    pod = asyncio.run(manifest(sp, {}))
    with pytest.raises(RuntimeError) as e:
        asyncio.run(sp._make_create_pod_request(pod, 5))
    assert "403" in str(e.value) and "secrets" in str(e.value)
    # not chained to the ApiException (which carries the request and its body)
    assert e.value.__cause__ is None and e.value.__suppress_context__
    assert credentials_in_logs(caplog) == []
    assert not [c for c in CREDENTIALS if c in str(e.value)]


def test_a_refused_pod_is_logged_without_a_credential(policy_file, kept_in_hub_env, caplog):
    """KubeSpawner logs the whole pod (``pod.to_str()``) when its creation fails."""
    caplog.set_level(logging.DEBUG)
    sp = spawner(policy_file, hostile_config())
    sp.log.setLevel(logging.DEBUG)
    sp.api = FakeApi()
    sp.api.create_namespaced_pod = _raise_500
    pod = asyncio.run(manifest(sp, {}))
    with pytest.raises(ApiException):
        asyncio.run(sp._make_create_pod_request(pod, 5))
    assert any("Failed for" in r.getMessage() for r in caplog.records)  # it did log the pod
    assert credentials_in_logs(caplog) == []


async def _raise_500(namespace, body):
    raise ApiException(status=500, reason="Internal error")


def test_the_calls_the_spawner_makes_are_granted_by_the_charts_role(policy_file, monkeypatch):
    """Every secrets/pods call the spawner made above, the Role the chart gives the hub allows
    (rendered by a real Helm with helm-values/values.yaml)."""
    from kubespawner import KubeSpawner

    from tests.helpers.helm import VALUES, render

    async def stop(self, now=False):
        pass

    monkeypatch.setattr(KubeSpawner, "stop", stop)
    api = FakeApi(pod_conflicts=1)
    sp = spawner(policy_file)
    sp.api = api
    pod = asyncio.run(manifest(sp, {}))
    asyncio.run(sp._make_create_pod_request(pod, 5))
    asyncio.run(sp._make_create_pod_request(pod, 5))
    asyncio.run(sp.stop())
    made = {(resource, verb) for verb, resource, _ in api.calls}
    assert {("secrets", "create"), ("secrets", "delete")} <= made

    rendered = render(VALUES, namespace="streamlit-hub")
    binding = rendered.get("RoleBinding", "hub")
    role = rendered.get(binding["roleRef"]["kind"], binding["roleRef"]["name"])
    granted: dict[str, set] = {}
    for rule in role["rules"]:
        if "" in rule.get("apiGroups", []):
            for res in rule["resources"]:
                granted.setdefault(res, set()).update(rule["verbs"])
    assert [(r, v) for r, v in sorted(made) if v not in granted.get(r, set())] == []
