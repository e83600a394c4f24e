"""``configure(c)``: the whole hub configuration, called by ``hub_config/jupyterhub_config.py``.

Logic lives here, in tested Python, so that ``jupyterhub_config.py`` (and, on Kubernetes,
z2jh's ``hub.extraConfig``) only import and call it.

Modes (``STREAMLIT_HUB_MODE``):

- ``local`` (default): one machine, no cluster: sqlite and all state under
  ``STREAMLIT_HUB_DATA_DIR``, the ``streamlit-local`` spawner, demo users and groups.
- ``kubernetes``: arrives with the Kubernetes spawner; refused clearly until then.

Every environment variable is read and checked here, at hub start-up, so a typo stops the
hub with a message naming the variable instead of failing at the first spawn.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

from . import demo
from .policy import PolicyError, load_policy

# hub_config/ (templates, the example policy, the culler's config): next to the package in a
# checkout; an installed package (the hub image) names it with STREAMLIT_HUB_CONFIG_DIR.
HUB_CONFIG_DIR = Path(
    os.environ.get("STREAMLIT_HUB_CONFIG_DIR")
    or Path(__file__).resolve().parent.parent / "hub_config"
)


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says what is expected."""


def _port(environ, name: str, default: int) -> int:
    raw = environ.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"{name}={raw!r}: expected a TCP port number from 1 to 65535")
    return int(raw)


def find_proxy_command(repo_root: Path) -> list[str]:
    local = repo_root / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.exists():
        return [str(local)]
    found = shutil.which("configurable-http-proxy")
    if found:
        return [found]
    raise ConfigError(
        "configurable-http-proxy not found: run `make install` (npm installs it into "
        f"{repo_root / 'node_modules'}) or put it on PATH"
    )


def _csv(environ, name) -> set[str]:
    return {v.strip() for v in environ.get(name, "").split(",") if v.strip()}


