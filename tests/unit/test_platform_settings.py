"""The settings object (spawner/settings.py): precedence, checks at start-up, documentation."""

import re
from pathlib import Path

import pytest
from traitlets.config import Config

from spawner.app_server.settings import AppServerSettings, SettingsError
from spawner.audit.settings import AuditServiceSettings, ServiceConfigError
from spawner.cli import CLISettings
from spawner.hubconfig import configure
from spawner.settings import (
    HUB_CONFIG_DIR,
    ConfigError,
    StreamlitHub,
    describe,
    main,
    markdown,
    readme_with_tables,
)

REPO = HUB_CONFIG_DIR.parent
CLASSES = (StreamlitHub, AppServerSettings, AuditServiceSettings, CLISettings)


def test_configuration_wins_over_the_variable_which_wins_over_the_default():
    c = Config()
    c.StreamlitHub.port = 8123
    env = {"STREAMLIT_HUB_PORT": "9000", "STREAMLIT_HUB_AUDIT_PORT": "9001"}
    s = StreamlitHub(config=c, environ=env)
    assert (s.port, s.audit_port, s.hub_api_port) == (8123, 9001, 8081)


def test_defaults_follow_the_mode_and_other_settings():
    local = StreamlitHub(environ={"STREAMLIT_HUB_PORT": "8123"})
    assert (local.auth, local.data_dir, local.audit_host, local.audit_bind) == (
        "demo",
        ".hub-data",
        "127.0.0.1",
        "127.0.0.1",
    )
    assert local.public_url == "http://localhost:8123"
    assert local.policy == str(HUB_CONFIG_DIR / "policy.yaml")
    kube = StreamlitHub(environ={"STREAMLIT_HUB_MODE": "kubernetes"})
    assert (kube.auth, kube.data_dir, kube.audit_host, kube.audit_bind, kube.public_url) == (
        "google",
        "/srv/jupyterhub",
        "hub",
        "0.0.0.0",
        "",
    )
    assert kube.policy == "/usr/local/etc/streamlit-hub/policy.yaml"


def test_an_empty_variable_is_unset_but_an_empty_list_means_none():
    s = StreamlitHub(environ={"STREAMLIT_HUB_PORT": " ", "STREAMLIT_HUB_TRUSTED_PROXIES": ""})
    assert s.port == 8000 and s.trusted_proxies == []
    assert StreamlitHub(environ={}).trusted_proxies == ["127.0.0.0/8", "::1/128"]
    s = StreamlitHub(environ={"GOOGLE_ALLOWED_GROUPS": "analysts, viewers\tothers"})
    assert s.google_allowed_groups == ["analysts", "viewers", "others"]


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"STREAMLIT_HUB_AUTH_REFRESH_SECONDS": "1h"},
            "STREAMLIT_HUB_AUTH_REFRESH_SECONDS='1h': expected whole seconds",
        ),
        ({"STREAMLIT_HUB_API_PORT": "0"}, "STREAMLIT_HUB_API_PORT='0': expected a TCP port"),
        ({"STREAMLIT_HUB_PROXY_API_PORT": "-1"}, "STREAMLIT_HUB_PROXY_API_PORT='-1'"),
        (
            {"STREAMLIT_HUB_TRUSTED_PROXIES": "10.0.0.0/8 ten"},
            "STREAMLIT_HUB_TRUSTED_PROXIES=.*ten",
        ),
        ({"STREAMLIT_HUB_IDLE_TIMEOUT": "-5"}, "STREAMLIT_HUB_IDLE_TIMEOUT='-5': expected whole"),
    ],
)
def test_every_variable_is_checked_when_the_settings_are_made(env, message):
    with pytest.raises(ConfigError, match=message):
        StreamlitHub(environ=env)


def test_a_secret_is_never_repeated_in_an_error():
    with pytest.raises(SettingsError) as e:
        AppServerSettings(environ={"STREAMLIT_HUB_API_TOKEN_FD": "x"})
    assert "'x'" in str(e.value)  # not a secret: shown
    c = Config()
    c.StreamlitHub.google_client_secret = 12345  # a number where text belongs
    with pytest.raises(ConfigError) as e:
        StreamlitHub(config=c, environ={})
    assert "c.StreamlitHub.google_client_secret" in str(e.value)


def test_a_setting_that_does_not_exist_stops_the_hub():
    c = Config()
    c.StreamlitHub.prot = 8123
    with pytest.raises(ConfigError, match=r"c.StreamlitHub.prot: no such setting"):
        configure(c, {})


def test_the_hubs_own_ports_can_be_moved_and_must_not_clash(tmp_path):
    env = {
        "STREAMLIT_HUB_DATA_DIR": str(tmp_path),
        "STREAMLIT_HUB_DEMO_PASSWORD": "x",
        "STREAMLIT_HUB_APP_ACCOUNTS": "hub",
        "STREAMLIT_HUB_API_PORT": "18081",
        "STREAMLIT_HUB_PROXY_API_PORT": "18001",
        "STREAMLIT_HUB_AUDIT_PORT": "18082",
    }
    c = Config()
    configure(c, env)
    assert c.JupyterHub.hub_port == 18081
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:18001"
    assert [s["url"] for s in c.JupyterHub.services if s["name"] == "audit"] == [
        "http://127.0.0.1:18082"
    ]
    with pytest.raises(
        ConfigError, match="STREAMLIT_HUB_AUDIT_PORT=18081 is also STREAMLIT_HUB_API_PORT"
    ):
        configure(Config(), {**env, "STREAMLIT_HUB_AUDIT_PORT": "18081"})
    # audit off: its port is free for others
    configure(Config(), {**env, "STREAMLIT_HUB_AUDIT": "off", "STREAMLIT_HUB_AUDIT_PORT": "18081"})


