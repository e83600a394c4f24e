"""A real JupyterHub (with the real configurable-http-proxy) for integration tests.

It runs ``hub_config/jupyterhub_config.py`` exactly as ``make run`` does, in local mode, with a
temporary data dir, free ports on 127.0.0.1 and ``STREAMLIT_HUB_EXTRA_CONFIG`` for what the
test needs. ``stop()`` sends SIGINT like Ctrl-C and checks that nothing it started lives on.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from .procs import processes_mentioning, wait_gone

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "hub_config" / "jupyterhub_config.py"


# Generous limits for tests that are not about quotas (they start many apps at once).
PERMISSIVE_POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 2G}
groups:
  analysts: {profiles: [small], max_running_apps: 20, max_apps: 60, may_share_links: true}
  data-scientists: {profiles: [small], max_running_apps: 20, max_apps: 60}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


def have_proxy() -> bool:
    return (REPO / "node_modules/.bin/configurable-http-proxy").exists() or bool(
        shutil.which("configurable-http-proxy"))


@contextmanager
def running_hub(workdir: Path, **kwargs):
    """A started Hub for a fixture; on exit, Ctrl-C it and require nothing left behind."""
    if not have_proxy():
        pytest.fail("configurable-http-proxy is not installed: run `make install`")
    hub = Hub(workdir, **kwargs).start()
    try:
        yield hub
    finally:
        left = hub.stop()
    assert left == [], f"processes left behind after Ctrl-C: {left}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    def __init__(self, workdir: Path, extra_config: str = "", env: dict | None = None,
                 policy: str | None = PERMISSIVE_POLICY):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.audit_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(9)
        self.extra_config = extra_config
        self.extra_env = env or {}
        self.policy = policy
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "hub.log"

    # ---- life cycle ---------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> "Hub":
        self.workdir.mkdir(parents=True, exist_ok=True)
        extra = self.workdir / "extra_config.py"
        extra.write_text(
            textwrap.dedent(
                f"""
                c.JupyterHub.hub_port = {self.hub_port}
                c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
                c.StreamlitSpawnerMixin.activity_interval = 1.0
                """
            )
            + textwrap.dedent(self.extra_config)
        )
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("STREAMLIT_HUB_", "JUPYTERHUB_"))
        }
        env.update(
            STREAMLIT_HUB_DATA_DIR=str(self.data_dir),
            STREAMLIT_HUB_PORT=str(self.port),
            STREAMLIT_HUB_DEMO_PASSWORD=self.password,
            STREAMLIT_HUB_EXTRA_CONFIG=str(extra),
            STREAMLIT_HUB_AUDIT_PORT=str(self.audit_port),
        )
        if self.policy is not None:
            policy = self.workdir / "policy.yaml"
            policy.write_text(textwrap.dedent(self.policy))
            env["STREAMLIT_HUB_POLICY"] = str(policy)
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)],
            cwd=self.workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"hub did not come up in {timeout} s:\n{self.log_tail()}")

    def interrupt(self, timeout: float = 30.0) -> None:
        """Ctrl-C the hub process only; leave whatever it chooses to leave running."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def stop(self, timeout: float = 30.0) -> list[int]:
        """Ctrl-C the hub; return PIDs of anything it started that is still alive."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None
        left = wait_gone(str(self.data_dir), timeout=10)
        left += [p for p in wait_gone(f"--api-port {self.proxy_api_port}".replace(" ", "\0"), timeout=5)
                 if p not in left]
        for pid in left:  # never leave anything behind, even when the test then fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def proxy_pid(self) -> int | None:
        try:
            return int((self.data_dir / "jupyterhub-proxy.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def app_processes(self) -> list[int]:
        return processes_mentioning(f"STREAMLIT_HUB_ENTRY={self.data_dir}")

    # ---- people -------------------------------------------------------------------
    def login(self, user: str, password: str | None = None) -> requests.Session:
        s = requests.Session()
        s.get(self.url + "/hub/login", timeout=10)
        r = s.post(
            self.url + "/hub/login",
            data={"username": user, "password": password or self.password,
                  "_xsrf": s.cookies.get("_xsrf")},
            timeout=10,
        )
        r.raise_for_status()
        if "/hub/login" in r.url:
            raise AssertionError(f"login as {user} failed")
        s.headers["X-XSRFToken"] = s.cookies.get("_xsrf", path="/hub/") or ""
        s.hub_user = user
        return s

    def token(self, user: str) -> str:
        admin = self.login("admin")
        r = admin.post(f"{self.url}/hub/api/users/{user}/tokens",
                       json={"expires_in": 3600, "note": "test"}, timeout=10)
        r.raise_for_status()
        return r.json()["token"]

    def api(self, token: str) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = f"token {token}"
        return s

    # ---- apps ---------------------------------------------------------------------
    def home(self, user: str) -> Path:
        return self.data_dir / "homes" / user

    def add_app(self, user: str, name: str, source: str) -> Path:
        folder = self.home(user) / "apps" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "app.py").write_text(textwrap.dedent(source))
        return folder

    def wait_ready(self, session: requests.Session, user: str, app: str, timeout=60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = session.get(f"{self.url}/hub/api/users/{user}", timeout=10).json()
            server = model.get("servers", {}).get(app)
            if server and server.get("ready"):
                return server
            time.sleep(0.1)
        raise AssertionError(f"{user}/{app} not ready in {timeout} s:\n{self.log_tail()}")

    def start_app(self, session: requests.Session, user: str, app: str, options=None):
        r = session.post(f"{self.url}/hub/api/users/{user}/servers/{app}",
                         json=options or {}, timeout=90)
        if r.status_code not in (201, 202):
            raise AssertionError(f"start {user}/{app}: {r.status_code} {r.text}")
        return self.wait_ready(session, user, app)

    def stop_app(self, session: requests.Session, user: str, app: str, remove=False):
        r = session.delete(f"{self.url}/hub/api/users/{user}/servers/{app}",
                           json={"remove": remove}, timeout=60)
        assert r.status_code in (202, 204), (r.status_code, r.text)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            model = session.get(f"{self.url}/hub/api/users/{user}", timeout=10).json()
            server = model.get("servers", {}).get(app)
            if not server or not server.get("pending") and not server.get("ready"):
                return
            time.sleep(0.1)
        raise AssertionError(f"{user}/{app} did not stop")

    def open_app(self, session: requests.Session, user: str, app: str, path: str = ""):
        """GET the app through the proxy, following the OAuth dance; returns the response."""
        return session.get(f"{self.url}/user/{user}/{app}/{path}", timeout=30)

    def app_cookie_header(self, session: requests.Session, user: str, app: str) -> str:
        """Every cookie the browser would send to the app's prefix, as one Cookie header."""
        prefix = f"/user/{user}/{app}/"
        pairs = [f"{c.name}={c.value}" for c in session.cookies if prefix.startswith(c.path)]
        return "; ".join(pairs)
