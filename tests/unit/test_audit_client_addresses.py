"""Where the audit trail's ``client`` comes from, on both sides: the app server's session events
(ASGI scope) and the hub's recorder (tornado request). A client's ``X-Forwarded-For`` and
``X-Real-Ip`` never become the recorded address; both sides agree for the same connection."""

import socket
from types import SimpleNamespace

import pytest
from tornado.httputil import HTTPHeaders
from traitlets.config import Config, LoggingConfigurable

from spawner.app_server.audit_sessions import SessionAudit
from spawner.audit.hub_recorder import HubAuditRecorder
from tests.unit.test_settings import ENV


class Sender:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)


def app_side(peer, headers, **settings) -> str | None:
    """The ``client`` of the session_start an app server records for this websocket."""
    sender = Sender()
    scope = {
        "type": "websocket",
        "client": (peer, 50123) if peer else None,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }
    s = SimpleNamespace(owner="alice", server_name="demo", profile="", **settings)
    SessionAudit(s, sender).open(SimpleNamespace(name="carol", groups=()), scope)
    (event,) = sender.events
    return event.get("client")


def hub_request(peer, headers, tornado_remote_ip):
    h = HTTPHeaders()
    for k, v in headers:
        h.add(k, v)
    family = socket.AF_INET6 if peer and ":" in peer else socket.AF_INET
    context = SimpleNamespace(
        address=(peer, 50123),
        address_family=family,
        remote_ip=tornado_remote_ip,
        _orig_remote_ip=peer,
    )
    return SimpleNamespace(
        headers=h,
        remote_ip=tornado_remote_ip,
        path="/hub/api/shares/alice/demo",
        method="POST",
        body=b'{"user": "carol"}',
        connection=SimpleNamespace(context=context),
    )


def hub_side(peer, headers, settings=None, recorder=None, tmp=None) -> str | None:
    """The ``client`` of the share_granted the hub's recorder records for this request."""
    # what tornado (xheaders=True, as JupyterHub runs it) makes of X-Real-Ip
    tornado_remote_ip = next((v for k, v in headers if k.lower() == "x-real-ip"), peer)
    rec = recorder or HubAuditRecorder(str(tmp), "http://127.0.0.1:1/x", "t")
    rec.sender = Sender()
    handler = SimpleNamespace(
        request=hub_request(peer, headers, tornado_remote_ip),
        get_status=lambda: 200,
        settings=settings or {},
        hub=SimpleNamespace(base_url="/hub/"),
        current_user=SimpleNamespace(name="alice", kind="user", admin=False),
    )
    rec.observe(handler)
    (event,) = rec.sender.events
    assert event["type"] == "share_granted"
    return event.get("client")


SPOOF = [("X-Forwarded-For", "6.6.6.6, 127.0.0.1"), ("X-Real-Ip", "7.7.7.7"), ("User-Agent", "UA")]


def test_the_app_side_ignores_what_the_client_put_in_x_forwarded_for_and_x_real_ip():
    assert app_side("127.0.0.1", SPOOF) == "127.0.0.1"
    assert (
        app_side(
            "127.0.0.1",
            [
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-For", "127.0.0.1"),
                ("X-Real-Ip", "7.7.7.7"),
            ],
        )
        == "127.0.0.1"
    )
    assert app_side("127.0.0.1", [("X-Real-Ip", "7.7.7.7")]) == "127.0.0.1"


def test_the_hub_side_ignores_x_real_ip_and_tornados_remote_ip(tmp_path):
    # tornado (xheaders=True) has already made remote_ip 7.7.7.7 from X-Real-Ip
    assert hub_side("127.0.0.1", SPOOF, tmp=tmp_path) == "127.0.0.1"
    assert hub_side("127.0.0.1", [("X-Real-Ip", "7.7.7.7")], tmp=tmp_path) == "127.0.0.1"


@pytest.mark.parametrize(
    "peer, headers",
    [
        ("127.0.0.1", SPOOF),
        ("127.0.0.1", [("X-Forwarded-For", "203.0.113.9")]),
        ("127.0.0.1", [("X-Forwarded-For", "6.6.6.6, ::ffff:127.0.0.1"), ("X-Real-Ip", "7.7.7.7")]),
        ("::1", [("X-Forwarded-For", "6.6.6.6, 2001:db8::5")]),
        ("198.51.100.4", [("X-Forwarded-For", "6.6.6.6"), ("X-Real-Ip", "7.7.7.7")]),
        ("127.0.0.1", [("X-Forwarded-For", "6.6.6.6, unknown")]),
        ("127.0.0.1", [("X-Forwarded-For", "6.6.6.6, " * 20_000 + "127.0.0.1")]),
    ],
)
def test_the_hub_and_the_app_server_record_the_same_address(tmp_path, peer, headers):
    app, hub = app_side(peer, headers), hub_side(peer, headers, tmp=tmp_path)
    assert app == hub
    assert app not in ("6.6.6.6", "7.7.7.7")