def test_the_audit_service_and_app_server_read_theirs_the_same_way():
    a = AuditServiceSettings(environ={"STREAMLIT_HUB_AUDIT_TRUSTED": "ops, backup"})
    assert a.trusted == ["ops", "backup"] and a.retention_days == 365
    with pytest.raises(ServiceConfigError, match=r"'0' must be between 0.001 and 36500"):
        AuditServiceSettings(environ={"STREAMLIT_HUB_AUDIT_RETENTION_DAYS": "0"})
    with pytest.raises(SettingsError, match="STREAMLIT_HUB_LOG_LEVEL='LOUD' is not DEBUG"):
        AppServerSettings(environ={"STREAMLIT_HUB_LOG_LEVEL": "LOUD"})


def test_every_setting_has_help_and_a_variable_of_its_own():
    for cls in CLASSES:
        names = set()
        for name, trait in cls.settings().items():
            assert len(trait.help.split()) >= 4, f"{cls.__name__}.{name} has no help"
            var = trait.metadata["env"]
            assert var not in names, f"{var} twice in {cls.__name__}"
            names.add(var)


def test_every_platform_variable_the_code_reads_is_a_documented_setting():
    """A STREAMLIT_HUB_* or GOOGLE_* name anywhere in the package is a declared setting."""
    declared = {t.metadata["env"] for cls in CLASSES for t in cls.settings().values()}
    used = set()
    for path in (REPO / "spawner").rglob("*.py"):
        used |= set(re.findall(r"\b((?:STREAMLIT_HUB|GOOGLE)_[A-Z_]*[A-Z])\b", path.read_text()))
    assert used - declared == set()


def test_the_readme_tables_are_generated_from_the_code():
    readme = (REPO / "README.md").read_text()
    assert readme_with_tables(readme) == readme, (
        "README's settings tables drifted: run .venv/bin/python -m spawner.settings --readme README.md"
    )
    assert "| `hub_api_port` | `STREAMLIT_HUB_API_PORT` | `8081` |" in markdown()


def test_the_readme_block_can_be_rewritten(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n<!-- settings: generated by python -m spawner.settings --readme README.md -->\n"
        "STALE-TABLE\n<!-- settings: end -->\nafter\n"
    )
    assert main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "STALE-TABLE" not in text and text.endswith("<!-- settings: end -->\nafter\n")
    assert "STREAMLIT_HUB_IDLE_TIMEOUT" in text
    Path(readme).write_text("no block\n")
    with pytest.raises(ValueError, match="no <!-- settings"):
        readme_with_tables(readme.read_text())


def test_describe_prints_current_values_and_hides_secrets(capsys):
    text = describe(
        {
            "STREAMLIT_HUB_PORT": "8123",
            "GOOGLE_OAUTH_CLIENT_SECRET": "s3cr3t-value",
            "STREAMLIT_HUB_AUDIT_DB_URL": "postgresql+psycopg://audit:pw-in-url@db/audit",
        }
    )
    assert "port (STREAMLIT_HUB_PORT) = 8123" in text
    assert "google_client_secret (GOOGLE_OAUTH_CLIENT_SECRET) = (set)" in text
    assert "s3cr3t-value" not in text and "pw-in-url" not in text
    assert main([]) == 0 and "== The audit service" in capsys.readouterr().out


def test_a_port_another_program_holds_stops_the_hub_with_the_setting_named():
    import socket

    from spawner.hubconfig import refuse_ports_in_use

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = StreamlitHub(environ={"STREAMLIT_HUB_PORT": str(port)})  # the first one probed
        with pytest.raises(
            ConfigError,
            match=f"STREAMLIT_HUB_PORT={port}: 127.0.0.1:{port} is in use.*"
            "set STREAMLIT_HUB_PORT to a free port",
        ):
            refuse_ports_in_use(s)


def test_the_proxy_this_hub_left_running_is_taken_over_not_refused(tmp_path):
    import os
    import socket
    import subprocess
    import time

    from spawner.hubconfig import refuse_ports_in_use

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = StreamlitHub(environ={"STREAMLIT_HUB_PORT": str(port)})
        pid_file = tmp_path / "jupyterhub-proxy.pid"
        proxy = subprocess.Popen(["bash", "-c", "exec -a configurable-http-proxy sleep 30"])
        try:
            time.sleep(0.2)  # exec'd
            pid_file.write_text(f"{proxy.pid}\n")  # the proxy of last time, still running
            refuse_ports_in_use(s, proxy_pid_file=pid_file)
        finally:
            proxy.kill()
            proxy.wait()
        pid_file.write_text(f"{os.getpid()}\n")  # a live pid, but not a proxy (reused)
        with pytest.raises(ConfigError, match="is in use"):
            refuse_ports_in_use(s, proxy_pid_file=pid_file)
        pid_file.write_text("999999999\n")  # gone: the port is someone else's
        with pytest.raises(ConfigError, match="is in use"):
            refuse_ports_in_use(s, proxy_pid_file=pid_file)
