import pytest
from traitlets.config import Config

from spawner.hubconfig import (
    HUB_CONFIG_DIR,
    ConfigError,
    StreamlitHub,
    configure,
    configure_app_origins,
    load_extra_config,
)

REPO = HUB_CONFIG_DIR.parent


def test_local_mode_binds_loopback_and_keeps_state_in_the_data_dir(tmp_path):
    c = Config()
    configure(
        c, {"STREAMLIT_HUB_DATA_DIR": str(tmp_path / "d"), "STREAMLIT_HUB_DEMO_PASSWORD": "pw"}
    )
    assert c.JupyterHub.ip == "127.0.0.1" and c.JupyterHub.hub_ip == "127.0.0.1"
    assert c.JupyterHub.port == 8000
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path / 'd' / 'jupyterhub.sqlite'}"
    assert c.JupyterHub.spawner_class == "streamlit-local"
    assert c.JupyterHub.allow_named_servers is True
    assert c.JupyterHub.load_groups["analysts"]["users"] == ["alice", "bob"]
    assert (tmp_path / "d/homes/alice/apps/demo/app.py").exists()
    assert (tmp_path / "d/homes/bob/apps/demo/pages").is_dir()
    assert not (tmp_path / "d/homes/carol").exists()
    # the home page says where an app's code lives and who has the seeded demo
    assert c.JupyterHub.template_vars["streamlit_homes_root"] == str(tmp_path / "d" / "homes")
    assert c.JupyterHub.template_vars["streamlit_demo_owners"] == ["alice", "bob"]


def test_generated_demo_password_is_kept_private_and_stable(tmp_path, capsys):
    c1, c2 = Config(), Config()
    env = {"STREAMLIT_HUB_DATA_DIR": str(tmp_path)}
    configure(c1, env)
    configure(c2, env)
    pw = c1.DummyAuthenticator.password
    assert pw and pw == c2.DummyAuthenticator.password
    assert (tmp_path / "demo-password").stat().st_mode & 0o777 == 0o600
    assert pw in capsys.readouterr().err


@pytest.mark.parametrize(
    "env, words",
    [
        ({"STREAMLIT_HUB_PORT": "80a"}, "STREAMLIT_HUB_PORT"),
        ({"STREAMLIT_HUB_PORT": "70000"}, "1 to 65535"),
        ({"STREAMLIT_HUB_MODE": "cloud"}, "expected 'local'"),
        (
            {"STREAMLIT_HUB_MODE": "kubernetes", "STREAMLIT_HUB_AUTH": "ldap"},
            "expected 'demo' or 'google'",
        ),
        ({"STREAMLIT_HUB_AUDIT": "yes"}, "STREAMLIT_HUB_AUDIT='yes': expected 'on' or 'off'"),
        ({"STREAMLIT_HUB_AUDIT_PORT": "x"}, "STREAMLIT_HUB_AUDIT_PORT"),
        ({"STREAMLIT_HUB_AUDIT_RETENTION_DAYS": "forever"}, "STREAMLIT_HUB_AUDIT_RETENTION_DAYS"),
        ({"STREAMLIT_HUB_AUDIT_RETENTION_DAYS": "0"}, "from 0 to 36500"),
        ({"STREAMLIT_HUB_IDLE_TIMEOUT": "1h"}, "STREAMLIT_HUB_IDLE_TIMEOUT"),
        ({"STREAMLIT_HUB_IDLE_TIMEOUT": "5"}, "at least 30 seconds"),
    ],
)
def test_bad_settings_stop_start_up_with_the_variable_named(tmp_path, env, words):
    with pytest.raises(ConfigError, match=words):
        configure(
            Config(),
            {"STREAMLIT_HUB_DATA_DIR": str(tmp_path), "STREAMLIT_HUB_DEMO_PASSWORD": "x", **env},
        )


def test_extra_config_runs_last_with_c(tmp_path):
    extra = tmp_path / "extra.py"
    extra.write_text("c.JupyterHub.port = 9999\n")
    c = Config()
    load_extra_config(c, {"STREAMLIT_HUB_EXTRA_CONFIG": str(extra)})
    assert c.JupyterHub.port == 9999
    with pytest.raises(ConfigError, match="no such file"):
        load_extra_config(c, {"STREAMLIT_HUB_EXTRA_CONFIG": str(tmp_path / "missing.py")})


