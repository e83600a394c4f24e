"""App secrets on streamlit-kube, end to end against the Kubernetes API **test double**
(tests/helpers/kube_double.py: not a cluster; its kubelet resolves ``secretKeyRef`` as a
kubelet does). #16 point 5.

The real hub runs in kubernetes mode with ``JUPYTERHUB_CRYPT_KEY`` set (as the chart sets it):
alice sets a secret through the hub API, starts her app, and the app finds it in its
environment; the pod refers to the app's credentials Secret for it and holds no value; the
store uses JupyterHub's key (no key file of the hub's own); the Secret is gone after the stop.
"""

import base64
import hashlib
import json
import secrets
import textwrap
import time

import pytest

from tests.helpers.kube_hub import k8s, kube_hub
from tests.helpers.streamlit_ws import session, ws_url
from tests.integration.test_kube_e2e import POLICY

pytestmark = pytest.mark.integration

VALUE = "pw-" + secrets.token_hex(12) + "\nsecond line"
APP = textwrap.dedent(
    """
    import hashlib, os
    import streamlit as st
    got = os.environ.get("DB_PASSWORD")
    ok = got is not None and hashlib.sha256(got.encode()).hexdigest() == "{digest}"
    st.write("secret matches" if ok else "secret missing" if got is None else "secret differs")
    """
).replace("{digest}", hashlib.sha256(VALUE.encode()).hexdigest())


def test_a_secret_reaches_the_pod_by_reference_only(tmp_path, double):
    home = double["workdir"] / "pvc" / "home-alice" / "apps" / "vault"
    home.mkdir(parents=True)
    (home / "app.py").write_text(APP)
    hub = kube_hub(tmp_path / "h", double, POLICY, {"JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32)})
    hub.start()
    try:
        alice = hub.login("alice")
        r = alice.put(f"{hub.url}/hub/api/users/alice/servers/vault", json={}, timeout=30)
        assert r.status_code in (200, 201), r.text
        api = f"{hub.url}/hub/api/streamlit/apps/alice/vault/secrets"
        r = alice.put(api + "/DB_PASSWORD", json={"value": VALUE}, timeout=10)
        assert r.status_code == 200, r.text
        hub.start_app(alice, "alice", "vault", {"path": "apps/vault/app.py"})

        (pod,) = k8s(double, "/api/v1/namespaces/default/pods")["items"]
        (secret,) = k8s(double, "/api/v1/namespaces/default/secrets")["items"]
        assert secret["metadata"]["name"] == pod["metadata"]["name"] + "-credentials"
        assert base64.b64decode(secret["data"]["app-secret.DB_PASSWORD"]).decode() == VALUE
        (main,) = pod["spec"]["containers"]
        env = {e["name"]: e for e in main["env"]}
        assert env["DB_PASSWORD"] == {
            "name": "DB_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {
                    "name": secret["metadata"]["name"],
                    "key": "app-secret.DB_PASSWORD",
                }
            },
        }
        spec = json.dumps(pod)
        assert VALUE not in spec and json.dumps(VALUE)[1:-1] not in spec
        assert VALUE.split("\n")[0] not in spec

        hub.open_app(alice, "alice", "vault")
        out = session(
            ws_url(hub.app_origin("alice"), "/user/alice/vault/"),
            {"Cookie": hub.app_cookie_header(alice, "alice", "vault")},
        )
        assert any('"secret matches"' in t for t in out["texts"]), out

        store = hub.data_dir / "app-secrets"
        assert not (store / "hub.key").exists()  # JupyterHub's key (JUPYTERHUB_CRYPT_KEY)
        assert VALUE.split("\n")[0].encode() not in (store / "alice" / "vault.json").read_bytes()
        assert VALUE.split("\n")[0] not in hub.log_path.read_text(errors="replace")

        hub.stop_app(alice, "alice", "vault")
        deadline = time.monotonic() + 30
        while (
            k8s(double, "/api/v1/namespaces/default/secrets")["items"]
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert k8s(double, "/api/v1/namespaces/default/secrets")["items"] == []
        listed = alice.get(api, timeout=10).json()
        assert [s["name"] for s in listed["secrets"]] == ["DB_PASSWORD"]  # kept for next start
    finally:
        left = hub.stop()
    assert left == [], f"processes left behind: {left}"
