"""The pure builders behind "no credential in a pod spec" (spawner/kube.py), one rule at a time:
what counts as a credential, how it becomes a secretKeyRef, what the Secret's keys are, and the
pod's names for granted volumes (mutation testing, issue 18)."""

import hashlib
import re
from types import SimpleNamespace

import pytest

from tests.unit import test_kube_manifest

# kubernetes_asyncio reads KUBECONFIG when it is first imported: test_kube_manifest sets it
KUBECONFIG = test_kube_manifest._KUBECONFIG

from kubernetes_asyncio.client.models import V1Container, V1EnvVar  # noqa: E402

from spawner.kube import data_volume_name, move_credentials  # noqa: E402

TOKEN = "0123456789abcdef"


def pod(*containers, init=()):
    return SimpleNamespace(
        spec=SimpleNamespace(containers=list(containers), init_containers=list(init))
    )


def ref(e):
    if isinstance(e, dict):
        return e["valueFrom"]["secretKeyRef"]
    return {"name": e.value_from.secret_key_ref.name, "key": e.value_from.secret_key_ref.key}


def test_dict_shaped_containers_are_scrubbed_too():
    """``init_containers`` / ``extra_containers`` from configuration are plain dicts."""
    extra = {"name": "sidecar", "env": [{"name": "API_TOKEN", "value": "s3cr3t-value"}]}
    data = move_credentials(pod(extra), "app-credentials")
    assert data == {"API_TOKEN": "s3cr3t-value"}
    assert extra["env"] == [
        {
            "name": "API_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "app-credentials", "key": "API_TOKEN"}},
        }
    ]


def test_model_and_dict_containers_and_init_containers_all_count():
    app = V1Container(name="app", env=[V1EnvVar(name="DB_PASSWORD", value="pw")])
    init = {"name": "git-clone", "env": [{"name": "GIT_TOKEN", "value": "gt"}]}
    data = move_credentials(pod(app, init=[init]), "s")
    assert data == {"GIT_TOKEN": "gt", "DB_PASSWORD": "pw"}
    assert app.env[0].value is None and ref(app.env[0]) == {"name": "s", "key": "DB_PASSWORD"}


def test_plain_values_and_references_stay():
    env = [
        V1EnvVar(name="STREAMLIT_HUB_ENTRY", value="/app/app.py"),
        V1EnvVar(name="EMPTY_TOKEN", value=None),  # already by reference, or nothing
    ]
    c = V1Container(name="app", env=env)
    assert move_credentials(pod(c), "s") == {}
    assert c.env[0].value == "/app/app.py" and c.env[0].value_from is None


def test_a_value_is_a_credential_when_it_holds_the_token_from_eight_characters():
    c = V1Container(
        name="app",
        env=[
            V1EnvVar(name="JUPYTERHUB_SERVICE_URL", value=f"http://x/?t={TOKEN}"),
            V1EnvVar(name="PLAIN", value="x"),
        ],
    )
    assert move_credentials(pod(c), "s", token=TOKEN) == {
        "JUPYTERHUB_SERVICE_URL": f"http://x/?t={TOKEN}"
    }
    # an eight-character token counts; a shorter one would match too much
    c = V1Container(name="app", env=[V1EnvVar(name="NOTE", value="abcdefgh-in-a-value")])
    assert move_credentials(pod(c), "s", token="abcdefgh") == {"NOTE": "abcdefgh-in-a-value"}
    c = V1Container(name="app", env=[V1EnvVar(name="NOTE", value="abcdefg-in-a-value")])
    assert move_credentials(pod(c), "s", token="abcdefg") == {}
    # no token given: only names decide, and a value is never matched against ""
    c = V1Container(name="app", env=[V1EnvVar(name="NOTE", value="anything")])
    assert move_credentials(pod(c), "s") == {}


def test_a_name_that_is_not_a_valid_secret_key_is_made_one():
    c = V1Container(name="app", env=[V1EnvVar(name="MY TOKEN/1", value="v")])
    assert move_credentials(pod(c), "s") == {"MY_TOKEN_1": "v"}
    assert ref(c.env[0])["key"] == "MY_TOKEN_1"
    c = V1Container(name="app", env=[V1EnvVar(name="my-token.v2", value="v")])
    assert move_credentials(pod(c), "s") == {"my-token.v2": "v"}  # valid as it is


def test_the_same_name_with_two_values_gets_two_keys():
    a = V1Container(name="app", env=[V1EnvVar(name="API_KEY", value="one")])
    b = {"name": "side", "env": [{"name": "API_KEY", "value": "two"}]}
    assert move_credentials(pod(a, b), "s") == {"API_KEY": "one", "API_KEY-2": "two"}


@pytest.mark.parametrize("length", [58, 59])  # "data-" + claim: 63 and 64 characters
def test_a_volume_name_is_data_claim_up_to_63_characters(length):
    claim = "c" * length
    name = data_volume_name(claim)
    if length + 5 <= 63:
        assert name == f"data-{claim}"
    else:
        digest = hashlib.sha256(claim.encode()).hexdigest()[:8]
        assert name == f"data-{'c' * 40}-{digest}" and len(name) <= 63


def test_a_claim_with_dots_or_a_trailing_dash_becomes_a_dns_label():
    claim = "team.sales-data-"
    digest = hashlib.sha256(claim.encode()).hexdigest()[:8]
    assert data_volume_name(claim) == f"data-team-sales-data-{digest}"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", data_volume_name(claim))
    claim = "-" + "x" * 39 + ".y"  # cut at 40 characters, then the trailing dash goes
    assert data_volume_name(claim).startswith("data--" + "x" * 39 + "-")


@pytest.mark.parametrize(
    "value, moved",
    [
        ("https://user:s3cret@pypi.example.com/simple", True),
        ("https://__token__@pypi.example.com/simple", True),  # a token as the user name
        ("HTTPS://u:p@idx.example.com/", True),
        ("https://pypi.example.com/simple", False),
        ("mailto:someone@example.com", False),  # no //: not a URL with a user
        ("https://pypi.example.com/simple/@scope", False),  # @ in the path, not the host
    ],
)
def test_a_url_with_credentials_in_it_is_a_credential_whatever_its_name(value, moved):
    c = V1Container(name="app", env=[V1EnvVar(name="STREAMLIT_HUB_PACKAGE_INDEX", value=value)])
    data = move_credentials(pod(c), "s")
    assert (data == {"STREAMLIT_HUB_PACKAGE_INDEX": value}) is moved
    assert (c.env[0].value is None) is moved