def _required(environ, name: str, what: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: {what}")
    return value


def configure_google(c, environ) -> None:
    """Google sign-in, with hub groups filled from Google Groups at every login and refresh.

    The group policy is keyed on hub group names; this keeps them equal to the user's Google
    Groups (the local part of each group's address, e.g. analysts@example.com -> analysts).
    """
    domain = _required(
        environ, "GOOGLE_WORKSPACE_DOMAIN", "the Google Workspace domain, e.g. example.com"
    )
    admin_user = _required(
        environ,
        "GOOGLE_ADMIN_USER",
        "the local part of a Workspace admin the service account impersonates to read groups",
    )
    if "@" in admin_user:
        raise ConfigError(
            f"GOOGLE_ADMIN_USER={admin_user!r}: give only the local part (e.g. 'admin', not "
            f"'admin@{domain}'); oauthenticator adds '@{domain}' itself"
        )
    key_file = _required(
        environ,
        "GOOGLE_SERVICE_ACCOUNT_KEY_FILE",
        "path of the service account's JSON key (domain-wide delegation)",
    )
    if not Path(key_file).is_file():
        raise ConfigError(f"GOOGLE_SERVICE_ACCOUNT_KEY_FILE={key_file!r}: no such file")
    if not environ.get("JUPYTERHUB_CRYPT_KEY"):
        raise ConfigError(
            "JUPYTERHUB_CRYPT_KEY is not set: Google groups are kept in the "
            "encrypted auth state (openssl rand -hex 32)"
        )
    allowed = _csv(environ, "GOOGLE_ALLOWED_GROUPS")
    if not allowed:
        raise ConfigError(
            "GOOGLE_ALLOWED_GROUPS is not set: the Google Groups whose members "
            "may sign in, comma-separated, e.g. analysts,data-scientists,viewers"
        )
    public = _required(
        environ, "STREAMLIT_HUB_PUBLIC_URL", "the hub's public URL, e.g. https://apps.example.com"
    )

    c.JupyterHub.authenticator_class = "google"
    g = c.GoogleOAuthenticator
    g.client_id = _required(environ, "GOOGLE_OAUTH_CLIENT_ID", "the OAuth client id")
    g.client_secret = _required(environ, "GOOGLE_OAUTH_CLIENT_SECRET", "the OAuth client secret")
    g.oauth_callback_url = public.rstrip("/") + "/hub/oauth_callback"
    g.hosted_domain = [domain]
    g.allowed_google_groups = {domain: allowed}
    g.admin_google_groups = {domain: _csv(environ, "GOOGLE_ADMIN_GROUPS")}
    g.gsuite_administrator = {domain: admin_user}
    g.google_service_account_keys = {domain: key_file}
    g.manage_groups = True
    g.auth_state_groups_key = "google_user.google_groups"
    c.Authenticator.enable_auth_state = True
    # Re-read groups before a start if the last check is older than an hour, so a membership
    # change reaches the policy without waiting for the next login.
    c.Authenticator.refresh_pre_spawn = True
    c.Authenticator.auth_refresh_age = int(
        environ.get("STREAMLIT_HUB_AUTH_REFRESH_SECONDS") or 3600
    )


def configure(c, environ=None) -> None:
    environ = os.environ if environ is None else environ
    mode = environ.get("STREAMLIT_HUB_MODE", "local")
    if mode == "local":
        configure_local(c, environ)
    elif mode == "kubernetes":
        configure_kubernetes(c, environ)
    else:
        raise ConfigError(f"STREAMLIT_HUB_MODE={mode!r}: expected 'local' or 'kubernetes'")
    configure_common(c)


def sharing_roles(policy) -> list[dict]:
    """Roles that let people share their own apps (JupyterHub's shares API), per the policy.

    ``shares!user`` manages shares of one's own servers; the two read scopes let a sharer
    name the user or group to share with. Groups whose rule has ``may_share: false`` get no
    such role; if ``defaults.may_share`` is true, every user gets it.
    """
    scopes = ["shares!user", "read:users:name", "read:groups:name"]
    if policy.defaults.may_share:
        return [{"name": "user", "scopes": ["self", *scopes]}]
    groups = [name for name, rule in policy.groups.items() if rule.may_share]
    if not groups:
        return []
    return [
        {
            "name": "streamlit-app-sharer",
            "description": "May share their own apps",
            "scopes": scopes,
            "groups": groups,
        }
    ]


def configure_policy(c, path: str) -> None:
    """Validate the group policy now (a bad file stops the hub) and wire it everywhere."""
    from .app_output import AppOutputAPIHandler, AppStatusAPIHandler
    from .quota import QuotaAPIHandler, make_named_server_limit, make_template_quota
    from .viewer import template_viewer

    try:
        policy = load_policy(path)
    except PolicyError as e:
        raise ConfigError(f"group policy: {e}") from None
    # Merged with roles configured before (the chart's hub.loadRoles), ours replacing any of
    # the same name.
    ours = sharing_roles(policy)
    names = {r["name"] for r in ours}
    c.JupyterHub.load_roles = [
        r for r in _configured_list(c.JupyterHub, "load_roles") if r.get("name") not in names
    ] + ours
    c.StreamlitSpawnerMixin.policy_file = path
    # The policy's link rules on JupyterHub's share-codes API (see spawner/sharing.py).
    from .sharing import policy_authenticator

    current = c.JupyterHub.authenticator_class if "authenticator_class" in c.JupyterHub else "dummy"
    from .hub_host import hub_host_only

    c.JupyterHub.authenticator_class = hub_host_only(
        policy_authenticator(_resolve_authenticator(current), path)
    )
    c.JupyterHub.named_server_limit_per_user = make_named_server_limit(path)
    # JupyterHub marks extra_handlers deprecated (3.1) but serves them; these two move into
    # the platform's hub-managed service when the audit service lands.
    c.JupyterHub.extra_handlers = [
        (r"/api/streamlit/quota", QuotaAPIHandler, {"policy_file": path}),
        (r"/api/streamlit/apps/([^/]+)/([^/]+)/output", AppOutputAPIHandler),
        (r"/api/streamlit/apps/([^/]+)/([^/]+)/status", AppStatusAPIHandler),
    ]
    c.JupyterHub.template_vars = {
        **_configured_dict(c.JupyterHub, "template_vars"),
        "streamlit_quota": make_template_quota(path),
        "streamlit_me": template_viewer,
    }
    return policy


def _resolve_authenticator(value) -> type:
    """An authenticator class from what ``JupyterHub.authenticator_class`` accepts."""
    if isinstance(value, type):
        return value
    from importlib.metadata import entry_points

    for ep in entry_points(group="jupyterhub.authenticators"):
        if ep.name == value:
            return ep.load()
    from traitlets.utils.importstring import import_item

    try:
        return import_item(value)
    except (ImportError, ValueError):
        raise ConfigError(f"authenticator_class={value!r}: no such authenticator") from None


def configure_culler(c, policy, environ) -> None:
    """``jupyterhub-idle-culler`` as a hub-managed service, with the policy's timeouts.

    ``STREAMLIT_HUB_IDLE_TIMEOUT`` (seconds, default 3600; ``0`` turns culling off) applies
    to apps whose owner's groups set no ``idle_timeout``; see ``spawner/culling.py``.
    """
    from .culling import cull_every

    raw = environ.get("STREAMLIT_HUB_IDLE_TIMEOUT", "3600")
    if not raw.isdigit():
        raise ConfigError(
            f"STREAMLIT_HUB_IDLE_TIMEOUT={raw!r}: expected whole seconds, e.g. 3600 "
            "(0 turns the idle culler off)"
        )
    default = int(raw)
    if default == 0:
        return
    if default < 30:
        raise ConfigError(f"STREAMLIT_HUB_IDLE_TIMEOUT={raw!r}: at least 30 seconds (or 0 for off)")
    service = {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={default}",
            f"--cull-every={cull_every(policy, default)}",
            "--remove-named-servers=false",
            f"--config={HUB_CONFIG_DIR / 'idle_culler_config.py'}",
        ],
        "cwd": str(HUB_CONFIG_DIR),
    }
    c.JupyterHub.services = [
        s for s in _configured_list(c.JupyterHub, "services") if s.get("name") != "idle-culler"
    ] + [service]
    role = {
        "name": "idle-culler",
        "description": "Stops apps nobody used for their idle timeout",
        "services": ["idle-culler"],
        "scopes": [
            "list:users",
            "read:users:activity",
            "read:servers",
            "delete:servers",
            "admin:server_state",
        ],
    }
    c.JupyterHub.load_roles = [
        r for r in _configured_list(c.JupyterHub, "load_roles") if r.get("name") != "idle-culler"
    ] + [role]


