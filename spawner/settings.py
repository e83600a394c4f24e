"""The platform's settings: documented traitlets whose default comes from the environment.

Each setting is a traitlet of a :class:`EnvSettings` subclass, tagged with its environment
variable (``.tag(env="STREAMLIT_HUB_PORT")``). Precedence, highest first: JupyterHub
configuration (``c.StreamlitHub.port = 8123``), the environment variable, the traitlet's own
default. The variables are read and checked when the object is made (at hub start-up), so a
bad value stops the process with the variable and the value named; nothing reads the
environment later.

Three processes have settings: the hub (:class:`StreamlitHub`, here), an app server
(``spawner.app_server.settings.AppServerSettings``) and the audit service
(``spawner.audit.settings.AuditServiceSettings``). ``python -m spawner.settings`` prints all
of them with their help and current value; ``--markdown`` writes the README's tables (a test
fails when they drift).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from traitlets import (
    Bool,
    Enum,
    Float,
    Integer,
    List,
    TraitError,
    TraitType,
    Unicode,
    default,
    validate,
)
from traitlets.config import Configurable

# hub_config/ (templates, the example policy, the culler's config, the demo app): next to the
# package in a checkout. StreamlitHub.config_dir is the setting; this is its default.
HUB_CONFIG_DIR = Path(__file__).resolve().parent.parent / "hub_config"


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says what is expected."""


class SettingInvalid(TraitError):
    """Raised by a setting's validator: its message says what is expected."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(trait, raw: str):
    """A variable's text as the trait's type; ``ValueError`` when it is not one."""
    if isinstance(trait, Bool):
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ValueError(raw)
    if isinstance(trait, Integer):
        if not raw.lstrip("-").isdigit():
            raise ValueError(raw)
        return int(raw)
    if isinstance(trait, Float):
        return float(raw)
    if isinstance(trait, List):
        return [v for v in re.split(r"[\s,]+", raw) if v]
    return raw


def _expected(trait) -> str:
    return "expected " + (trait.metadata.get("expect") or trait.info_text)


class EnvSettings(Configurable):
    """Traitlets tagged ``env=VARIABLE`` take that variable as their default.

    ``environ`` is where variables are read (``os.environ`` unless a test passes a dict).
    Tags: ``expect`` (what a valid value looks like, for the error), ``secret`` (never printed).
    """

    error_class: type[Exception] = ConfigError
    # How a bad value is reported: {var}, {value} (repr, or "(hidden)"), {expect}.
    wording = "{var}={value}: expected {expect}"
    # ... and one a validator refuses ({reason}: its SettingInvalid message).
    invalid_wording = "{var}={value}: {reason}"

    def __init__(self, environ: Mapping[str, str] | None = None, *, config=None, **kwargs):
        self.environ = os.environ if environ is None else environ
        super().__init__()
        settings = self.settings()
        given = dict(kwargs)
        for section in [type(self).__name__]:
            if config is not None and section in config:
                for name, value in config[section].items():
                    if name not in settings:
                        raise self.error_class(
                            f"c.{section}.{name}: no such setting (see python -m spawner.settings)"
                        )
                    given[name] = value
        for name, value in given.items():
            trait = settings[name]
            try:
                setattr(self, name, value)
            except TraitError as e:
                reason = str(e) if isinstance(e, SettingInvalid) else _expected(trait)
                raise self.error_class(
                    f"c.{type(self).__name__}.{name}={value!r}: {reason}"
                ) from None
        for name, trait in settings.items():
            if name in given:
                continue  # configured: the environment is only the default
            raw = self.environ.get(trait.metadata["env"])
            # Unset or empty: the default; except that an empty list is a value (none).
            if raw is not None and (raw.strip() or isinstance(trait, List)):
                self._set_from_env(name, trait, raw.strip())

    def _set_from_env(self, name, trait, raw: str) -> None:
        var = trait.metadata["env"]
        expect = trait.metadata.get("expect") or trait.info_text
        shown = "(hidden)" if trait.metadata.get("secret") else repr(raw)
        try:
            setattr(self, name, _parse(trait, raw))
        except SettingInvalid as e:
            message = self.invalid_wording.format(var=var, value=shown, reason=e)
            raise self.error_class(message) from None
        except (TraitError, ValueError):
            message = self.wording.format(var=var, value=shown, expect=expect)
            raise self.error_class(message) from None

    def require(self, name: str, what: str) -> str:
        """A setting that must not be empty here; the error names its variable."""
        value = getattr(self, name)
        if not value:
            var = self.traits()[name].metadata["env"]
            raise self.error_class(f"{var} is not set: {what}")
        return value

    def variable(self, name: str) -> str:
        return self.traits()[name].metadata["env"]

    @classmethod
    def settings(cls) -> dict:
        """The traits that are settings (tagged with a variable), in definition order."""
        found = {}
        for klass in reversed(cls.mro()):
            for name, value in vars(klass).items():
                if isinstance(value, TraitType) and value.metadata.get("env"):
                    found[name] = value
        return found


def log_level_setting(process: str):
    """``STREAMLIT_HUB_LOG_LEVEL`` for one of the platform's own processes."""
    return Enum(
        ["DEBUG", "INFO", "WARNING", "ERROR"], "INFO", help=f"The {process}'s log level."
    ).tag(env="STREAMLIT_HUB_LOG_LEVEL", expect="DEBUG, INFO, WARNING or ERROR")


