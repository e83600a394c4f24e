"""``configure(c)``: the whole hub configuration, called by ``hub_config/jupyterhub_config.py``.

Logic lives here, in tested Python, so that ``jupyterhub_config.py`` (and, on Kubernetes,
z2jh's ``hub.extraConfig``) only import and call it.

Modes (``StreamlitHub.mode``, ``STREAMLIT_HUB_MODE``):

- ``local`` (default): one machine, no cluster: sqlite and all state under the data dir,
  the ``streamlit-local`` spawner, demo users and groups.
- ``kubernetes``: inside the Zero to JupyterHub chart's hub pod, the ``streamlit-kube``
  spawner.

The settings are one object, :class:`spawner.settings.StreamlitHub`, made once here from
the configuration and the environment and checked at hub start-up (a typo stops the hub with
the variable named, not the first spawn); every function below reads that object.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

from . import demo
from .policy import Policy, PolicyError, PolicyFile, load_policy
from .settings import HUB_CONFIG_DIR, ConfigError, StreamlitHub

__all__ = ["HUB_CONFIG_DIR", "ConfigError", "StreamlitHub", "configure", "load_extra_config"]


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


def configure_google(c, s: StreamlitHub) -> None:
    """Google sign-in, with hub groups filled from Google Groups at every login and refresh.

    The group policy is keyed on hub group names; this keeps them equal to the user's Google
    Groups (the local part of each group's address, e.g. analysts@example.com -> analysts).
    """
    domain = s.require("google_workspace_domain", "the Google Workspace domain, e.g. example.com")
    admin_user = s.require(
        "google_admin_user",
        "the local part of a Workspace admin the service account impersonates to read groups",
    )
    if "@" in admin_user:
        raise ConfigError(
            f"GOOGLE_ADMIN_USER={admin_user!r}: give only the local part (e.g. 'admin', not "
            f"'admin@{domain}'); oauthenticator adds '@{domain}' itself"
        )
    key_file = s.require(
        "google_service_account_key_file",
        "path of the service account's JSON key (domain-wide delegation)",
    )
    if not Path(key_file).is_file():
        raise ConfigError(f"GOOGLE_SERVICE_ACCOUNT_KEY_FILE={key_file!r}: no such file")
    if not s.environ.get("JUPYTERHUB_CRYPT_KEY") and not _configured_list(c.CryptKeeper, "keys"):
        raise ConfigError(
            "JUPYTERHUB_CRYPT_KEY is not set: Google groups are kept in the "
            "encrypted auth state (openssl rand -hex 32)"
        )
    allowed = set(s.google_allowed_groups)
    if not allowed:
        raise ConfigError(
            "GOOGLE_ALLOWED_GROUPS is not set: the Google Groups whose members "
            "may sign in, comma-separated, e.g. analysts,data-scientists,viewers"
        )
    public = s.require("public_url", "the hub's public URL, e.g. https://apps.example.com")

    c.JupyterHub.authenticator_class = "google"
    g = c.GoogleOAuthenticator
    g.client_id = s.require("google_client_id", "the OAuth client id")
    g.client_secret = s.require("google_client_secret", "the OAuth client secret")
    g.oauth_callback_url = public.rstrip("/") + "/hub/oauth_callback"
    g.hosted_domain = [domain]
    g.allowed_google_groups = {domain: allowed}
    g.admin_google_groups = {domain: set(s.google_admin_groups)}
    g.gsuite_administrator = {domain: admin_user}
    g.google_service_account_keys = {domain: key_file}
    g.manage_groups = True
    g.auth_state_groups_key = "google_user.google_groups"
    c.Authenticator.enable_auth_state = True
    # Re-read groups before a start if the last check is older than an hour, so a membership
    # change reaches the policy without waiting for the next login.
    c.Authenticator.refresh_pre_spawn = True
    c.Authenticator.auth_refresh_age = s.auth_refresh_seconds


def configure(c, environ=None) -> StreamlitHub:
    """The whole hub configuration, from ``c.StreamlitHub`` and the environment.

    ``environ``: where the variables are read (``os.environ``; tests pass a dict).
    Returns the settings it used.
    """
    s = StreamlitHub(config=c, environ=environ)
    if s.mode == "local":
        configure_local(c, s)
    else:
        configure_kubernetes(c, s)
    configure_common(c, s)
    if "trusted_proxies" not in c.StreamlitSpawnerMixin:
        # the spawners pass it to app servers; the hub's recorder reads it from there
        c.StreamlitSpawnerMixin.trusted_proxies = list(s.trusted_proxies)
    return s


def demo_sign_in(c, password: str) -> None:
    """The demo users, admins and groups, all with one password (never in production)."""
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = password
    c.Authenticator.allowed_users = set(demo.DEMO_USERS)
    c.Authenticator.admin_users = set(demo.DEMO_ADMINS)
    c.JupyterHub.load_groups = {g: {"users": list(u)} for g, u in demo.DEMO_GROUPS.items()}


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


def configure_policy(c, path: str) -> Policy:
    """Validate the group policy now (a bad file stops the hub) and hand one
    :class:`PolicyFile` to every hub-side consumer; the spawners get its path."""
    from .app_output import AppOutputAPIHandler, AppStatusAPIHandler
    from .quota import QuotaAPIHandler, make_named_server_limit, make_template_quota
    from .share_names import ShareNamesAPIHandler
    from .viewer import template_viewer

    try:
        policy = load_policy(path)
    except PolicyError as e:
        raise ConfigError(f"group policy: {e}") from None
    source = PolicyFile(path)
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
        policy_authenticator(_resolve_authenticator(current), source)
    )
    c.JupyterHub.named_server_limit_per_user = make_named_server_limit(source)
    # JupyterHub marks extra_handlers deprecated (3.1) but serves them; these two move into
    # the platform's hub-managed service when the audit service lands.
    c.JupyterHub.extra_handlers = [
        (r"/api/streamlit/quota", QuotaAPIHandler, {"policy": source}),
        (r"/api/streamlit/apps/([^/]+)/([^/]+)/output", AppOutputAPIHandler),
        (r"/api/streamlit/apps/([^/]+)/([^/]+)/status", AppStatusAPIHandler),
        # the share dialog's name suggestions (spawner/share_names.py)
        (r"/api/streamlit/share-names/([^/]+)/([^/]+)", ShareNamesAPIHandler),
    ]
    c.JupyterHub.template_vars = {
        **_configured_dict(c.JupyterHub, "template_vars"),
        "streamlit_quota": make_template_quota(source),
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


def configure_culler(c, policy, s: StreamlitHub) -> None:
    """``jupyterhub-idle-culler`` as a hub-managed service, with the policy's timeouts.

    ``STREAMLIT_HUB_IDLE_TIMEOUT`` (seconds, default 3600; ``0`` turns culling off) applies
    to apps whose owner's groups set no ``idle_timeout``; see ``spawner/culling.py``.
    """
    from .culling import cull_every

    default = s.idle_timeout  # checked by the settings: 0 (off) or at least 30
    if default == 0:
        return
    service = {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={default}",
            f"--cull-every={cull_every(policy, default)}",
            "--remove-named-servers=false",
            f"--config={Path(s.config_dir) / 'idle_culler_config.py'}",
        ],
        "cwd": s.config_dir,
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


def configure_common(c, s: StreamlitHub) -> None:
    """What every mode shares: named servers as apps, templates, OAuth scopes for apps."""
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.default_url = "/hub/home"
    # Ours first; template folders configured before (the chart's hub.templatePaths) stay.
    ours = str(Path(s.config_dir) / "templates")
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
    # Owners' app secrets: the encrypted store under the data dir and its API (#16).
    from .app_secrets_api import configure_app_secrets

    configure_app_secrets(c, s.data_dir)


def configure_app_origins(c, s: StreamlitHub) -> bool:
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

    public_url = s.public_url
    if s.app_origins == "shared":
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
            f"{s.variable('public_url')}={public_url!r}: expected the hub's public "
            "address with no path, e.g. https://apps.example.com"
        )
    try:
        ipaddress.ip_address(parsed.hostname)
    except ValueError:
        pass
    else:
        raise ConfigError(
            f"{s.variable('public_url')}={public_url!r}: apps get hosts of their own under the "
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
        if entry.name in ("homes", "logs", "publish") or entry.is_symlink():
            continue
        os.chmod(entry, 0o700 if entry.is_dir() else 0o600)


def configure_app_accounts(c, s: StreamlitHub) -> None:
    """Which Unix user local apps run as (``STREAMLIT_HUB_APP_ACCOUNTS``, see spawner/local.py).

    With per-user accounts the app environment must be reachable by them: checked here, so a
    checkout in a private folder stops the hub with the folder named, not every app start.
    Apps that run as the hub's user are trusted code: said in the log and on the home page.
    """
    import logging

    from .local import apps_run_as_hub_user, default_app_python
    from .unix_users import blocked_for_others

    mode = s.app_accounts
    c.StreamlitLocalSpawner.app_accounts = mode
    if s.app_python:
        c.StreamlitLocalSpawner.app_python = s.app_python
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
    python = s.app_python or default_app_python()
    blocked = blocked_for_others(python)
    if blocked:
        raise ConfigError(
            f"the app environment ({python}) cannot be reached by the per-analyst app accounts: "
            f"{blocked} is closed to other users. Build it with `make install` in a folder "
            "others may pass through (chmod o+x on the folders above it), point "
            "STREAMLIT_HUB_APP_PYTHON at one, or set STREAMLIT_HUB_APP_ACCOUNTS=hub (trusted apps)."
        )


def configure_local(c, s: StreamlitHub) -> None:
    data_dir = Path(s.data_dir).resolve()
    secure_data_dir(data_dir, private_umask=s.environ is os.environ)

    c.JupyterHub.ip = "127.0.0.1"
    c.JupyterHub.port = s.port
    # What a person needs to know, said once everything is checked (a bad setting after it
    # would leave an address and a password above the error).
    notices = []
    if configure_app_origins(c, s) and s.environ is os.environ:
        # JupyterHub's own banner names the address it binds (127.0.0.1), where sign-in
        # would not carry over to the apps' hosts: say which address to open.
        from urllib.parse import urlparse

        notices.append(
            f"Open {s.public_url.rstrip('/')}/ (each analyst's apps are served from "
            f"<analyst>.{urlparse(s.public_url).netloc})"
        )
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = s.hub_api_port
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s.proxy_api_port}"
    _refuse_port_clash(s)
    if s.environ is os.environ:  # the hub itself starting, not a test building a config
        refuse_ports_in_use(s, proxy_pid_file=data_dir / "jupyterhub-proxy.pid")
    c.JupyterHub.db_url = f"sqlite:///{data_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(data_dir / "jupyterhub.pid")
    c.ConfigurableHTTPProxy.command = find_proxy_command(Path(__file__).resolve().parent.parent)
    c.ConfigurableHTTPProxy.pid_file = str(data_dir / "jupyterhub-proxy.pid")
    # Ctrl-C stops the hub, the proxy and every app it started.
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True

    homes = data_dir / "homes"
    c.JupyterHub.spawner_class = "streamlit-local"
    c.JupyterHub.template_vars = {
        **_configured_dict(c.JupyterHub, "template_vars"),
        "streamlit_homes_root": str(homes),
        "streamlit_demo_owners": list(demo.DEMO_APP_OWNERS) if s.auth == "demo" else [],
    }
    c.StreamlitLocalSpawner.homes_root = str(homes)
    c.StreamlitLocalSpawner.logs_root = str(data_dir / "logs")

    if s.auth == "google":
        configure_google(c, s)
    else:
        password = s.demo_password or demo.demo_password(data_dir)
        demo_sign_in(c, password)
        demo.seed_demo_apps(homes, Path(s.config_dir) / "demo_app")
        if not s.demo_password:
            notices.append(demo.password_notice(data_dir, password))
    policy = configure_policy(c, str(Path(s.policy).resolve()))
    from .policy import KUBERNETES_ONLY, kubernetes_only_grants

    grants = kubernetes_only_grants(policy)
    if grants:
        import logging

        logging.getLogger("JupyterHub").warning(
            "group policy: %s: %s", ", ".join(grants), KUBERNETES_ONLY
        )
    configure_culler(c, policy, s)
    if s.publishing:
        configure_publishing(c, s, data_dir / "publish", PolicyFile(str(Path(s.policy).resolve())))
    if s.auth == "google":
        configure_audit(c, data_dir, s, reader_groups=set(s.google_admin_groups))
    else:
        configure_audit(c, data_dir, s, readers=set(demo.DEMO_ADMINS))
    # Last: every setting is checked first; this one checks the machine (folder modes).
    configure_app_accounts(c, s)
    for notice in notices:
        print(f"\n  {notice}\n", file=sys.stderr)


def configure_publishing(c, s: StreamlitHub, root: Path, policy: PolicyFile | None) -> None:
    """The publishing API (``spawner/publish_api.py``) and where spawners find versions.

    ``root`` (``<data>/publish``) is ``711``: app accounts pass through it to their own
    extracted versions (``runs/<user>/``, their group only) and to the built environments
    (readable: they run them); bundles, version records and build logs stay the hub's.
    """
    from .bundle_api import bundle_handlers
    from .environments import EnvironmentStore
    from .local import default_app_python
    from .publish_api import publish_handlers
    from .publishing import Publisher

    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    os.chmod(root, 0o711)
    if s.mode == "local":
        environments = EnvironmentStore(
            root / "environments",
            s.app_python or default_app_python(),
            index_url=s.package_index or None,
            find_links=list(s.package_find_links),
            no_index=s.package_offline,
            build_timeout=s.build_timeout,
            disk_budget=int(s.environments_disk_gb * 2**30),
        )
        publisher = Publisher(root, environments, policy=policy)
    else:  # each app pod builds its own environment (spawner/app_server/published.py)
        publisher = Publisher(root, None, policy=policy, index_url=s.package_index or None)
        k = c.StreamlitKubeSpawner
        k.package_index = s.package_index
        k.package_find_links = list(s.package_find_links)
        k.package_offline = s.package_offline
        k.build_timeout = s.build_timeout
    c.StreamlitSpawnerMixin.publish_dir = str(root)
    c.JupyterHub.extra_handlers = [
        *_configured_list(c.JupyterHub, "extra_handlers"),
        *publish_handlers(publisher),
        *bundle_handlers(publisher),
    ]


def refuse_ports_in_use(s: StreamlitHub, proxy_pid_file: Path | None = None) -> None:
    """A port another program holds stops the hub now, with the setting to change named
    (JupyterHub would fail later with a traceback, leaving the proxy running).

    The proxy this hub started last time may still run (the hub restarted, not stopped):
    JupyterHub takes it over, so its two ports are not another program's.
    """
    import errno
    import socket

    ports = [("hub_api_port", s.hub_api_port)]
    from .startup import proxy_running

    if not (proxy_pid_file and proxy_running(proxy_pid_file)):
        ports[:0] = [("port", s.port), ("proxy_api_port", s.proxy_api_port)]
    if s.audit == "on":
        ports.append(("audit_port", s.audit_port))
    for name, port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                raise ConfigError(
                    f"{s.variable(name)}={port}: 127.0.0.1:{port} is in use (another hub, or "
                    f"another program): stop it or set {s.variable(name)} to a free port"
                ) from None


def _refuse_port_clash(s: StreamlitHub) -> None:
    """Two of the hub's own ports on one number would fail later with a bind error."""
    ports = {
        "port": s.port,
        "hub_api_port": s.hub_api_port,
        "proxy_api_port": s.proxy_api_port,
    }
    if s.audit == "on":
        ports["audit_port"] = s.audit_port
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port in seen:
            raise ConfigError(
                f"{s.variable(name)}={port} is also {s.variable(seen[port])}: the hub's "
                "public, internal API, proxy API and audit ports must differ"
            )
        seen[port] = name


def _configured_list(section, name: str) -> list:
    """A list-valued setting as configured so far ([] if unset: traitlets gives a lazy value)."""
    value = section.get(name) if name in section else None
    return list(value) if isinstance(value, list) else []


def configure_audit(
    c,
    data_dir: Path,
    s: StreamlitHub,
    *,
    readers: set[str] = frozenset(),
    reader_groups: set[str] = frozenset(),
) -> str | None:
    """The hub-managed audit service (``/services/audit/``) and the hub's recorder.

    ``audit = "off"`` turns both off. The store is sqlite (WAL) under the data dir unless
    ``audit_db_url`` names another database (PostgreSQL in production).
    ``readers`` / ``reader_groups`` get the ``audit-reader`` role (read every app's trail).
    Returns the ingest URL app servers send to, or None when audit is off.
    """
    from .audit import hub_recorder

    if s.audit == "off":
        return None
    # ``audit_host``: how the proxy and app servers reach the service (127.0.0.1 on one
    # machine; the hub's Kubernetes Service name in a cluster); ``audit_bind``: where it listens.
    url = f"http://{s.audit_host}:{s.audit_port}"
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
            "STREAMLIT_HUB_AUDIT_DB_URL": s.audit_db_url,
            "STREAMLIT_HUB_AUDIT_RETENTION_DAYS": f"{s.audit_retention_days:g}",
            "STREAMLIT_HUB_AUDIT_BIND": s.audit_bind,
        },
        "display": True,
        # display_name: its entry in the hub's Services menu (hub_config/templates/page.html)
        "info": {"description": "Who opened which app, which page, when", "display_name": "Usage"},
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


