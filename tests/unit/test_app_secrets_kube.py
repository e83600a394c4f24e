"""App secrets on Kubernetes (#16 point 5): the owner's secrets reach the app container as env
entries that refer to the app's credentials Secret (``secretKeyRef``, keys
``app-secret.<NAME>``), never as values in the pod spec; the Secret holding them is made
before the pod and deleted when the app stops, through the spawner's own API calls (the
recording fake of tests/unit/test_kube_credentials.py). tests/integration/test_app_secrets_kube.py
shows the same through a real hub and the Kubernetes API double.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets

import pytest
from traitlets.config import Config

from spawner import app_secrets
from spawner.app_secrets import AppSecretStore
from tests.unit import test_kube_credentials as creds
from tests.unit.test_kube_credentials import (
    ApiException,
    pod_stop_is_a_no_op,  # noqa: F401 (a fixture)
)

VALUE = "pw-" + secrets.token_hex(16) + "\nline two"
KEY = secrets.token_bytes(32)


@pytest.fixture
def policy_file(tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(creds.POLICY)
    return str(p)


@pytest.fixture
def store(tmp_path):
    s = AppSecretStore(tmp_path / "app-secrets", crypt_keys=[KEY])
    app_secrets.use_store(s)
    yield s
    app_secrets.use_store(None)


def build(policy_file, config=None, name="sales"):
    sp = creds.spawner(policy_file, config, name=name)
    return sp, asyncio.run(creds.manifest(sp, {}))


def test_the_pod_refers_to_the_secrets_and_holds_no_value(policy_file, store):
    store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    store.set("alice", "sales", "GIT_TOKEN", "ghp-" + "x" * 20, by="alice")
    sp, pod = build(policy_file)
    text = json.dumps(creds.plain(pod))
    assert VALUE not in text and json.dumps(VALUE)[1:-1] not in text and "ghp-" not in text
    main = creds.plain(pod)["spec"]["containers"][0]
    refs = {e["name"]: e.get("valueFrom") for e in main["env"]}
    secret = sp.credentials_secret_name()
    assert refs["DB_PASSWORD"] == {
        "secretKeyRef": {"name": secret, "key": "app-secret.DB_PASSWORD"}
    }
    assert refs["GIT_TOKEN"] == {"secretKeyRef": {"name": secret, "key": "app-secret.GIT_TOKEN"}}
    data = {
        k: base64.b64decode(v).decode()
        for k, v in creds.plain(sp.credentials_secret_manifest())["data"].items()
    }
    assert data["app-secret.DB_PASSWORD"] == VALUE
    assert set(data) == {"JUPYTERHUB_API_TOKEN", "app-secret.DB_PASSWORD", "app-secret.GIT_TOKEN"}


def test_only_this_apps_secrets(policy_file, store):
    store.set("alice", "costs", "COSTS_ONLY", VALUE, by="alice")
    store.set("bob", "sales", "BOBS", VALUE, by="bob")
    sp, pod = build(policy_file)
    names = {e["name"] for e in creds.plain(pod)["spec"]["containers"][0]["env"]}
    assert not names & {"COSTS_ONLY", "BOBS"}
    assert VALUE not in json.dumps(creds.plain(sp.credentials_secret_manifest()))


def test_no_secrets_no_change(policy_file, store):
    sp, _ = build(policy_file)
    assert not [k for k in sp._app_credentials if k.startswith("app-secret.")]


def test_the_owners_secret_replaces_a_configured_variable_of_the_same_name(policy_file, store):
    c = Config()
    c.KubeSpawner.environment = {"REGION": "eu", "DB_HOST": "db.internal"}
    store.set("alice", "sales", "REGION", "us", by="alice")
    _, pod = build(policy_file, c)
    env = creds.plain(pod)["spec"]["containers"][0]["env"]
    region = [e for e in env if e["name"] == "REGION"]
    assert len(region) == 1 and "valueFrom" in region[0]
    assert {"name": "DB_HOST", "value": "db.internal"} in env


def test_the_secret_is_made_before_the_pod_and_deleted_at_stop(
    policy_file,
    store,
    pod_stop_is_a_no_op,  # noqa: F811
):
    store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    api = creds.FakeApi()
    sp = creds.spawner(policy_file)
    sp.api = api
    name = sp.credentials_secret_name()
    pod = asyncio.run(creds.manifest(sp, {}))
    assert asyncio.run(sp._make_create_pod_request(pod, 5)) is True
    assert api.calls == [("create", "secrets", name), ("create", "pods", sp.pod_name)]
    assert api.secret_data(name)["app-secret.DB_PASSWORD"] == VALUE
    assert VALUE not in json.dumps(api.created_pods)
    asyncio.run(sp.stop())
    assert api.calls[-1] == ("delete", "secrets", name) and api.secrets == {}


def test_a_secret_the_hubs_keys_cannot_open_refuses_the_start_before_any_api_call(
    policy_file, store, tmp_path, caplog
):
    from jupyterhub.spawner import SpawnException

    store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    app_secrets.use_store(AppSecretStore(store.folder, crypt_keys=[secrets.token_bytes(32)]))
    caplog.set_level(logging.DEBUG)
    api = creds.FakeApi()
    sp = creds.spawner(policy_file)
    sp.api = api
    with pytest.raises(SpawnException) as e:
        asyncio.run(creds.manifest(sp, {}))
    assert "DB_PASSWORD" in e.value.message and api.calls == []
    assert VALUE not in caplog.text


def test_a_refused_pod_is_logged_without_a_secret(policy_file, store, caplog):
    """KubeSpawner logs the whole pod when its creation fails: refs only."""
    store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    caplog.set_level(logging.DEBUG)
    sp = creds.spawner(policy_file)
    sp.log.setLevel(logging.DEBUG)
    sp.api = creds.FakeApi()
    sp.api.create_namespaced_pod = creds._raise_500
    pod = asyncio.run(creds.manifest(sp, {}))
    with pytest.raises(ApiException):
        asyncio.run(sp._make_create_pod_request(pod, 5))
    assert any("Failed for" in r.getMessage() for r in caplog.records)
    assert VALUE not in caplog.text and VALUE.split("\n")[0] not in caplog.text
