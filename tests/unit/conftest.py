"""Fixtures shared by the unit tests."""

import pytest

from tests.helpers.asgi_auth import install_clock


@pytest.fixture
def clock(monkeypatch):
    """The app server's auth middleware on a clock the test moves (``clock.now += 600``)."""
    return install_clock(monkeypatch)
