import pytest

from tests.helpers.hub import running_hub
from tests.helpers.kube_hub import running_double


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("hub")) as h:
        yield h


@pytest.fixture(scope="module")
def alice(hub):
    return hub.login("alice")


@pytest.fixture
def double(tmp_path):
    """The Kubernetes API test double (tests/helpers/kube_double.py), for one test."""
    with running_double(tmp_path) as d:
        yield d