GOOGLE = {
    "STREAMLIT_HUB_AUTH": "google",
    "GOOGLE_WORKSPACE_DOMAIN": "example.com",
    "GOOGLE_ADMIN_USER": "admin",
    "GOOGLE_ALLOWED_GROUPS": "analysts, viewers",
    "GOOGLE_ADMIN_GROUPS": "hub-admins",
    "GOOGLE_OAUTH_CLIENT_ID": "id",
    "GOOGLE_OAUTH_CLIENT_SECRET": "secret",
    "JUPYTERHUB_CRYPT_KEY": "00" * 32,
    "STREAMLIT_HUB_PUBLIC_URL": "https://apps.example.com/",
}


@pytest.fixture
def google_env(tmp_path):
    key = tmp_path / "key.json"
    key.write_text("{}")
    return {
        **GOOGLE,
        "STREAMLIT_HUB_DATA_DIR": str(tmp_path / "d"),
        "GOOGLE_SERVICE_ACCOUNT_KEY_FILE": str(key),
    }


def test_google_mode_syncs_groups_from_google(google_env):
    c = Config()
    configure(c, google_env)
    g = c.GoogleOAuthenticator
    from oauthenticator.google import GoogleOAuthenticator

    # Google's authenticator, serving the share-codes API with the policy's link rules
    assert issubclass(c.JupyterHub.authenticator_class, GoogleOAuthenticator)
    assert g.allowed_google_groups == {"example.com": {"analysts", "viewers"}}
    assert g.gsuite_administrator == {"example.com": "admin"}
    assert g.manage_groups is True and g.auth_state_groups_key == "google_user.google_groups"
    assert c.Authenticator.enable_auth_state is True
    assert g.oauth_callback_url == "https://apps.example.com/hub/oauth_callback"
    assert "load_groups" not in c.JupyterHub  # groups come from Google only


@pytest.mark.parametrize(
    "change, words",
    [
        ({"GOOGLE_ADMIN_USER": "admin@example.com"}, "only the local part"),
        ({"JUPYTERHUB_CRYPT_KEY": ""}, "JUPYTERHUB_CRYPT_KEY"),
        ({"GOOGLE_ALLOWED_GROUPS": ""}, "GOOGLE_ALLOWED_GROUPS"),
        ({"GOOGLE_SERVICE_ACCOUNT_KEY_FILE": "/nope.json"}, "no such file"),
        ({"GOOGLE_OAUTH_CLIENT_ID": ""}, "GOOGLE_OAUTH_CLIENT_ID"),
        ({"STREAMLIT_HUB_AUTH": "ldap"}, "expected 'demo' or 'google'"),
    ],
)
def test_google_mode_refuses_incomplete_settings_at_start_up(google_env, change, words):
    with pytest.raises(ConfigError, match=words):
        configure(Config(), {**google_env, **change})


