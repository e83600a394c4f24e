"""What an app server learns from its environment, read once at start-up.

JupyterHub's spawner sets the ``JUPYTERHUB_*`` variables; the Streamlit spawners add the
``STREAMLIT_HUB_*`` ones. ``from_environ`` removes the app server's API token from
``os.environ`` so the analyst's code does not find it by reading the environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

from ..client_address import DEFAULT_TRUSTED_PROXIES, Network, configured_networks, parse_networks


class SettingsError(RuntimeError):
    """The app server cannot start: a required variable is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    api_url: str  # e.g. http://127.0.0.1:8081/hub/api
    api_token: str = field(repr=False)
    client_id: str
    prefix: str  # /user/alice/demo/
    callback_path: str  # /user/alice/demo/oauth_callback
    callback_url: (
        str  # what the hub registered: http://alice.localhost:8000/user/alice/demo/oauth_callback
    )
    authorize_url: str  # [host]/hub/api/oauth2/authorize
    hub_url: str  # [host]/hub/ : for links in pages
    access_scopes: frozenset[str]
    owner: str
    server_name: str
    activity_url: str
    bind_host: str
    bind_port: int
    entry: str
    auth_cache_seconds: float = 30.0
    activity_interval: float = 60.0
    secure_cookies: bool = False
    pass_cookies: tuple[str, ...] = ()
    profile: str = ""
    audit_url: str = ""  # the audit service's ingest API; empty: audit off
    audit_spool: str = ""  # where events wait on disk until the service has them
    # proxies whose X-Forwarded-For entries the audit trail believes (the hub's setting)
    trusted_proxies: tuple[Network, ...] = parse_networks(DEFAULT_TRUSTED_PROXIES)


def _required(env: dict, name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise SettingsError(f"{name} is not set: this program is started by the hub's spawner.")
    return value


def _float(env: dict, name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} must be between {low} and {high}")
    return value


def _networks(env: dict) -> tuple[Network, ...]:
    try:
        return configured_networks(env)
    except ValueError as e:
        raise SettingsError(str(e)) from None


TOKEN_FD_VARIABLE = "STREAMLIT_HUB_API_TOKEN_FD"


def _api_token(env: dict) -> str:
    """The server's API token: from the pipe the local spawner passes (``STREAMLIT_HUB_API_TOKEN_FD``,
    read once to its end and closed, so it is never in ``/proc/<pid>/environ``), else from
    ``JUPYTERHUB_API_TOKEN`` (Kubernetes passes it by reference from a Secret)."""
    raw_fd = env.get(TOKEN_FD_VARIABLE, "")
    if not raw_fd:
        return _required(env, "JUPYTERHUB_API_TOKEN")
    if not raw_fd.isdigit():
        raise SettingsError(f"{TOKEN_FD_VARIABLE}={raw_fd!r} is not a file descriptor")
    chunks = []
    try:
        with os.fdopen(int(raw_fd), "rb", closefd=True) as pipe:
            while chunk := pipe.read(4096):
                chunks.append(chunk)
                if sum(map(len, chunks)) > 4096:
                    raise SettingsError(f"{TOKEN_FD_VARIABLE}: more than a token came through")
    except OSError as e:
        raise SettingsError(f"{TOKEN_FD_VARIABLE}={raw_fd}: cannot read the token ({e})") from None
    token = b"".join(chunks).decode("ascii", "replace").strip()
    if not token:
        raise SettingsError(f"{TOKEN_FD_VARIABLE}: the hub sent no token")
    return token


def from_environ(env: dict | None = None, *, scrub: bool = True) -> Settings:
    env = os.environ if env is None else env
    api_url = _required(env, "JUPYTERHUB_API_URL").rstrip("/")
    token = _api_token(env)
    prefix = _required(env, "JUPYTERHUB_SERVICE_PREFIX")
    if not prefix.endswith("/"):
        prefix += "/"
    try:
        scopes = frozenset(json.loads(env.get("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "[]")))
    except ValueError:
        raise SettingsError("JUPYTERHUB_OAUTH_ACCESS_SCOPES is not a JSON list") from None
    if not scopes:
        raise SettingsError("JUPYTERHUB_OAUTH_ACCESS_SCOPES is empty: nobody could be let in")
    host = env.get("JUPYTERHUB_HOST", "").rstrip("/")
    base = env.get("JUPYTERHUB_BASE_URL", "/") or "/"
    if not base.endswith("/"):
        base += "/"
    bind = urlparse(_required(env, "JUPYTERHUB_SERVICE_URL"))
    public = env.get("JUPYTERHUB_PUBLIC_URL", "")
    # Absolute when apps have hosts of their own (subdomain_host); the hub compares the
    # redirect_uri of a sign-in with it character for character.
    callback = env.get("JUPYTERHUB_OAUTH_CALLBACK_URL") or prefix + "oauth_callback"
    settings = Settings(
        api_url=api_url,
        api_token=token,
        client_id=_required(env, "JUPYTERHUB_CLIENT_ID"),
        prefix=prefix,
        callback_path=urlparse(callback).path,
        callback_url=callback,
        authorize_url=f"{host}{base}hub/api/oauth2/authorize",
        hub_url=f"{host}{base}hub/",
        access_scopes=scopes,
        owner=_required(env, "JUPYTERHUB_USER"),
        server_name=env.get("JUPYTERHUB_SERVER_NAME", ""),
        activity_url=env.get("JUPYTERHUB_ACTIVITY_URL", ""),
        bind_host=bind.hostname or "127.0.0.1",
        bind_port=bind.port or 8888,
        entry=_required(env, "STREAMLIT_HUB_ENTRY"),
        auth_cache_seconds=_float(env, "STREAMLIT_HUB_AUTH_CACHE_SECONDS", 30.0, 0.0, 300.0),
        activity_interval=_float(env, "STREAMLIT_HUB_ACTIVITY_INTERVAL", 60.0, 0.05, 3600.0),
        secure_cookies=public.startswith("https:") or host.startswith("https:"),
        profile=env.get("STREAMLIT_HUB_PROFILE", ""),
        audit_url=env.get("STREAMLIT_HUB_AUDIT_URL", ""),
        audit_spool=env.get("STREAMLIT_HUB_AUDIT_SPOOL", ""),
        trusted_proxies=_networks(env),  # STREAMLIT_HUB_TRUSTED_PROXIES
        pass_cookies=tuple(
            c.strip() for c in env.get("STREAMLIT_HUB_PASS_COOKIES", "").split(",") if c.strip()
        ),
    )
    if settings.audit_url and not settings.audit_spool:
        raise SettingsError(
            "STREAMLIT_HUB_AUDIT_URL is set but STREAMLIT_HUB_AUDIT_SPOOL is not: "
            "audit events need a directory to wait in"
        )
    if scrub and env is os.environ:
        # The token stays in this process's memory only; the analyst's code must not be
        # handed it through os.environ (nor any child process it starts).
        os.environ.pop("JUPYTERHUB_API_TOKEN", None)
        os.environ.pop("JPY_API_TOKEN", None)
        os.environ.pop(TOKEN_FD_VARIABLE, None)
    return settings
