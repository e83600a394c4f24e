"""The audit service with JupyterHub's real ``HubOAuth``, the hub itself stood in.

The other unit tests give the service a scripted ``hub_auth``; these give it none, so it makes
the ``HubOAuth`` singleton it runs with under the hub. Only HubOAuth's one HTTP call to the
hub (``_api_request``: "whose token is this", and the OAuth code exchange) is answered here
from a dict; its cache, its cookies, its OAuth state and PKCE are JupyterHub's own. So these
check that the service signs a browser in, asks the hub without blocking, and stops honouring
a token the hub revoked.
"""

import json
from http.cookies import SimpleCookie
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from jupyterhub.services import auth as hub_auth_module
from jupyterhub.services.auth import HubOAuth

from tests.helpers.audit_app import running_service

HUB_ENV = {
    "JUPYTERHUB_API_TOKEN": "audit-service-secret",
    "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",  # never connected to: stood in
    "JUPYTERHUB_CLIENT_ID": "service-audit",
    "JUPYTERHUB_SERVICE_PREFIX": "/services/audit/",
    "JUPYTERHUB_SERVICE_NAME": "audit",
    "JUPYTERHUB_BASE_URL": "/",
}
BROWSER = {"Sec-Fetch-Mode": "navigate"}  # a top-level page load, as a browser sends it


class Hub:
    """The hub's answers: tokens → models, OAuth codes → tokens; every question recorded."""

    def __init__(self):
        self.tokens = {
            "hub": {"kind": "service", "name": "audit", "scopes": []},
            "app": {
                "kind": "user",
                "name": "alice",
                "scopes": ["access:servers!server=alice/demo"],
            },
            "reader": {"kind": "user", "name": "admin", "scopes": ["custom:audit:read"]},
            "alice-oauth": {"kind": "user", "name": "alice", "scopes": []},
        }
        self.codes = {"code-1": "alice-oauth"}
        self.asked = []

    async def api_request(self, auth, method, url, /, **kwargs):
        if url.endswith("/oauth2/token"):
            form = parse_qs(kwargs["data"].decode())
            assert form["client_id"] == ["service-audit"] and form["code_verifier"]  # PKCE
            return {"access_token": self.codes.pop(form["code"][0]), "token_type": "Bearer"}
        token = kwargs["headers"]["Authorization"].partition(" ")[2]
        self.asked.append(token)
        return self.tokens.get(token)


@pytest.fixture
def hub(monkeypatch):
    for name, value in HUB_ENV.items():
        monkeypatch.setenv(name, value)
    for name in ("JUPYTERHUB_OAUTH_CALLBACK_URL", "JUPYTERHUB_HOST", "JUPYTERHUB_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    hub = Hub()

    async def api_request(auth, method, url, /, **kwargs):
        return await hub.api_request(auth, method, url, **kwargs)

    monkeypatch.setattr(HubOAuth, "_api_request", api_request)
    HubOAuth.clear_instance()
    yield hub
    HubOAuth.clear_instance()


@pytest.fixture
def service(hub, tmp_path):
    with running_service(tmp_path) as service:  # no hub_auth: the service makes its own
        yield service


def cookies(response) -> dict:
    jar = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def cookie_header(values: dict) -> str:
    return "; ".join(f"{name}={value}" for name, value in values.items())


def test_a_browser_signs_in_through_the_hubs_oauth_and_sees_its_page(service, hub):
    r = service("GET", "", headers=BROWSER)
    assert r.code == 302
    where = urlsplit(r.headers["Location"])
    query = parse_qs(where.query)
    assert where.path == "/hub/api/oauth2/authorize"
    assert query["client_id"] == ["service-audit"]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    state = cookies(r)
    assert set(state) == {"service-audit-oauth-state"}

    # the hub sends the browser back with a code to {prefix}oauth_callback (JupyterHub's
    # JUPYTERHUB_OAUTH_CALLBACK_URL for a managed service)
    r = service(
        "GET",
        f"oauth_callback?code=code-1&state={query['state'][0]}",
        headers={**BROWSER, "Cookie": cookie_header(state)},
    )
    assert r.code == 302 and r.headers["Location"] == "/services/audit/"
    session = cookies(r)
    assert session["service-audit"]

    r = service("GET", "", headers={**BROWSER, "Cookie": cookie_header(session)})
    assert r.code == 200
    page = r.body.decode()
    assert '<span class="me-1" id="signed-in-as">alice</span>' in page  # the hub's top bar
    assert "Last 14 days, showing apps owned by alice." in page
    assert hub.codes == {}  # the code was exchanged, once


def test_the_oauth_callback_refuses_a_code_without_its_state_cookie(service, hub):
    r = service("GET", "", headers=BROWSER)
    state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    r = service("GET", f"oauth_callback?code=code-1&state={state}", headers=BROWSER)
    assert r.code == 403  # another browser's state: no session
    assert "service-audit" not in cookies(r) and hub.codes == {"code-1": "alice-oauth"}


def test_tokens_in_the_header_are_checked_with_the_hub(service, hub):
    view = {
        "id": "ev-alice-000001",
        "time": "2026-11-29T10:00:00Z",
        "type": "page_view",
        "viewer": "carol",
        "page": "Details",
    }
    r = service("POST", "api/events", token="app", body={"events": [view]})
    assert r.code == 200 and json.loads(r.body)["stored"] == 1
    r = service("GET", "api/events", token="reader")
    assert r.code == 200
    assert [(e["owner"], e["app"]) for e in json.loads(r.body)["events"]] == [("alice", "demo")]
    assert hub.asked == ["app", "reader"]


def test_a_request_without_credentials_is_401_not_an_error(service, hub):
    r = service("GET", "api/events", headers=BROWSER)
    assert (r.code, json.loads(r.body)["message"]) == (
        401,
        "Sign in through the hub, or send a hub API token.",
    )
    r = service("GET", "api/events", headers={**BROWSER, "Cookie": "service-audit=forged"})
    assert r.code == 401
    assert hub.asked == []


def test_the_hub_is_asked_about_a_token_at_most_once_a_minute(hub, tmp_path, monkeypatch):
    # HubOAuth keeps the hub's answer a while (the hub is not asked on every request); a token
    # revoked at the hub stops working here once that answer is a minute old.
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr(hub_auth_module, "time", SimpleNamespace(monotonic=lambda: clock.now))
    with running_service(tmp_path) as service:
        assert service("GET", "api/events", token="reader").code == 200
        del hub.tokens["reader"]  # revoked
        clock.now += 59
        assert service("GET", "api/events", token="reader").code == 200
        assert hub.asked == ["reader"]
        clock.now += 1.5  # 60.5 s after the hub's answer
        assert service("GET", "api/events", token="reader").code == 401
        assert hub.asked == ["reader", "reader"]
