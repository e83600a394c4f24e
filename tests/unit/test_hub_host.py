"""The hub's sign-in answers only on the hub's host (spawner/hub_host.py), at handler level."""

import asyncio

import pytest

from spawner.hub_host import hub_host_only, on_hub_host


class Request:
    def __init__(self, host, uri="/hub/login?next=%2Fhub%2Fhome"):
        self.host, self.uri = host, uri


class FakeLogin:
    """Stands in for JupyterHub's LoginHandler: records what reached it."""

    def __init__(self, host, settings):
        self.request = Request(host)
        self.settings = settings
        self.redirected_to = None
        self.prepared = False

    def redirect(self, url):
        self.redirected_to = url

    async def prepare(self):
        self.prepared = True


class FakeAuthenticator:
    def get_handlers(self, app):
        return [("/login", FakeLogin), ("/oauth_callback", FakeLogin, {"x": 1})]


SUBDOMAINS = {"subdomain_host": "https://apps.example.com/", "domain": "apps.example.com"}


def guarded_login():
    (pattern, handler), (_, callback, kwargs) = hub_host_only(FakeAuthenticator)().get_handlers(
        None
    )
    assert (pattern, kwargs) == ("/login", {"x": 1}) and issubclass(handler, FakeLogin)
    assert issubclass(callback, FakeLogin)
    return handler


@pytest.mark.parametrize(
    "host",
    [
        "alice.apps.example.com",
        "alice.apps.example.com:443",
        "apps.example.com.evil.test",
        "127.0.0.1:8000",
    ],
)
def test_sign_in_on_another_host_is_sent_to_the_hubs_host_and_goes_no_further(host):
    h = guarded_login()(host, SUBDOMAINS)
    asyncio.run(h.prepare())
    assert h.redirected_to == "https://apps.example.com/hub/login?next=%2Fhub%2Fhome"
    assert not h.prepared


@pytest.mark.parametrize("host", ["apps.example.com", "apps.example.com:8443", "APPS.example.com"])
def test_sign_in_on_the_hubs_host_goes_on(host):
    h = guarded_login()(host, SUBDOMAINS)
    asyncio.run(h.prepare())
    assert h.redirected_to is None and h.prepared


def test_without_app_hosts_every_host_signs_in():
    h = guarded_login()("127.0.0.1:8000", {"domain": ""})
    asyncio.run(h.prepare())
    assert h.redirected_to is None and h.prepared


def test_a_synchronous_prepare_of_the_base_handler_still_runs():
    class SyncLogin(FakeLogin):
        def prepare(self):
            self.prepared = True

    class Auth:
        def get_handlers(self, app):
            return [("/login", SyncLogin)]

    ((_, handler),) = hub_host_only(Auth)().get_handlers(None)
    h = handler("apps.example.com", SUBDOMAINS)
    asyncio.run(h.prepare())
    assert h.prepared and handler.__name__ == "SyncLogin"
    assert hub_host_only(Auth).__name__ == "HubHostOnlyAuth"


def test_on_hub_host_compares_the_whole_name_without_the_port():
    assert on_hub_host("localhost:8000", "localhost")
    assert not on_hub_host("alice.localhost:8000", "localhost")
    assert not on_hub_host("localhost.evil:8000", "localhost")
    assert not on_hub_host("", "localhost")
