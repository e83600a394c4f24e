"""A real hub in kubernetes mode against the Kubernetes API test double (kube_double.py).

The double runs as its own process (``running_double``; the ``double`` fixture in
tests/integration/conftest.py); ``kube_hub`` is a hub running the ``streamlit-kube`` spawner
against its API, whose loopback kubelet runs each pod's command as a local process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import requests

from .hub import REPO, Hub, free_port
from .kube_double import kubeconfig


@contextmanager
def running_double(tmp_path: Path):
    """The Kubernetes API test double as a process, with a kubeconfig for it; stopped on exit."""
    port = free_port()
    workdir = tmp_path / "cluster"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.helpers.kube_double",
            "--port",
            str(port),
            "--workdir",
            str(workdir),
            "--requests",
            str(tmp_path / "api-requests.jsonl"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "double.log", "wb"),
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready", (tmp_path / "double.log").read_text()
        config = tmp_path / "kubeconfig"
        config.write_text(kubeconfig(port))
        yield {
            "url": f"http://127.0.0.1:{port}",
            "kubeconfig": str(config),
            "workdir": workdir,
            "log": tmp_path / "double.log",
            "requests": tmp_path / "api-requests.jsonl",
        }
    finally:
        proc.terminate()
        proc.wait(30)


def k8s(double: dict, path: str) -> dict:
    """GET a path of the double's API (e.g. /api/v1/namespaces/default/pods)."""
    return requests.get(double["url"] + path, timeout=10).json()


def api_requests(double: dict) -> list[tuple[str, str]]:
    """(action, resource) of every API request the hub made, in order."""
    lines = double["requests"].read_text().splitlines()
    return [(r["action"], r["resource"]) for r in map(json.loads, lines) if r["resource"]]


def kube_hub(
    workdir: Path, double: dict, policy: str, env: dict | None = None, start_timeout: int = 60
) -> Hub:
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
        c.KubeSpawner.start_timeout = {start_timeout}
        c.KubeSpawner.http_timeout = {start_timeout}
        c.Spawner.poll_interval = 1
    """)
    return hub
