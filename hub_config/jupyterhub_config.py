# JupyterHub configuration for jupyterhub-streamlit.
# All logic lives in the package (spawner/hubconfig.py), where it is tested; this file only
# calls it. STREAMLIT_HUB_MODE picks the mode (local by default); STREAMLIT_HUB_EXTRA_CONFIG
# names a Python file run last with `c` in scope.
from spawner.hubconfig import configure, load_extra_config

c = get_config()  # noqa: F821 (provided by JupyterHub)
configure(c)
load_extra_config(c)