def test_a_bad_policy_is_a_config_error(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("groups: {analysts: {profiles: [nope]}}\n")
    with pytest.raises(ConfigError, match=r"groups.analysts.profiles"):
        configure(
            Config(),
            {
                "STREAMLIT_HUB_DATA_DIR": str(tmp_path / "d"),
                "STREAMLIT_HUB_DEMO_PASSWORD": "x",
                "STREAMLIT_HUB_POLICY": str(bad),
            },
        )


def test_audit_service_is_registered_with_its_recorder_and_roles(tmp_path):
    from spawner.audit import hub_recorder

    c = Config()
    configure(
        c,
        {
            "STREAMLIT_HUB_DATA_DIR": str(tmp_path),
            "STREAMLIT_HUB_DEMO_PASSWORD": "x",
            "STREAMLIT_HUB_AUDIT_PORT": "9123",
        },
    )
    service = next(s for s in c.JupyterHub.services if s["name"] == "audit")
    assert service["url"] == "http://127.0.0.1:9123"
    assert service["command"][1:] == ["-m", "spawner.audit.service"]
    assert service["info"]["display_name"] == "Usage"  # its entry in the hub's Services menu
    assert (
        service["environment"]["STREAMLIT_HUB_AUDIT_DB_URL"]
        == f"sqlite:///{tmp_path / 'audit.sqlite'}"
    )
    assert "api_token" not in service["environment"]  # the token is never in the environment block
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["audit-reader"]["users"] == ["admin"]
    assert (
        "access:services!service=audit" in roles["user"]["scopes"]
        and "self" in roles["user"]["scopes"]
    )
    assert "custom:audit:read" in c.JupyterHub.custom_scopes
    recorder = hub_recorder.recorder()
    assert (
        c.JupyterHub.tornado_settings.to_dict()["update"]["log_function"] == recorder.log_function
    )
    assert c.StreamlitSpawnerMixin.audit_url == "http://127.0.0.1:9123/services/audit/api/events"


def test_audit_off_registers_nothing(tmp_path):
    c = Config()
    configure(
        c,
        {
            "STREAMLIT_HUB_DATA_DIR": str(tmp_path),
            "STREAMLIT_HUB_DEMO_PASSWORD": "x",
            "STREAMLIT_HUB_AUDIT": "off",
        },
    )
    assert [s["name"] for s in c.JupyterHub.services] == ["idle-culler"]
    assert "audit_url" not in c.StreamlitSpawnerMixin


def test_idle_culler_runs_with_the_policy_timeouts(tmp_path):
    from datetime import timedelta

    from spawner.culling import cull_arbiter

    c = Config()
    configure(c, {"STREAMLIT_HUB_DATA_DIR": str(tmp_path), "STREAMLIT_HUB_DEMO_PASSWORD": "x"})
    culler = next(s for s in c.JupyterHub.services if s["name"] == "idle-culler")
    # hub_config/policy.yaml: data-scientists 7200 s; the default 3600 s: look every 5 min
    assert "--timeout=3600" in culler["command"] and "--cull-every=300" in culler["command"]
    assert "--remove-named-servers=false" in culler["command"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert "admin:server_state" in roles["idle-culler"]["scopes"] and roles["idle-culler"][
        "services"
    ] == ["idle-culler"]
    idle = timedelta(seconds=4000)
    assert cull_arbiter(inactive=idle, inactive_limit=3600, server={"state": {}}) is True
    assert (
        cull_arbiter(inactive=idle, inactive_limit=3600, server={"state": {"idle_timeout": 7200}})
        is False
    )
    assert (
        cull_arbiter(inactive=idle, inactive_limit=3600, server={"state": {"idle_timeout": "x"}})
        is True
    )
    off = Config()
    configure(
        off,
        {
            "STREAMLIT_HUB_DATA_DIR": str(tmp_path),
            "STREAMLIT_HUB_DEMO_PASSWORD": "x",
            "STREAMLIT_HUB_IDLE_TIMEOUT": "0",
        },
    )
    assert "idle-culler" not in [s["name"] for s in off.JupyterHub.services]


def test_link_rules_come_from_the_owners_groups():
    from spawner.policy import parse_policy
    from spawner.sharing import link_problem

    policy = parse_policy(
        {
            "profiles": {"small": {"display_name": "S", "cpu_limit": 1, "mem_limit": "1G"}},
            "groups": {
                "analysts": {"profiles": ["small"], "may_share_links": False},
                "data-scientists": {
                    "profiles": ["small"],
                    "may_share_links": True,
                    "max_link_days": 2,
                },
            },
            "defaults": {"profiles": [], "max_running_apps": 0, "max_apps": 0},
        },
        "p.yaml",
    )
    status, message = link_problem(policy, ["analysts"], "alice", 3600)
    assert status == 403 and "turned off for alice's apps" in message
    assert link_problem(policy, ["analysts", "data-scientists"], "bob", 2 * 86400) is None
    assert link_problem(policy, ["data-scientists"], "bob", None) is None  # the 1-day default
    status, message = link_problem(policy, ["data-scientists"], "bob", 3 * 86400)
    assert status == 400 and "at most 2 days" in message and "172800" in message


def test_kubernetes_mode_wires_the_kube_spawner_policy_audit_and_culler(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text((REPO / "hub_config" / "policy.yaml").read_text())
    c = Config()
    configure(
        c,
        {
            "STREAMLIT_HUB_MODE": "kubernetes",
            "STREAMLIT_HUB_AUTH": "demo",
            "STREAMLIT_HUB_DEMO_PASSWORD": "trial",
            "STREAMLIT_HUB_POLICY": str(policy),
            "STREAMLIT_HUB_DATA_DIR": str(tmp_path / "srv"),
            "STREAMLIT_HUB_PUBLIC_URL": "https://apps.example.com",
        },
    )
    assert c.JupyterHub.spawner_class == "streamlit-kube"
    # each analyst's apps on their own host: alice.apps.example.com
    assert c.JupyterHub.subdomain_host == "https://apps.example.com"
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["audit"]["url"] == "http://hub:8082"  # through the hub's Service
    assert services["audit"]["environment"]["STREAMLIT_HUB_AUDIT_BIND"] == "0.0.0.0"
    assert c.StreamlitSpawnerMixin.audit_url == "http://hub:8082/services/audit/api/events"
    assert "idle-culler" in services
    assert c.StreamlitSpawnerMixin.policy_file == str(policy)
    with pytest.raises(ConfigError, match="mount the group policy ConfigMap"):
        configure(
            Config(),
            {
                "STREAMLIT_HUB_MODE": "kubernetes",
                "STREAMLIT_HUB_AUTH": "demo",
                "STREAMLIT_HUB_DEMO_PASSWORD": "x",
                "STREAMLIT_HUB_POLICY": str(tmp_path / "missing.yaml"),
            },
        )


def test_apps_get_hosts_of_their_own_by_default(tmp_path):
    from spawner.hubconfig import subdomain_for

    c = Config()
    configure_app_origins(c, StreamlitHub(environ={}))
    assert c.JupyterHub.subdomain_host == "http://localhost:8000"
    assert subdomain_for("alice", "localhost", "user") == "alice.localhost"
    assert subdomain_for("audit", "localhost", "service") == "localhost"  # the hub's own code


@pytest.mark.parametrize(
    "env, url, expected",
    [
        ({}, "http://127.0.0.1:8000", "an IP address cannot have"),
        ({}, "http://localhost:8000/hub", "with no path"),
        (
            {"STREAMLIT_HUB_APP_ORIGINS": "subdomain"},
            "http://localhost:8000",
            "STREAMLIT_HUB_APP_ORIGINS",
        ),
    ],
)
def test_app_origin_settings_that_cannot_work_stop_the_hub(env, url, expected):
    with pytest.raises(ConfigError, match=expected):
        configure_app_origins(
            Config(), StreamlitHub(environ={**env, "STREAMLIT_HUB_PUBLIC_URL": url})
        )


def test_shared_origins_are_said_on_the_admin_page():
    c = Config()
    assert (
        configure_app_origins(
            c,
            StreamlitHub(
                environ={
                    "STREAMLIT_HUB_APP_ORIGINS": "shared",
                    "STREAMLIT_HUB_PUBLIC_URL": "http://127.0.0.1:8000",
                }
            ),
        )
        is False
    )
    assert "subdomain_host" not in c.JupyterHub
    assert c.JupyterHub.template_vars["streamlit_shared_origin"] is True


def test_kubernetes_mode_needs_the_public_url_for_app_hosts(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text((REPO / "hub_config" / "policy.yaml").read_text())
    with pytest.raises(ConfigError, match="STREAMLIT_HUB_PUBLIC_URL is not set"):
        configure(
            Config(),
            {
                "STREAMLIT_HUB_MODE": "kubernetes",
                "STREAMLIT_HUB_AUTH": "demo",
                "STREAMLIT_HUB_DEMO_PASSWORD": "x",
                "STREAMLIT_HUB_POLICY": str(policy),
            },
        )


def test_the_login_form_answers_only_on_the_hubs_host():
    from spawner.hub_host import on_hub_host

    assert on_hub_host("localhost:8000", "localhost")
    assert on_hub_host("apps.example.com", "apps.example.com")
    assert not on_hub_host("alice.localhost:8000", "localhost")
    assert not on_hub_host("apps.example.com.evil.test", "apps.example.com")


def test_apps_running_as_the_hub_user_are_said_to_be_trusted(caplog):
    from spawner.hubconfig import configure_app_accounts

    c = Config()
    with caplog.at_level("WARNING"):
        configure_app_accounts(c, StreamlitHub(environ={"STREAMLIT_HUB_APP_ACCOUNTS": "hub"}))
    assert c.JupyterHub.template_vars["streamlit_apps_trusted"] is True
    assert "run as the hub's own Unix user" in caplog.text


def test_a_bad_app_accounts_setting_stops_the_hub():
    with pytest.raises(ConfigError, match="STREAMLIT_HUB_APP_ACCOUNTS='everyone': expected 'auto'"):
        StreamlitHub(environ={"STREAMLIT_HUB_APP_ACCOUNTS": "everyone"})
    c = Config()
    c.StreamlitHub.app_accounts = ""
    with pytest.raises(ConfigError, match=r"c.StreamlitHub.app_accounts='': expected 'auto'"):
        StreamlitHub(config=c, environ={})


def test_an_app_environment_closed_to_app_accounts_stops_the_hub(tmp_path):
    import os

    from spawner.hubconfig import configure_app_accounts

    if os.geteuid() != 0:
        pytest.skip("per-user accounts need root")
    private = tmp_path / "private"
    (private / "bin").mkdir(parents=True)
    (private / "bin" / "python").write_text("")
    os.chmod(private, 0o700)
    env = {"STREAMLIT_HUB_APP_PYTHON": str(private / "bin" / "python")}
    with pytest.raises(
        ConfigError, match=r"is closed to other users.*STREAMLIT_HUB_APP_ACCOUNTS=hub"
    ):
        configure_app_accounts(Config(), StreamlitHub(environ=env))


def test_roles_and_template_folders_configured_before_are_kept(tmp_path):
    """The chart's hub.loadRoles and hub.templatePaths come before configure(c): kept."""
    policy = tmp_path / "policy.yaml"
    policy.write_text((REPO / "hub_config" / "policy.yaml").read_text())
    c = Config()
    c.JupyterHub.load_roles = [{"name": "ops", "scopes": ["list:users"], "users": ["root"]}]
    c.JupyterHub.template_paths = ["/srv/extra-templates"]
    configure(
        c,
        {
            "STREAMLIT_HUB_MODE": "kubernetes",
            "STREAMLIT_HUB_AUTH": "demo",
            "STREAMLIT_HUB_DEMO_PASSWORD": "x",
            "STREAMLIT_HUB_POLICY": str(policy),
            "STREAMLIT_HUB_DATA_DIR": str(tmp_path / "srv"),
            "STREAMLIT_HUB_PUBLIC_URL": "https://apps.example.com",
        },
    )
    names = [r["name"] for r in c.JupyterHub.load_roles]
    assert "ops" in names and "audit-reader" in names and "idle-culler" in names
    assert c.JupyterHub.template_paths[0].endswith("templates")
    assert c.JupyterHub.template_paths[1:] == ["/srv/extra-templates"]


def test_data_grants_in_local_mode_are_said_to_be_kubernetes_only(tmp_path, caplog):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "profiles: {small: {display_name: S, cpu_limit: 1, mem_limit: 1G}}\n"
        "groups: {analysts: {profiles: [small], max_running_apps: 1,\n"
        "  volumes: [{claim: sales-data, mount_path: /data/sales}]}}\n"
    )
    with caplog.at_level("WARNING"):
        configure(
            Config(),
            {
                "STREAMLIT_HUB_DATA_DIR": str(tmp_path / "d"),
                "STREAMLIT_HUB_DEMO_PASSWORD": "x",
                "STREAMLIT_HUB_APP_ACCOUNTS": "hub",
                "STREAMLIT_HUB_POLICY": str(policy),
            },
        )
    assert "groups.analysts" in caplog.text and "Kubernetes only" in caplog.text


def test_the_address_and_password_are_said_only_once_every_setting_is_checked(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("groups: {analysts: {profiles: [nope]}}\n")
    env = {"STREAMLIT_HUB_DATA_DIR": str(tmp_path / "d"), "STREAMLIT_HUB_POLICY": str(bad)}
    with pytest.raises(ConfigError):
        configure(Config(), env)
    assert "password" not in capsys.readouterr().err