def configure_common(c) -> None:
    """What every mode shares: named servers as apps, templates, OAuth scopes for apps."""
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.default_url = "/hub/home"
    # Ours first; template folders configured before (the chart's hub.templatePaths) stay.
    ours = str(HUB_CONFIG_DIR / "templates")
    c.JupyterHub.template_paths = [
        ours,
        *(p for p in _configured_list(c.JupyterHub, "template_paths") if p != ours),
    ]
    # An app server may read its viewer's name and groups, nothing more.
    c.Spawner.oauth_client_allowed_scopes = ["read:users:groups!user"]
    # The app server's own token: post activity, and read who its app is shared with (see
    # spawner/app_server/auth.py on group shares in JupyterHub 6.1.1).
    c.Spawner.server_token_scopes = [
        "users:activity!user",
        "access:servers!server",
        "read:shares!server",
    ]
    c.Spawner.start_timeout = 90
    c.Spawner.http_timeout = 60


APP_ORIGINS = ("per-user", "shared")


def app_origins_mode(environ) -> str:
    mode = environ.get("STREAMLIT_HUB_APP_ORIGINS", "per-user")
    if mode not in APP_ORIGINS:
        raise ConfigError(
            f"STREAMLIT_HUB_APP_ORIGINS={mode!r}: expected 'per-user' (each "
            "analyst's apps on their own host, the default) or 'shared'"
        )
    return mode


