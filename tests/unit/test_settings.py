import json

import pytest

from spawner.app_server.settings import SettingsError, from_environ

ENV = {
    "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
    "JUPYTERHUB_API_TOKEN": "secret-token",
    "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice-demo",
    "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/demo/",
    "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/alice/demo/oauth_callback",
    "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:servers!server=alice/demo"]),
    "JUPYTERHUB_USER": "alice",
    "JUPYTERHUB_SERVER_NAME": "demo",
    "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:41000/user/alice/demo/",
    "JUPYTERHUB_BASE_URL": "/",
    "STREAMLIT_HUB_ENTRY": "/home/alice/apps/demo/app.py",
}


def test_settings_from_the_hub_environment():
    s = from_environ(dict(ENV), scrub=False)
    assert (s.bind_host, s.bind_port) == ("127.0.0.1", 41000)
    assert s.authorize_url == "/hub/api/oauth2/authorize"
    assert s.access_scopes == {"access:servers!server=alice/demo"}
    assert s.auth_cache_seconds == 30.0 and not s.secure_cookies
    assert "secret-token" not in repr(s)


def test_token_is_removed_from_os_environ(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    s = from_environ()
    assert s.api_token == "secret-token"
    import os

    assert "JUPYTERHUB_API_TOKEN" not in os.environ


@pytest.mark.parametrize(
    "change, words",
    [
        ({"JUPYTERHUB_API_TOKEN": ""}, "JUPYTERHUB_API_TOKEN"),
        ({"JUPYTERHUB_OAUTH_ACCESS_SCOPES": "[]"}, "empty"),
        ({"JUPYTERHUB_OAUTH_ACCESS_SCOPES": "nope"}, "JSON"),
        ({"STREAMLIT_HUB_AUTH_CACHE_SECONDS": "abc"}, "not a number"),
        ({"STREAMLIT_HUB_AUTH_CACHE_SECONDS": "9999"}, "between"),
    ],
)
def test_bad_environment_is_refused_by_name(change, words):
    with pytest.raises(SettingsError, match=words):
        from_environ({**ENV, **change}, scrub=False)


def test_https_public_url_makes_cookies_secure():
    s = from_environ({**ENV, "JUPYTERHUB_PUBLIC_URL": "https://hub.example.com/"}, scrub=False)
    assert s.secure_cookies
