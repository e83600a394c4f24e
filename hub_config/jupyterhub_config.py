# JupyterHub configuration for jupyterhub-streamlit.
# All logic lives in the package (spawner/hubconfig.py, spawner/startup.py), where it is
# tested; this file only calls it. STREAMLIT_HUB_MODE picks the mode (local by default);
# STREAMLIT_HUB_EXTRA_CONFIG names a Python file run last with `c` in scope. A wrong setting
# stops the hub with one sentence naming it (exit status 1).
from spawner.startup import configure_or_exit

c = get_config()  # noqa: F821 (provided by JupyterHub)
configure_or_exit(c, extra_config=True)
