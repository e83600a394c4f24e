"""An app server's Settings for alice's app "demo", for unit tests (override any field)."""

from spawner.app_server.settings import Settings

DEMO_FIELDS = {
    "api_url": "http://hub/hub/api",
    "api_token": "t",
    "client_id": "c",
    "prefix": "/user/alice/demo/",
    "callback_path": "/user/alice/demo/oauth_callback",
    "callback_url": "/user/alice/demo/oauth_callback",
    "authorize_url": "/hub/api/oauth2/authorize",
    "hub_url": "/hub/",
    "access_scopes": frozenset({"access:servers!server=alice/demo"}),
    "owner": "alice",
    "server_name": "demo",
    "activity_url": "",
    "bind_host": "127.0.0.1",
    "bind_port": 1,
    "entry": "/x.py",
}


def demo_settings(**overrides) -> Settings:
    return Settings(**{**DEMO_FIELDS, **overrides})