def configure_kubernetes(c, s: StreamlitHub) -> None:
    """On Kubernetes, inside the z2jh hub pod (``hub.extraConfig`` calls ``configure(c)``).

    The chart owns the hub's network, database, proxy and cookie secret; this adds what the
    platform needs: the ``streamlit-kube`` spawner, sign-in (Google; ``demo`` for a trial
    with ``STREAMLIT_HUB_DEMO_PASSWORD``), the group policy (a mounted ConfigMap), the audit
    service (reached through the hub's Service, ``audit_host``, default ``hub``) and the idle
    culler. See helm-values/ and docs/deploy.md.
    """
    data_dir = Path(s.data_dir)
    c.JupyterHub.spawner_class = "streamlit-kube"
    readers, reader_groups = set(), set()
    if s.auth == "google":
        configure_google(c, s)
        reader_groups = set(s.google_admin_groups)
    else:
        demo_sign_in(
            c,
            s.require(
                "demo_password", "the demo users' password (a trial only; use Google in production)"
            ),
        )
        readers = set(demo.DEMO_ADMINS)
    if not Path(s.policy).is_file():
        raise ConfigError(
            f"{s.variable('policy')}={s.policy!r}: no such file (mount the "
            "group policy ConfigMap there; see helm-values/values.yaml)"
        )
    if s.app_origins == "per-user":
        s.require(
            "public_url",
            "the hub's public URL (e.g. https://apps.example.com); apps are served from "
            "<analyst>.apps.example.com, which needs a wildcard DNS record and certificate "
            "(docs/deploy.md)",
        )
    configure_app_origins(c, s)
    policy = configure_policy(c, s.policy)
    configure_culler(c, policy, s)
    if s.publishing:
        configure_publishing(c, s, data_dir / "publish", PolicyFile(s.policy))
    configure_audit(c, data_dir, s, readers=readers, reader_groups=reader_groups)


def load_extra_config(c, environ=None) -> None:
    """Run ``extra_config`` (``STREAMLIT_HUB_EXTRA_CONFIG``, a Python file) with ``c`` in
    scope, last."""
    s = StreamlitHub(config=c, environ=environ)
    path = s.extra_config
    if not path:
        return
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{s.variable('extra_config')}={path!r}: no such file")
    code = compile(p.read_text(), str(p), "exec")
    exec(code, {"c": c, "__file__": str(p), "__name__": "streamlit_hub_extra_config"})
