"""The app server's command, one setting for every Streamlit spawner: ``app_command``.

JupyterHub's ``Spawner.cmd`` and ``get_args()`` describe a notebook server
(``jupyterhub-singleuser`` and its flags). An app server takes no flags and its command is the
mixin's ``app_command``, so the spawner owns ``cmd``: it always equals ``app_command``, on
Kubernetes (KubeSpawner passes it as the container's args) as on one machine.

Configuration beats a subclass's ``@default``, and the Zero to JupyterHub chart sets
``c.Spawner.cmd`` from ``singleuser.cmd`` (``jupyterhub-singleuser`` unless the values say
``null``, as ``helm-values/values.yaml`` does). So a configured ``cmd`` is replaced by
``app_command`` after configuration is loaded: silently when it is null or the same command,
with a warning otherwise.
"""

from __future__ import annotations

from traitlets import default, observe
from traitlets.config import LoggingConfigurable


class AppServerCommand(LoggingConfigurable):
    """Mixed in before ``StreamlitSpawnerMixin`` (which defines ``app_command``) and the base
    spawner (which defines ``cmd`` and ``get_args``)."""

    @default("cmd")
    def _default_cmd(self):
        return list(self.app_command)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        configured = self.cmd
        if configured is not None and list(configured) != list(self.app_command):
            self.log.warning(
                "%s.cmd is configured (%s) but ignored: app servers run app_command (%s); "
                "configure that instead",
                type(self).__name__,
                " ".join(configured),
                " ".join(self.app_command),
            )
        self.cmd = list(self.app_command)

    @observe("app_command")
    def _app_command_changed(self, change):
        self.cmd = list(change.new)

    def get_args(self):
        # Spawner.get_args adds jupyterhub-singleuser's flags; the app server takes none.
        return []
