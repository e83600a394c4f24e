"""The audit service's settings (set by the hub for its service: ``configure_audit``).

``JUPYTERHUB_SERVICE_*`` are JupyterHub's own and read where they are used; these are the
platform's, documented traitlets whose default is the variable (see ``spawner/settings.py``).
"""

from __future__ import annotations

from traitlets import Float, List, Unicode, validate

from ..settings import EnvSettings, SettingInvalid, log_level_setting


class ServiceConfigError(RuntimeError):
    """The audit service cannot start: a setting is malformed (the message names it)."""


class AuditServiceSettings(EnvSettings):
    """What the audit service reads from its environment at start-up."""

    error_class = ServiceConfigError
    wording = "{var}={value} is not {expect}"
    invalid_wording = "{var}={value} {reason}"

    db_url = Unicode(
        "sqlite:///audit.sqlite",
        help="The audit store, an SQLAlchemy URL (postgresql+psycopg://… in production).",
    ).tag(env="STREAMLIT_HUB_AUDIT_DB_URL", secret=True)
    retention_days = Float(
        365.0,
        help="Events older than this many days are removed, at start and hourly.",
    ).tag(env="STREAMLIT_HUB_AUDIT_RETENTION_DAYS", expect="a number")
    trusted = List(
        Unicode(),
        help="Services besides the audit service itself whose tokens may send hub-side "
        "events (comma-separated service names).",
    ).tag(env="STREAMLIT_HUB_AUDIT_TRUSTED")
    bind = Unicode(
        help="The address the service listens on. Default: the host of JUPYTERHUB_SERVICE_URL."
    ).tag(env="STREAMLIT_HUB_AUDIT_BIND")

    @validate("retention_days")
    def _validate_retention_days(self, proposal):
        if not 0.001 <= proposal["value"] <= 36500:
            raise SettingInvalid("must be between 0.001 and 36500")
        return proposal["value"]

    log_level = log_level_setting("audit service")
