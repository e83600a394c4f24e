"""Google sign-in through the real GoogleOAuthenticator, with a local provider double.

Only the Google Directory call (``_fetch_member_groups``) is replaced: it reads the user's
groups from a file the test rewrites. Authorize, callback, token and userinfo run for real.
"""

import json
import secrets
import textwrap

import pytest
import requests

from tests.conftest import have_proxy
from tests.helpers.hub import Hub, browser_like_cookies
from tests.helpers.oauth_provider import OAuthProviderDouble

POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 2G}
groups:
  analysts: {profiles: [small], max_running_apps: 2, max_apps: 5}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


@pytest.fixture(scope="module")
def google(tmp_path_factory):
    if not have_proxy():
        pytest.fail("configurable-http-proxy is not installed: run `make install`")
    tmp = tmp_path_factory.mktemp("google")
    provider = OAuthProviderDouble().start()
    groups_file = tmp / "google-groups.json"
    groups_file.write_text(json.dumps({"alice@example.com": ["analysts"]}))
    key = tmp / "service-account.json"
    key.write_text("{}")
    extra = textwrap.dedent(f"""
        import json
        from oauthenticator.google import GoogleOAuthenticator
        c.GoogleOAuthenticator.authorize_url = "{provider.url}/authorize"
        c.GoogleOAuthenticator.token_url = "{provider.url}/token"
        c.GoogleOAuthenticator.userdata_url = "{provider.url}/userinfo"

        async def _groups_from_file(self, member_email, user_email_domain, *args, **kwargs):
            with open({str(groups_file)!r}) as f:
                return set(json.load(f).get(member_email, []))

        GoogleOAuthenticator._fetch_member_groups = _groups_from_file
    """)
    hub = Hub(tmp, extra_config=extra, policy=POLICY)
    hub.extra_env = {
        "STREAMLIT_HUB_AUTH": "google",
        "GOOGLE_WORKSPACE_DOMAIN": "example.com",
        "GOOGLE_ADMIN_USER": "admin",
        "GOOGLE_SERVICE_ACCOUNT_KEY_FILE": str(key),
        "GOOGLE_ALLOWED_GROUPS": "analysts,viewers",
        "GOOGLE_ADMIN_GROUPS": "hub-admins",
        "GOOGLE_OAUTH_CLIENT_ID": "test-client",
        "GOOGLE_OAUTH_CLIENT_SECRET": "test-secret",
        "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
        "STREAMLIT_HUB_PUBLIC_URL": hub.url,
    }
    hub.start()
    hub.provider, hub.groups_file = provider, groups_file
    yield hub
    provider.stop()
    assert hub.stop() == []


def google_login(hub) -> requests.Session:
    s = requests.Session()
    r = s.get(hub.url + "/hub/oauth_login", timeout=30)
    assert r.status_code == 200 and r.url.endswith("/hub/home"), (r.status_code, r.url)
    return browser_like_cookies(s)


def test_google_login_fills_hub_groups_and_the_policy_follows(google):
    google.add_app("alice", "demo", "import streamlit as st\nst.title('hi')\n")
    s = google_login(google)
    assert google.provider.requests[:3] == ["authorize", "token", "userinfo"]
    q = s.get(google.url + "/hub/api/streamlit/quota", timeout=10).json()
    assert q["groups"] == ["analysts"] and q["may_start_apps"]
    google.start_app(s, "alice", "demo")
    google.stop_app(s, "alice", "demo")

    # alice leaves analysts for viewers in Google: at her next login the decision changes
    google.groups_file.write_text(json.dumps({"alice@example.com": ["viewers"]}))
    s2 = google_login(google)
    q = s2.get(google.url + "/hub/api/streamlit/quota", timeout=10).json()
    assert q["groups"] == [] and not q["may_start_apps"]
    r = s2.post(f"{google.url}/hub/api/users/alice/servers/demo", json={}, timeout=30)
    assert r.status_code == 403
    assert "may open apps shared with them but not start apps" in r.json()["message"]


def test_someone_in_no_allowed_google_group_cannot_sign_in(google):
    google.provider.email = "mallory@example.com"
    try:
        r = requests.get(google.url + "/hub/oauth_login", timeout=30)
        assert r.status_code == 403
    finally:
        google.provider.email = "alice@example.com"
