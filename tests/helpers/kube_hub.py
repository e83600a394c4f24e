"""A real hub in kubernetes mode against the Kubernetes API test double (kube_double.py).

What ``tests/integration/test_kube_e2e.py`` sets up inline, as a function: the hub runs the
``streamlit-kube`` spawner against the double's API, whose loopback kubelet runs each pod's
command as a local process.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from .hub import REPO, Hub


def kube_hub(workdir: Path, double: dict, policy: str, env: dict | None = None) -> Hub:
    """A ``Hub`` (not started) in kubernetes mode with demo sign-in against ``double``."""
    env = {
        "STREAMLIT_HUB_MODE": "kubernetes",
        "STREAMLIT_HUB_AUTH": "demo",
        "KUBECONFIG": double["kubeconfig"],
        "STREAMLIT_HUB_AUDIT_HOST": "127.0.0.1",
        "STREAMLIT_HUB_AUDIT_BIND": "127.0.0.1",
        **(env or {}),
    }
    hub = Hub(workdir, env=env, policy=policy)
    env["STREAMLIT_HUB_PUBLIC_URL"] = hub.url  # each analyst's apps on <analyst>.localhost
    hub.extra_config = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        data = Path(os.environ["STREAMLIT_HUB_DATA_DIR"])
        data.mkdir(parents=True, exist_ok=True)
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {hub.port}
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.db_url = f"sqlite:///{{data / 'jupyterhub.sqlite'}}"
        c.JupyterHub.cookie_secret_file = str(data / "cookie_secret")
        c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
        c.ConfigurableHTTPProxy.command = [r"{REPO / "node_modules/.bin/configurable-http-proxy"}"]
        c.ConfigurableHTTPProxy.pid_file = str(data / "proxy.pid")
        c.JupyterHub.cleanup_servers = True
        c.JupyterHub.cleanup_proxy = True
        c.KubeSpawner.image = "ghcr.io/example/jupyterhub-streamlit-app:0.1.0"
        c.StreamlitKubeSpawner.app_command = [sys.executable, "-m", "spawner.app_server"]
        c.KubeSpawner.start_timeout = 90
        c.KubeSpawner.http_timeout = 90
        c.Spawner.poll_interval = 1
    """)
    return hub