def configure_app_origins(c, environ, public_url: str) -> bool:
    """Serve apps from their own origin, away from the hub's (``STREAMLIT_HUB_APP_ORIGINS``).

    ``per-user`` (default): JupyterHub's ``subdomain_host``: the hub stays on the public
    URL's host and each analyst's apps are served from ``<analyst>.<that host>`` (the hub's
    ``idna`` subdomain hook), so the hub's login cookie never reaches app code and the
    browser's same-origin policy keeps an app's JavaScript away from the hub's API. Needs a
    host name (not an IP address) with a wildcard DNS record; ``localhost`` works on one
    machine, since browsers send every ``*.localhost`` name to loopback.

    ``shared``: apps share the hub's origin. Any app's JavaScript can then act as whoever
    views it (an admin too); the hub says so in its log and on every admin's home page.
    Returns True when apps have their own origins.
    """
    import ipaddress
    from urllib.parse import urlparse

    mode = app_origins_mode(environ)
    if mode == "shared":
        import logging

        logging.getLogger("JupyterHub").warning(
            "STREAMLIT_HUB_APP_ORIGINS=shared: apps are served from the hub's own origin, so "
            "JavaScript in any app can use the hub as whoever views it (admins included). "
            "Use per-user app hosts (the default) wherever a wildcard DNS name is possible."
        )
        c.JupyterHub.template_vars = {
            **_configured_dict(c.JupyterHub, "template_vars"),
            "streamlit_shared_origin": True,
        }
        return False
    parsed = urlparse(public_url)
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.path not in ("", "/")
    ):
        raise ConfigError(
            f"STREAMLIT_HUB_PUBLIC_URL={public_url!r}: expected the hub's public "
            "address with no path, e.g. https://apps.example.com"
        )
    try:
        ipaddress.ip_address(parsed.hostname)
    except ValueError:
        pass
    else:
        raise ConfigError(
            f"STREAMLIT_HUB_PUBLIC_URL={public_url!r}: apps get hosts of their own under the "
            "hub's host name (alice.<host>), which an IP address cannot have. Use a name "
            "(http://localhost:PORT on one machine) or set STREAMLIT_HUB_APP_ORIGINS=shared."
        )
    c.JupyterHub.subdomain_host = f"{parsed.scheme}://{parsed.netloc}"
    c.JupyterHub.subdomain_hook = subdomain_for
    if parsed.scheme == "https":
        # "__Host-" cookies cannot be set or overwritten from a sibling host (an app's), so
        # app code cannot plant a login or XSRF cookie for the hub (browsers need HTTPS).
        c.JupyterHub.cookie_host_prefix_enabled = True
    return True


def subdomain_for(name: str, domain: str, kind: str) -> str:
    """JupyterHub's ``subdomain_hook``: users' apps on ``<user>.<domain>``, services at home.

    Users get JupyterHub's own ``idna`` names (valid and collision-free for any user name).
    The platform's services (the audit service and its usage page) are the hub's own code,
    not an analyst's, so they stay on the hub's host, where ``/services/audit/`` keeps its
    address; every user host has a label before ``domain``, so none can equal it.
    """
    from jupyterhub.utils import subdomain_hook_idna

    if kind == "service":
        return domain
    return subdomain_hook_idna(name, domain, kind)


def _configured_dict(section, name: str) -> dict:
    value = section.get(name) if name in section else None
    return dict(value) if isinstance(value, dict) else {}


def secure_data_dir(data_dir: Path, private_umask: bool = True) -> None:
    """The data dir holds the hub's secrets; app accounts may only pass through it.

    Everything this process (the hub, the proxy, the audit service it starts) creates from
    now on is private (umask 077): the database, its WAL files, the cookie secret, the audit
    store, the logs. The folder itself is ``711`` so app accounts reach their own home and
    spool below ``homes/`` and ``logs/``; what is already there loses every bit for others.
    """
    if private_umask:  # the hub process itself (not a test building a config)
        os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o711)
    for entry in data_dir.iterdir():
        if entry.name in ("homes", "logs") or entry.is_symlink():
            continue
        os.chmod(entry, 0o700 if entry.is_dir() else 0o600)