def checked_networks(proposal):
    """A ``@validate`` body for a list of trusted proxy networks (CIDR or addresses)."""
    from .client_address import parse_networks

    try:
        parse_networks(",".join(proposal["value"]))
    except ValueError as e:
        raise SettingInvalid(str(e)) from None
    return proposal["value"]


def _port(value: int, env: str, help: str):
    return Integer(value, min=1, max=65535, help=help).tag(
        config=True, env=env, expect="a TCP port number from 1 to 65535"
    )


class StreamlitHub(EnvSettings):
    """The hub's settings: ``c.StreamlitHub.<name>`` in the configuration, or the variable."""

    mode = Enum(
        ["local", "kubernetes"],
        "local",
        help="local: one machine (sqlite, the local spawner, demo users); kubernetes: inside "
        "the Zero to JupyterHub chart's hub pod.",
    ).tag(config=True, env="STREAMLIT_HUB_MODE", expect="'local' or 'kubernetes'")

    config_dir = Unicode(
        help="The platform's hub_config folder: page templates, the example policy, the idle "
        "culler's configuration, the demo app. Default: hub_config next to the package (a "
        "checkout); the hub image sets it.",
    ).tag(config=True, env="STREAMLIT_HUB_CONFIG_DIR")

    @default("config_dir")
    def _default_config_dir(self):
        return str(HUB_CONFIG_DIR)

    data_dir = Unicode(
        help="Where the hub keeps its state: database, cookie secret, analysts' homes, logs, "
        "audit store. Default: .hub-data (local), /srv/jupyterhub (kubernetes).",
    ).tag(config=True, env="STREAMLIT_HUB_DATA_DIR")

    @default("data_dir")
    def _default_data_dir(self):
        return ".hub-data" if self.mode == "local" else "/srv/jupyterhub"

    port = _port(8000, "STREAMLIT_HUB_PORT", "The public port (local mode), on 127.0.0.1.")
    hub_api_port = _port(
        8081,
        "STREAMLIT_HUB_API_PORT",
        "The hub's internal API port (local mode), on 127.0.0.1: app servers and services "
        "talk to the hub there. Change it to run two hubs on one machine.",
    )
    proxy_api_port = _port(
        8001,
        "STREAMLIT_HUB_PROXY_API_PORT",
        "configurable-http-proxy's REST API port (local mode), on 127.0.0.1.",
    )

    public_url = Unicode(
        help="The hub's public address with no path, e.g. https://apps.example.com; apps are "
        "served from <analyst>.<its host>. Default (local): http://localhost:<port>.",
    ).tag(config=True, env="STREAMLIT_HUB_PUBLIC_URL")

    @default("public_url")
    def _default_public_url(self):
        return f"http://localhost:{self.port}" if self.mode == "local" else ""

    app_origins = Enum(
        ["per-user", "shared"],
        "per-user",
        help="per-user: each analyst's apps on a host of their own, away from the hub's "
        "cookies (needs a wildcard DNS name; localhost works on one machine). shared: apps "
        "on the hub's origin, so any app's JavaScript can act as its viewer (said in the log "
        "and on admins' home page).",
    ).tag(config=True, env="STREAMLIT_HUB_APP_ORIGINS", expect="'per-user' or 'shared'")

    app_accounts = Enum(
        ["auto", "per-user", "hub"],
        "auto",
        help="Which Unix user local apps run as. per-user: one system account per analyst "
        "(the hub must run as root); hub: the hub's own user (trusted apps only); auto: "
        "per-user when the hub runs as root, else hub, with a warning.",
    ).tag(
        config=True,
        env="STREAMLIT_HUB_APP_ACCOUNTS",
        expect="'auto' (per-user accounts when the hub runs as root), 'per-user' or 'hub'",
    )

    app_python = Unicode(
        help="The Python of the app environment local app servers run in. Default: the "
        "checkout's .venv-app (built by make install), else the hub's Python.",
    ).tag(config=True, env="STREAMLIT_HUB_APP_PYTHON")

    auth = Enum(
        ["demo", "google"],
        help="Sign-in: demo (demo users with one password) or google (Google Workspace, "
        "groups from Google Groups). Default: demo (local), google (kubernetes).",
    ).tag(config=True, env="STREAMLIT_HUB_AUTH", expect="'demo' or 'google'")

    @default("auth")
    def _default_auth(self):
        return "demo" if self.mode == "local" else "google"

    demo_password = Unicode(
        help="The demo users' password. Local: generated once and kept in the data dir when "
        "unset; kubernetes: required with auth=demo.",
    ).tag(config=True, env="STREAMLIT_HUB_DEMO_PASSWORD", secret=True)

    policy = Unicode(
        help="The group policy file (YAML: profiles, quotas, sharing rules; docs/quota.md). "
        "Default: hub_config/policy.yaml (local), /usr/local/etc/streamlit-hub/policy.yaml "
        "(kubernetes, a mounted ConfigMap).",
    ).tag(config=True, env="STREAMLIT_HUB_POLICY")

    @default("policy")
    def _default_policy(self):
        if self.mode == "local":
            return str(Path(self.config_dir) / "policy.yaml")
        return "/usr/local/etc/streamlit-hub/policy.yaml"

    idle_timeout = Integer(
        3600,
        help="Seconds without a viewer before the idle culler stops an app, for owners whose "
        "groups set no idle_timeout; 0 turns the culler off.",
    ).tag(
        config=True,
        env="STREAMLIT_HUB_IDLE_TIMEOUT",
        expect="whole seconds, e.g. 3600 (0 turns the idle culler off)",
    )

    @validate("idle_timeout")
    def _validate_idle_timeout(self, proposal):
        value = proposal["value"]
        if value < 0:
            raise SettingInvalid("expected whole seconds, e.g. 3600 (0 turns the idle culler off)")
        if 0 < value < 30:
            raise SettingInvalid("at least 30 seconds (or 0 for off)")
        return value

    auth_refresh_seconds = Integer(
        3600,
        min=0,
        help="Google sign-in: group memberships older than this are re-read from Google "
        "before an app starts.",
    ).tag(config=True, env="STREAMLIT_HUB_AUTH_REFRESH_SECONDS", expect="whole seconds")

    trusted_proxies = List(
        Unicode(),
        ["127.0.0.0/8", "::1/128"],
        help="Networks (comma-separated CIDR) whose X-Forwarded-For entries the audit trail "
        "believes: the proxy and load balancers in front of the hub.",
    ).tag(
        config=True,
        env="STREAMLIT_HUB_TRUSTED_PROXIES",
        expect="comma-separated networks, e.g. 10.0.0.0/8,127.0.0.0/8",
    )

    @validate("trusted_proxies")
    def _validate_trusted_proxies(self, proposal):
        return checked_networks(proposal)

    audit = Enum(
        ["on", "off"],
        "on",
        help="The audit trail: the hub's recorder, the audit service and the usage page.",
    ).tag(config=True, env="STREAMLIT_HUB_AUDIT", expect="'on' or 'off'")
    audit_port = _port(8082, "STREAMLIT_HUB_AUDIT_PORT", "The audit service's port.")
    audit_retention_days = Float(
        365.0,
        help="Audit events older than this many days are removed (checked hourly).",
    ).tag(
        config=True,
        env="STREAMLIT_HUB_AUDIT_RETENTION_DAYS",
        expect="a number of days from 0 to 36500 (e.g. 365)",
    )

    @validate("audit_retention_days")
    def _validate_retention(self, proposal):
        if not 0 < proposal["value"] <= 36500:
            raise SettingInvalid("expected a number of days from 0 to 36500 (e.g. 365)")
        return proposal["value"]

    audit_db_url = Unicode(
        help="The audit store (SQLAlchemy URL; postgresql+psycopg://… in production). "
        "Default: sqlite under the data dir.",
    ).tag(config=True, env="STREAMLIT_HUB_AUDIT_DB_URL", secret=True)

    @default("audit_db_url")
    def _default_audit_db_url(self):
        return f"sqlite:///{Path(self.data_dir).resolve() / 'audit.sqlite'}"

    audit_host = Unicode(
        help="How the proxy and app servers reach the audit service. Default: 127.0.0.1 "
        "(local), hub (kubernetes: the chart's hub Service; set it with fullnameOverride).",
    ).tag(config=True, env="STREAMLIT_HUB_AUDIT_HOST")

    @default("audit_host")
    def _default_audit_host(self):
        return "127.0.0.1" if self.mode == "local" else "hub"

    audit_bind = Unicode(
        help="Where the audit service listens. Default: audit_host (local), 0.0.0.0 (kubernetes).",
    ).tag(config=True, env="STREAMLIT_HUB_AUDIT_BIND")

    @default("audit_bind")
    def _default_audit_bind(self):
        return self.audit_host if self.mode == "local" else "0.0.0.0"

    publishing = Bool(
        True,
        help="Analysts may deploy versions of their apps (the publishing API, docs/publishing.md); "
        "on Kubernetes each app pod fetches its version's bundle and builds its environment.",
    ).tag(config=True, env="STREAMLIT_HUB_PUBLISHING", expect="true or false")
    package_index = Unicode(
        help="The one package index per-app environments install from (a private index URL; "
        "credentials in it never reach a log). Empty: uv's default (PyPI).",
    ).tag(config=True, env="STREAMLIT_HUB_PACKAGE_INDEX", secret=True)
    package_find_links = List(
        Unicode(),
        help="Folders (or URLs) of wheels per-app environments may install from besides the "
        "index, comma-separated: an air-gapped site's wheelhouse.",
    ).tag(config=True, env="STREAMLIT_HUB_FIND_LINKS")
    package_offline = Bool(
        False,
        help="Per-app environments install only from package_find_links, never from an index.",
    ).tag(config=True, env="STREAMLIT_HUB_PACKAGE_OFFLINE", expect="true or false")
    build_timeout = Float(
        600.0,
        help="Seconds a per-app environment's build may take before it is stopped and the "
        "deploy refused (the app keeps its version).",
    ).tag(config=True, env="STREAMLIT_HUB_BUILD_TIMEOUT", expect="a number of seconds above 0")

    @validate("build_timeout")
    def _validate_build_timeout(self, proposal):
        if not 0 < proposal["value"] <= 86400:
            raise SettingInvalid("expected a number of seconds from 1 to 86400 (e.g. 600)")
        return proposal["value"]

    environments_disk_gb = Float(
        20.0,
        help="Disk for all per-app environments, in GiB: after a build, the least recently "
        "used ones no version points at are removed down to it.",
    ).tag(config=True, env="STREAMLIT_HUB_ENVIRONMENTS_DISK_GB", expect="a number of GiB above 0")

    @validate("environments_disk_gb")
    def _validate_disk_gb(self, proposal):
        if not proposal["value"] > 0:
            raise SettingInvalid("expected a number of GiB above 0 (e.g. 20)")
        return proposal["value"]

    extra_config = Unicode(
        help="A Python file run last with c (the JupyterHub configuration) in scope.",
    ).tag(config=True, env="STREAMLIT_HUB_EXTRA_CONFIG")

    google_workspace_domain = Unicode(
        help="Google sign-in: the Workspace domain, e.g. example.com."
    ).tag(config=True, env="GOOGLE_WORKSPACE_DOMAIN")
    google_admin_user = Unicode(
        help="Google sign-in: the local part of the Workspace admin the service account "
        "impersonates to read groups (e.g. admin)."
    ).tag(config=True, env="GOOGLE_ADMIN_USER")
    google_service_account_key_file = Unicode(
        help="Google sign-in: the service account's JSON key (domain-wide delegation)."
    ).tag(config=True, env="GOOGLE_SERVICE_ACCOUNT_KEY_FILE")
    google_allowed_groups = List(
        Unicode(),
        help="Google sign-in: the Google Groups whose members may sign in (comma-separated).",
    ).tag(config=True, env="GOOGLE_ALLOWED_GROUPS")
    google_admin_groups = List(
        Unicode(),
        help="Google sign-in: the Google Groups whose members are hub admins and audit readers.",
    ).tag(config=True, env="GOOGLE_ADMIN_GROUPS")
    google_client_id = Unicode(help="Google sign-in: the OAuth client id.").tag(
        config=True, env="GOOGLE_OAUTH_CLIENT_ID"
    )
    google_client_secret = Unicode(help="Google sign-in: the OAuth client secret.").tag(
        config=True, env="GOOGLE_OAUTH_CLIENT_SECRET", secret=True
    )


