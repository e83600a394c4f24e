"""What an app server learns from its environment, read once at start-up.

JupyterHub's spawner sets the ``JUPYTERHUB_*`` variables; the Streamlit spawners add the
``STREAMLIT_HUB_*`` ones. ``from_environ`` removes the app server's API token from
``os.environ`` so the analyst's code does not find it by reading the environment.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from traitlets import Bool, Float, Integer, List, Unicode, validate

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
    version: str = ""  # the published version running (v3); empty: the owner's home folder
    audit_url: str = ""  # the audit service's ingest API; empty: audit off
    audit_spool: str = ""  # where events wait on disk until the service has them
    # proxies whose X-Forwarded-For entries the audit trail believes (the hub's setting)
    trusted_proxies: tuple[Network, ...] = parse_networks(DEFAULT_TRUSTED_PROXIES)
    log_level: str = "INFO"
    workers: int = 1  # Streamlit worker processes behind this auth layer (workers.py)
    # the owner's app secrets that came through the pipe with the token (local mode); the
    # launcher puts them into the environment before Streamlit starts
    app_secrets: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


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
    app_version = Unicode(
        help="The published version this app server runs (v3), recorded on its audit events; "
        "empty when it runs from its owner's home folder."
    ).tag(env="STREAMLIT_HUB_APP_VERSION")
    bundle_digest = Unicode(
        help="Kubernetes: the published version's bundle (sha256:...) this app server fetches "
        "from the hub, verifies and extracts into bundle_dir before it starts.",
    ).tag(env="STREAMLIT_HUB_BUNDLE_DIGEST")
    bundle_dir = Unicode(
        "/tmp/streamlit-hub-bundle",
        help="Kubernetes: the folder (on the pod's scratch volume) the bundle is extracted to.",
    ).tag(env="STREAMLIT_HUB_BUNDLE_DIR")
    bundle_ready = Unicode(
        help="Set by the app server itself when it runs again on the version's environment: "
        "the bundle it already fetched (never set it by hand).",
    ).tag(env="STREAMLIT_HUB_BUNDLE_READY")
    package_index = Unicode(
        help="Kubernetes: the package index the app's requirements.txt is built from "
        "(the group's, else the hub's; empty: PyPI).",
    ).tag(env="STREAMLIT_HUB_PACKAGE_INDEX", secret=True)
    package_find_links = List(
        Unicode(),
        help="Kubernetes: wheel folders or URLs the build may also use (the hub's setting).",
    ).tag(env="STREAMLIT_HUB_FIND_LINKS")
    package_offline = Bool(
        False, help="Kubernetes: build from package_find_links only, never an index."
    ).tag(env="STREAMLIT_HUB_PACKAGE_OFFLINE", expect="true or false")
    build_timeout = Float(
        600.0, min=1.0, help="Kubernetes: seconds the app's environment build may take."
    ).tag(env="STREAMLIT_HUB_BUILD_TIMEOUT", expect="a number of seconds")
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
    private_memory = Bool(
        False,
        help="Make the app server non-dumpable before it reads its token and the app's secrets, "
        "so the owner's other apps (the same account) cannot read its memory or environment "
        "in /proc; set by the local spawner with per-user accounts.",
    ).tag(env="STREAMLIT_HUB_PRIVATE_MEMORY", expect="true or false")
    workers = Integer(
        1,
        min=1,
        max=64,
        help="Streamlit worker processes serving the app behind its one auth layer (the "
        "workers option, within the policy's max_workers); 1: one process, as before.",
    ).tag(env="STREAMLIT_HUB_WORKERS", expect="a whole number from 1 to 64")
    log_level = log_level_setting("app server")

    @validate("trusted_proxies")
    def _validate_trusted_proxies(self, proposal):
        return checked_networks(proposal)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise SettingsError(f"{name} is not set: this program is started by the hub's spawner.")
    return value


def _api_token(env: Mapping[str, str], fd: int) -> tuple[str, dict[str, str]]:
    """The server's API token and the app's secrets: from the pipe the local spawner passes
    (``STREAMLIT_HUB_API_TOKEN_FD``, read once to its end and closed, so neither is ever in
    ``/proc/<pid>/environ``), else the token from ``JUPYTERHUB_API_TOKEN`` (Kubernetes passes
    it, and the secrets, by reference from a Secret)."""
    if fd < 0:
        return _required(env, "JUPYTERHUB_API_TOKEN"), {}
    return read_pipe(fd)


# What the local spawner's pipe may carry: the token, then the owner's app secrets as
# NAME=value, NUL-separated (spawner/app_secrets.py: pipe_payload keeps them within 48 KiB).
MAX_PIPE_BYTES = 64 * 1024
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read_pipe(fd: int) -> tuple[str, dict[str, str]]:
    """(token, app secrets) from the pipe ``fd``, read once to its end and closed. Errors
    name the variable, never what came through."""
    chunks = []
    try:
        with os.fdopen(fd, "rb", closefd=True) as pipe:
            while chunk := pipe.read(65536):
                chunks.append(chunk)
                if sum(map(len, chunks)) > MAX_PIPE_BYTES:
                    raise SettingsError(
                        f"{TOKEN_FD_VARIABLE}: more than a token and its app's secrets came through"
                    )
    except OSError as e:
        raise SettingsError(f"{TOKEN_FD_VARIABLE}={fd}: cannot read the token ({e})") from None
    first, *items = b"".join(chunks).split(b"\0")
    token = first.decode("ascii", "replace").strip()
    if not token:
        raise SettingsError(f"{TOKEN_FD_VARIABLE}: the hub sent no token")
    secrets = {}
    for item in items:
        name, sep, value = item.partition(b"=")
        name = name.decode("ascii", "replace")
        if not sep or not _ENV_NAME.fullmatch(name):
            raise SettingsError(f"{TOKEN_FD_VARIABLE}: an app secret came through malformed")
        secrets[name] = value.decode("utf-8", "replace")
    return token, secrets


def from_environ(env: Mapping[str, str] | None = None, *, scrub: bool = True) -> Settings:
    env = os.environ if env is None else env
    own = AppServerSettings(environ=env)
    api_url = _required(env, "JUPYTERHUB_API_URL").rstrip("/")
    token, app_secrets = _api_token(env, own.api_token_fd)
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
        version=own.app_version,
        audit_url=own.audit_url,
        audit_spool=own.audit_spool,
        trusted_proxies=parse_networks(",".join(own.trusted_proxies)),
        pass_cookies=tuple(own.pass_cookies),
        log_level=own.log_level,
        workers=own.workers,
        app_secrets=app_secrets,
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