def configure_app_accounts(c, environ) -> None:
    """Which Unix user local apps run as (``STREAMLIT_HUB_APP_ACCOUNTS``, see spawner/local.py).

    With per-user accounts the app environment must be reachable by them: checked here, so a
    checkout in a private folder stops the hub with the folder named, not every app start.
    Apps that run as the hub's user are trusted code: said in the log and on the home page.
    """
    import logging

    from .local import APP_ACCOUNTS, apps_run_as_hub_user, default_app_python
    from .unix_users import blocked_for_others

    mode = environ.get("STREAMLIT_HUB_APP_ACCOUNTS", "auto")
    if mode not in APP_ACCOUNTS:
        raise ConfigError(
            f"STREAMLIT_HUB_APP_ACCOUNTS={mode!r}: expected 'auto' (per-user "
            "accounts when the hub runs as root), 'per-user' or 'hub'"
        )
    if mode == "per-user" and os.geteuid() != 0:
        raise ConfigError(
            "STREAMLIT_HUB_APP_ACCOUNTS='per-user': the hub must run as root to "
            "create and switch to one system account per analyst"
        )
    if apps_run_as_hub_user(mode):
        logging.getLogger("JupyterHub").warning(
            "Local apps run as the hub's own Unix user (%s): their code can read the hub's "
            "database, cookie secret and every other app's files. Only for a one-person demo: "
            "run the hub as root (a service) for one account per analyst.",
            "STREAMLIT_HUB_APP_ACCOUNTS=hub" if mode == "hub" else "the hub is not root",
        )
        c.JupyterHub.template_vars = {
            **_configured_dict(c.JupyterHub, "template_vars"),
            "streamlit_apps_trusted": True,
        }
        return
    python = default_app_python()
    blocked = blocked_for_others(python)
    if blocked:
        raise ConfigError(
            f"the app environment ({python}) cannot be reached by the per-analyst app accounts: "
            f"{blocked} is closed to other users. Build it with `make install` in a folder "
            "others may pass through (chmod o+x on the folders above it), point "
            "STREAMLIT_HUB_APP_PYTHON at one, or set STREAMLIT_HUB_APP_ACCOUNTS=hub (trusted apps)."
        )


def configure_local(c, environ) -> None:
    data_dir = Path(environ.get("STREAMLIT_HUB_DATA_DIR") or ".hub-data").resolve()
    secure_data_dir(data_dir, private_umask=environ is os.environ)
    port = _port(environ, "STREAMLIT_HUB_PORT", 8000)

    c.JupyterHub.ip = "127.0.0.1"
    c.JupyterHub.port = port
    public_url = environ.get("STREAMLIT_HUB_PUBLIC_URL") or f"http://localhost:{port}"
    if configure_app_origins(c, environ, public_url) and environ is os.environ:
        # JupyterHub's own banner names the address it binds (127.0.0.1), where sign-in
        # would not carry over to the apps' hosts: say which address to open.
        from urllib.parse import urlparse

        print(
            f"\n  Open {public_url.rstrip('/')}/ (each analyst's apps are served from "
            f"<analyst>.{urlparse(public_url).netloc})\n",
            file=sys.stderr,
        )
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.db_url = f"sqlite:///{data_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(data_dir / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.command = find_proxy_command(HUB_CONFIG_DIR.parent)
    c.ConfigurableHTTPProxy.pid_file = str(data_dir / "jupyterhub-proxy.pid")
    # Ctrl-C stops the hub, the proxy and every app it started.
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True

    homes = data_dir / "homes"
    c.JupyterHub.spawner_class = "streamlit-local"
    c.StreamlitLocalSpawner.homes_root = str(homes)
    c.StreamlitLocalSpawner.logs_root = str(data_dir / "logs")

    auth = environ.get("STREAMLIT_HUB_AUTH", "demo")
    if auth == "google":
        configure_google(c, environ)
    elif auth == "demo":
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = demo.demo_password(data_dir, environ)
        c.Authenticator.allowed_users = set(demo.DEMO_USERS)
        c.Authenticator.admin_users = set(demo.DEMO_ADMINS)
        c.JupyterHub.load_groups = {g: {"users": list(u)} for g, u in demo.DEMO_GROUPS.items()}
        demo.seed_demo_apps(homes, HUB_CONFIG_DIR / "demo_app")
    else:
        raise ConfigError(f"STREAMLIT_HUB_AUTH={auth!r}: expected 'demo' or 'google'")
    policy = configure_policy(
        c,
        str(Path(environ.get("STREAMLIT_HUB_POLICY") or HUB_CONFIG_DIR / "policy.yaml").resolve()),
    )
    configure_culler(c, policy, environ)
    if auth == "google":
        configure_audit(c, data_dir, environ, reader_groups=_csv(environ, "GOOGLE_ADMIN_GROUPS"))
    else:
        configure_audit(c, data_dir, environ, readers=set(demo.DEMO_ADMINS))
    # Last: every setting is checked first; this one checks the machine (folder modes).
    configure_app_accounts(c, environ)