def test_a_configured_ingress_hop_is_walked_the_same_on_both_sides(tmp_path):
    from spawner.client_address import parse_networks
    from spawner.local import StreamlitLocalSpawner

    cluster = parse_networks("10.0.0.0/8")
    headers = [("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.1.0.5"), ("X-Real-Ip", "7.7.7.7")]
    assert app_side("10.2.0.7", headers, trusted_proxies=cluster) == "203.0.113.9"
    # the hub reads the same setting from its configuration, on the mixin or the spawner class
    for section in ("StreamlitSpawnerMixin", "StreamlitLocalSpawner"):
        config = Config({section: {"trusted_proxies": ["10.0.0.0/8"]}})
        settings = {"config": config, "spawner_class": StreamlitLocalSpawner}
        assert hub_side("10.2.0.7", headers, settings=settings, tmp=tmp_path) == "203.0.113.9"
    # unconfigured: only the local proxy is trusted, the cluster's proxy is the client
    assert app_side("10.2.0.7", headers) == "10.2.0.7"
    assert hub_side("10.2.0.7", headers, settings={"config": Config()}, tmp=tmp_path) == "10.2.0.7"


# ---- the setting's way from the hub to app servers ------------------------------------------


def _probe_spawner(config=None):
    from spawner.mixin import StreamlitSpawnerMixin

    class Base(LoggingConfigurable):
        def get_env(self):
            return {}

    class Probe(StreamlitSpawnerMixin, Base):
        pass

    return Probe(config=config or Config())


def test_the_hub_setting_reaches_the_app_server_through_its_environment(monkeypatch):
    from spawner.app_server.settings import from_environ
    from spawner.client_address import networks_text

    monkeypatch.delenv("STREAMLIT_HUB_TRUSTED_PROXIES", raising=False)
    sp = _probe_spawner()
    assert sp.trusted_proxies == ["127.0.0.0/8", "::1/128"]
    env = sp.get_env()
    assert env["STREAMLIT_HUB_TRUSTED_PROXIES"] == "127.0.0.0/8,::1/128"

    sp = _probe_spawner(
        Config({"StreamlitSpawnerMixin": {"trusted_proxies": ["10.0.0.0/8", "fd00::/8"]}})
    )
    env = sp.get_env()
    s = from_environ({**ENV, **env}, scrub=False)
    assert networks_text(s.trusted_proxies) == "10.0.0.0/8,fd00::/8"

    sp = _probe_spawner(Config({"StreamlitSpawnerMixin": {"trusted_proxies": []}}))
    s = from_environ({**ENV, **sp.get_env()}, scrub=False)
    assert s.trusted_proxies == ()  # nothing trusted stays nothing, not the default


def test_the_hub_setting_defaults_from_its_environment_variable(monkeypatch):
    monkeypatch.setenv("STREAMLIT_HUB_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.0/16")
    assert _probe_spawner().trusted_proxies == ["10.0.0.0/8", "192.168.0.0/16"]
    monkeypatch.setenv("STREAMLIT_HUB_TRUSTED_PROXIES", "10.0.0.0/8, ten")
    with pytest.raises(Exception, match=r"STREAMLIT_HUB_TRUSTED_PROXIES.*'ten'"):
        _probe_spawner().trusted_proxies  # noqa: B018


def test_the_app_server_refuses_a_bad_list_naming_the_variable():
    from spawner.app_server.settings import SettingsError, from_environ
    from spawner.client_address import networks_text

    assert (
        networks_text(from_environ(dict(ENV), scrub=False).trusted_proxies) == "127.0.0.0/8,::1/128"
    )
    with pytest.raises(SettingsError, match=r"STREAMLIT_HUB_TRUSTED_PROXIES.*'10.0.0.0/40'"):
        from_environ({**ENV, "STREAMLIT_HUB_TRUSTED_PROXIES": "10.0.0.0/40"}, scrub=False)
