import pytest

from tests.helpers.hub import running_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("hub")) as h:
        yield h


@pytest.fixture(scope="module")
def alice(hub):
    return hub.login("alice")