def _configured_list(section, name: str) -> list:
    """A list-valued setting as configured so far ([] if unset: traitlets gives a lazy value)."""
    value = section.get(name) if name in section else None
    return list(value) if isinstance(value, list) else []


def configure_audit(
    c,
    data_dir: Path,
    environ,
    *,
    readers: set[str] = frozenset(),
    reader_groups: set[str] = frozenset(),
    host: str = "127.0.0.1",
    bind: str | None = None,
) -> str | None:
    """The hub-managed audit service (``/services/audit/``) and the hub's recorder.

    ``STREAMLIT_HUB_AUDIT=off`` turns both off. The store is sqlite (WAL) under the data dir
    unless ``STREAMLIT_HUB_AUDIT_DB_URL`` names another database (PostgreSQL in production).
    ``readers`` / ``reader_groups`` get the ``audit-reader`` role (read every app's trail).
    Returns the ingest URL app servers send to, or None when audit is off.
    """
    from .audit import hub_recorder

    switch = environ.get("STREAMLIT_HUB_AUDIT", "on")
    if switch == "off":
        return None
    if switch != "on":
        raise ConfigError(f"STREAMLIT_HUB_AUDIT={switch!r}: expected 'on' or 'off'")
    port = _port(environ, "STREAMLIT_HUB_AUDIT_PORT", 8082)
    retention = environ.get("STREAMLIT_HUB_AUDIT_RETENTION_DAYS", "365")
    try:
        if not 0 < float(retention) <= 36500:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"STREAMLIT_HUB_AUDIT_RETENTION_DAYS={retention!r}: expected a "
            "number of days from 0 to 36500 (e.g. 365)"
        ) from None
    db_url = environ.get("STREAMLIT_HUB_AUDIT_DB_URL") or f"sqlite:///{data_dir / 'audit.sqlite'}"
    # ``host``: how the proxy and app servers reach the service (127.0.0.1 on one machine;
    # the hub's Kubernetes Service name in a cluster); ``bind``: where it listens.
    url = f"http://{host}:{port}"
    # The recorder in this process writes with the service's own token (a fresh one each
    # start; the hub keeps only its hash), which the service trusts for hub events.
    token = secrets.token_hex(32)
    service = {
        "name": "audit",
        "url": url,
        "command": [sys.executable, "-m", "spawner.audit.service"],
        "api_token": token,
        "cwd": str(data_dir),
        "environment": {
            "STREAMLIT_HUB_AUDIT_DB_URL": db_url,
            "STREAMLIT_HUB_AUDIT_RETENTION_DAYS": retention,
            "STREAMLIT_HUB_AUDIT_BIND": bind or host,
        },
        "display": True,
        "info": {"description": "Who opened which app, which page, when"},
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": ["custom:audit:read"],
    }
    c.JupyterHub.services = [
        s for s in _configured_list(c.JupyterHub, "services") if s.get("name") != "audit"
    ] + [service]
    c.JupyterHub.custom_scopes = {
        "custom:audit:read": {"description": "Read the audit trail of every app."}
    }
    role = {
        "name": "audit-reader",
        "description": "Reads every app's audit trail",
        "scopes": ["custom:audit:read"],
    }
    if readers:
        role["users"] = sorted(readers)
    if reader_groups:
        role["groups"] = sorted(reader_groups)
    roles = [
        r for r in _configured_list(c.JupyterHub, "load_roles") if r.get("name") != "audit-reader"
    ]
    # Every user may open the usage page (it shows them their own apps' trail).
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        user_role = {"name": "user", "scopes": ["self"]}
        roles.append(user_role)
    user_role["scopes"] = [*dict.fromkeys([*user_role["scopes"], "access:services!service=audit"])]
    c.JupyterHub.load_roles = [*roles, role]
    ingest = f"{url}/services/audit/api/events"
    hub_recorder.install(
        c, spool_dir=str(data_dir / "audit-spool" / "hub"), url=ingest, token=token
    )
    c.StreamlitSpawnerMixin.audit_url = ingest
    return ingest