# ---- printing ---------------------------------------------------------------------------------


def _classes():
    from .app_server.settings import AppServerSettings
    from .audit.settings import AuditServiceSettings
    from .cli import CLISettings

    return [
        (
            StreamlitHub,
            "The hub",
            "`c.StreamlitHub.<name>` in the hub's configuration, or the variable",
        ),
        (AppServerSettings, "An app server", "variables the spawners set for each app server"),
        (AuditServiceSettings, "The audit service", "variables the hub sets for its service"),
        (CLISettings, "The command line", "variables `streamlit-hub` reads (CI jobs)"),
    ]


def _default_text(cls, name, trait) -> str:
    generator = cls._all_trait_default_generators.get(name)
    if generator is not None and getattr(generator, "__self__", None) is not trait:
        return "see help"  # computed (from the mode, another setting, the machine)
    value = trait.default()
    if isinstance(value, list):
        return ",".join(value) or "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`" if value not in ("", None) else "(empty)"


def _current(obj, name, trait) -> str:
    if trait.metadata.get("secret"):
        return "(set)" if getattr(obj, name) else "(empty)"
    value = getattr(obj, name)
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _own_traits(cls) -> dict:
    """The configurable traitlets a class itself defines (not those it inherits)."""
    return {
        name: t
        for name, t in vars(cls).items()
        if isinstance(t, TraitType) and t.metadata.get("config")
    }


