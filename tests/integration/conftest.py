import pytest

from tests.conftest import have_proxy
from tests.helpers.hub import Hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not have_proxy():
        pytest.fail("configurable-http-proxy is not installed: run `make install`")
    h = Hub(tmp_path_factory.mktemp("hub")).start()
    yield h
    left = h.stop()
    assert left == [], f"processes left behind after Ctrl-C: {left}"


@pytest.fixture(scope="module")
def alice(hub):
    return hub.login("alice")
