"""jupyterhub-streamlit: host analysts' Streamlit apps as JupyterHub named servers.

Layout of the package:

- ``names``      pure validation of app names and entry paths (shared by every spawner)
- ``options``    pure parsing of ``user_options`` (REST body or form) into ``AppOptions``
- ``mixin``      what every Streamlit spawner shares (options, progress, environment)
- ``local``      ``streamlit-local``: one local process per app
- ``hubconfig``  ``configure(c)``: the hub configuration, called from ``hub_config/``
- ``demo``       demo users, groups and app for the embedded default
- ``app_server`` runs *inside* an app server: Streamlit behind hub OAuth
"""

__version__ = "0.1.0.dev0"