def _spawner_classes():
    from .kube import StreamlitKubeSpawner
    from .local import StreamlitLocalSpawner
    from .mixin import StreamlitSpawnerMixin

    return [
        (StreamlitSpawnerMixin, "Both spawners"),
        (StreamlitLocalSpawner, "The local spawner (streamlit-local)"),
        (StreamlitKubeSpawner, "The Kubernetes spawner (streamlit-kube)"),
    ]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown() -> str:
    """The README's settings tables (between the ``settings`` markers)."""
    out = []
    for cls, title, how in _classes():
        out += [f"**{title}** ({how}):", ""]
        out += ["| setting | variable | default | what it does |", "|---|---|---|---|"]
        for name, trait in cls.settings().items():
            out.append(
                f"| `{name}` | `{trait.metadata['env']}` | "
                f"{_default_text(cls, name, trait)} | {_cell(trait.help)} |"
            )
        out.append("")
    for cls, title in _spawner_classes():
        out += [f"**{title}** (`c.{cls.__name__}.<name>`):", ""]
        out += ["| setting | default | what it does |", "|---|---|---|"]
        for name, trait in sorted(_own_traits(cls).items()):
            out.append(f"| `{name}` | {_default_text(cls, name, trait)} | {_cell(trait.help)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def describe(environ: Mapping[str, str] | None = None) -> str:
    """Every setting with its help and current value (from this environment)."""
    import textwrap

    lines = []
    for cls, title, _ in _classes():
        lines += [f"== {title} ({cls.__name__})", ""]
        try:
            obj = cls(environ=environ)
        except Exception as e:
            lines += [f"  cannot read the current values: {e}", ""]
            obj = None
        for name, trait in cls.settings().items():
            current = _current(obj, name, trait) if obj is not None else "?"
            lines.append(f"{name} ({trait.metadata['env']}) = {current}")
            lines += textwrap.wrap(
                " ".join(trait.help.split()), 90, initial_indent="    ", subsequent_indent="    "
            )
        lines.append("")
    return "\n".join(lines)


README_START = "<!-- settings: generated by python -m spawner.settings --readme README.md -->"
README_END = "<!-- settings: end -->"


def readme_with_tables(text: str) -> str:
    """The README with its settings block replaced by :func:`markdown`."""
    head, found, rest = text.partition(README_START)
    _, found_end, tail = rest.partition(README_END)
    if not found or not found_end:
        raise ValueError(f"the README has no {README_START} ... {README_END} block")
    return f"{head}{README_START}\n\n{markdown()}\n{README_END}{tail}"


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m spawner.settings",
        description="Print every setting of the hub, an app server and the audit service, "
        "with its help and current value (secrets hidden).",
    )
    parser.add_argument("--markdown", action="store_true", help="the README's tables")
    parser.add_argument("--readme", metavar="PATH", help="rewrite the tables in this README")
    args = parser.parse_args(argv)
    try:
        if args.readme:
            path = Path(args.readme)
            path.write_text(readme_with_tables(path.read_text()))
            return 0
        print(markdown() if args.markdown else describe(), end="")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
