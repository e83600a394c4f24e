"""What an app server learns from its environment, read once at start-up.

JupyterHub's spawner sets the ``JUPYTERHUB_*`` variables; the Streamlit spawners add the
``STREAMLIT_HUB_*`` ones. ``from_environ`` removes the app server's API token from
``os.environ`` so the analyst's code does not find it by reading the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from traitlets import Float, Integer, List, Unicode, validate

from ..client_address import DEFAULT_TRUSTED_PROXIES, Network, parse_networks
from ..settings import EnvSettings, checked_networks, log_level_setting


class SettingsError(RuntimeError):
    """The app server cannot start: a required variable is missing or malformed."""


TOKEN_FD_VARIABLE = "STREAMLIT_HUB_API_TOKEN_FD"


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
    log_level: str = "INFO"


class AppServerSettings(EnvSettings):
    """An app server's own settings, set by the Streamlit spawners (``JUPYTERHUB_*`` are
    JupyterHub's and read in :func:`from_environ`)."""

    error_class = SettingsError
    wording = "{var}={value} is not {expect}"

    entry = Unicode(help="The app's entry file (app.py), as the spawner resolved it.").tag(
        env="STREAMLIT_HUB_ENTRY"
    )
    auth_cache_seconds = Float(
        30.0,
        min=0.0,
        max=300.0,
        help="How long a viewer's access verdict is reused before the hub is asked again.",
    ).tag(env="STREAMLIT_HUB_AUTH_CACHE_SECONDS", expect="a number between 0 and 300")
    activity_interval = Float(
        60.0,
        min=0.05,
        max=3600.0,
        help="Seconds between the activity reports the idle culler reads.",
    ).tag(env="STREAMLIT_HUB_ACTIVITY_INTERVAL", expect="a number between 0.05 and 3600")
    profile = Unicode(help="The machine size the app runs on (shown to viewers).").tag(
        env="STREAMLIT_HUB_PROFILE"
    )
    audit_url = Unicode(help="The audit service's ingest API; empty: audit off.").tag(
        env="STREAMLIT_HUB_AUDIT_URL"
    )
    audit_spool = Unicode(
        help="The folder where audit events wait on disk until the service has them."
    ).tag(env="STREAMLIT_HUB_AUDIT_SPOOL")
    trusted_proxies = List(
        Unicode(),
        list(DEFAULT_TRUSTED_PROXIES),
        help="Networks whose X-Forwarded-For entries the audit trail believes (the hub's "
        "trusted_proxies, passed on).",
    ).tag(env="STREAMLIT_HUB_TRUSTED_PROXIES", expect="comma-separated networks")
    pass_cookies = List(
        Unicode(),
        help="Cookie names passed through to the app (comma-separated); every other cookie "
        "of the hub's domain is removed before the app sees the request.",
    ).tag(env="STREAMLIT_HUB_PASS_COOKIES")
    api_token_fd = Integer(
        -1,
        min=-1,
        help="The pipe the local spawner passes the app server's API token through (read "
        "once, so it is never in the process environment); -1: JUPYTERHUB_API_TOKEN.",
    ).tag(env=TOKEN_FD_VARIABLE, expect="a file descriptor")
    log_level = log_level_setting("app server")

    @validate("trusted_proxies")
    def _validate_trusted_proxies(self, proposal):
        return checked_networks(proposal)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise SettingsError(f"{name} is not set: this program is started by the hub's spawner.")
    return value


def _api_token(env: Mapping[str, str], fd: int) -> str:
    """The server's API token: from the pipe the local spawner passes (``STREAMLIT_HUB_API_TOKEN_FD``,
    read once to its end and closed, so it is never in ``/proc/<pid>/environ``), else from
    ``JUPYTERHUB_API_TOKEN`` (Kubernetes passes it by reference from a Secret)."""
    if fd < 0:
        return _required(env, "JUPYTERHUB_API_TOKEN")
    chunks = []
    try:
        with os.fdopen(fd, "rb", closefd=True) as pipe:
            while chunk := pipe.read(4096):
                chunks.append(chunk)
                if sum(map(len, chunks)) > 4096:
                    raise SettingsError(f"{TOKEN_FD_VARIABLE}: more than a token came through")
    except OSError as e:
        raise SettingsError(f"{TOKEN_FD_VARIABLE}={fd}: cannot read the token ({e})") from None
    token = b"".join(chunks).decode("ascii", "replace").strip()
    if not token:
        raise SettingsError(f"{TOKEN_FD_VARIABLE}: the hub sent no token")
    return token


def from_environ(env: Mapping[str, str] | None = None, *, scrub: bool = True) -> Settings:
    env = os.environ if env is None else env
    own = AppServerSettings(environ=env)
    api_url = _required(env, "JUPYTERHUB_API_URL").rstrip("/")
    token = _api_token(env, own.api_token_fd)
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
        entry=own.require("entry", "this program is started by the hub's spawner."),
        auth_cache_seconds=own.auth_cache_seconds,
        activity_interval=own.activity_interval,
        secure_cookies=public.startswith("https:") or host.startswith("https:"),
        profile=own.profile,
        audit_url=own.audit_url,
        audit_spool=own.audit_spool,
        trusted_proxies=parse_networks(",".join(own.trusted_proxies)),
        pass_cookies=tuple(own.pass_cookies),
        log_level=own.log_level,
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