def configure_kubernetes(c, environ) -> None:
    """On Kubernetes, inside the z2jh hub pod (``hub.extraConfig`` calls ``configure(c)``).

    The chart owns the hub's network, database, proxy and cookie secret; this adds what the
    platform needs: the ``streamlit-kube`` spawner, sign-in (Google; ``demo`` for a trial
    with ``STREAMLIT_HUB_DEMO_PASSWORD``), the group policy (a mounted ConfigMap), the audit
    service (reached through the hub's Service, ``STREAMLIT_HUB_AUDIT_HOST``, default ``hub``)
    and the idle culler. See helm-values/ and docs/deploy.md.
    """
    data_dir = Path(environ.get("STREAMLIT_HUB_DATA_DIR") or "/srv/jupyterhub")
    c.JupyterHub.spawner_class = "streamlit-kube"
    auth = environ.get("STREAMLIT_HUB_AUTH", "google")
    readers, reader_groups = set(), set()
    if auth == "google":
        configure_google(c, environ)
        reader_groups = _csv(environ, "GOOGLE_ADMIN_GROUPS")
    elif auth == "demo":
        password = _required(
            environ,
            "STREAMLIT_HUB_DEMO_PASSWORD",
            "the demo users' password (a trial only; use Google in production)",
        )
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = password
        c.Authenticator.allowed_users = set(demo.DEMO_USERS)
        c.Authenticator.admin_users = set(demo.DEMO_ADMINS)
        c.JupyterHub.load_groups = {g: {"users": list(u)} for g, u in demo.DEMO_GROUPS.items()}
        readers = set(demo.DEMO_ADMINS)
    else:
        raise ConfigError(f"STREAMLIT_HUB_AUTH={auth!r}: expected 'google' or 'demo'")
    policy_path = environ.get("STREAMLIT_HUB_POLICY") or "/usr/local/etc/streamlit-hub/policy.yaml"
    if not Path(policy_path).is_file():
        raise ConfigError(
            f"STREAMLIT_HUB_POLICY={policy_path!r}: no such file (mount the "
            "group policy ConfigMap there; see helm-values/values.yaml)"
        )
    public_url = environ.get("STREAMLIT_HUB_PUBLIC_URL", "")
    if not public_url and app_origins_mode(environ) == "per-user":
        raise ConfigError(
            "STREAMLIT_HUB_PUBLIC_URL is not set: the hub's public URL (e.g. "
            "https://apps.example.com); apps are served from <analyst>.apps.example.com, "
            "which needs a wildcard DNS record and certificate (docs/deploy.md)"
        )
    configure_app_origins(c, environ, public_url)
    policy = configure_policy(c, policy_path)
    configure_culler(c, policy, environ)
    configure_audit(
        c,
        data_dir,
        environ,
        readers=readers,
        reader_groups=reader_groups,
        host=environ.get("STREAMLIT_HUB_AUDIT_HOST", "hub"),
        bind=environ.get("STREAMLIT_HUB_AUDIT_BIND", "0.0.0.0"),
    )


def load_extra_config(c, environ=None) -> None:
    """Run ``STREAMLIT_HUB_EXTRA_CONFIG`` (a Python file) with ``c`` in scope, last."""
    environ = os.environ if environ is None else environ
    path = environ.get("STREAMLIT_HUB_EXTRA_CONFIG")
    if not path:
        return
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"STREAMLIT_HUB_EXTRA_CONFIG={path!r}: no such file")
    code = compile(p.read_text(), str(p), "exec")
    exec(code, {"c": c, "__file__": str(p), "__name__": "streamlit_hub_extra_config"})
