"""A real JupyterHub (with the real configurable-http-proxy) for integration tests.

It runs ``hub_config/jupyterhub_config.py`` exactly as ``make run`` does, in local mode, with a
temporary data dir, free ports on 127.0.0.1 and ``STREAMLIT_HUB_EXTRA_CONFIG`` for what the
test needs. ``stop()`` sends SIGINT like Ctrl-C and checks that nothing it started lives on.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
        shutil.which("configurable-http-proxy")
    )


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


def _cookie_domain_matches(domain: str, host: str) -> bool:
    domain = domain.lstrip(".")
    return host == domain or host.endswith("." + domain) or domain in ("", "localhost.local")


def browser_like_cookies(s: requests.Session) -> requests.Session:
    """After a sign-in: send the hub's cookies back as a browser would, with its XSRF token.

    Python's cookie jar files cookies of the bare host "localhost" under "localhost.local"
    and so never sends the hub's ``Domain=localhost`` session-id cookie back to it (a browser
    does; the hub's XSRF check depends on it): copy it there.
    """
    for c in list(s.cookies):
        if c.domain == ".localhost":
            s.cookies.set(c.name, c.value, domain="localhost.local", path=c.path)
    s.headers["X-XSRFToken"] = s.cookies.get("_xsrf", path="/hub/") or ""
    return s


def let_app_accounts_pass(path: Path) -> None:
    """Add ``o+x`` (pass through, not list) to ``path`` and the folders above it.

    Run as root, the hub runs each analyst's apps as an account of its own, which must reach
    the app environment in this checkout and the hub's data dir under pytest's private
    temporary folder (mode 700). Test set-up only.
    """
    if os.geteuid() != 0:
        return
    for p in [*reversed(Path(path).absolute().parents), Path(path).absolute()]:
        try:
            mode = p.stat().st_mode
            if not mode & 0o001:
                os.chmod(p, (mode & 0o7777) | 0o001)
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    def __init__(
        self,
        workdir: Path,
        extra_config: str = "",
        env: dict | None = None,
        policy: str | None = PERMISSIVE_POLICY,
    ):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        if os.geteuid() == 0:
            # App accounts must pass through the folders above their homes; pytest keeps its
            # temporary folders private (700, reset by every pytest run), so the data dir
            # lives in a folder of its own under /tmp, removed when this process exits.
            self.data_dir = Path(tempfile.mkdtemp(prefix="sthub-test-data-")) / "data"
            atexit.register(shutil.rmtree, self.data_dir.parent, True)
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.audit_port = free_port()
        # The hub's own host; each analyst's apps are on <analyst>.localhost (subdomain_host).
        self.host = "localhost"
        self.url = f"http://localhost:{self.port}"
        self.password = secrets.token_urlsafe(9)
        self.extra_config = extra_config
        self.extra_env = env or {}
        self.policy = policy
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "hub.log"

    # ---- life cycle ---------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> Hub:
        self.workdir.mkdir(parents=True, exist_ok=True)
        let_app_accounts_pass(self.data_dir.parent)
        let_app_accounts_pass(REPO / ".venv-app")
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
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("STREAMLIT_HUB_", "JUPYTERHUB_"))
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
            cwd=self.workdir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
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
        # the proxy (by its API port) and the hub's services, the idle culler and the audit
        # service (by the hub API URL in their environment), none of which name the data dir
        for needle in (
            f"--api-port {self.proxy_api_port}".replace(" ", "\0"),
            f"JUPYTERHUB_API_URL=http://127.0.0.1:{self.hub_port}/",
        ):
            left += [p for p in wait_gone(needle, timeout=5) if p not in left]
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
            data={
                "username": user,
                "password": password or self.password,
                "_xsrf": s.cookies.get("_xsrf"),
            },
            timeout=10,
        )
        r.raise_for_status()
        if "/hub/login" in r.url:
            raise AssertionError(f"login as {user} failed")
        browser_like_cookies(s)
        s.hub_user = user
        return s

    def token(self, user: str) -> str:
        admin = self.login("admin")
        r = admin.post(
            f"{self.url}/hub/api/users/{user}/tokens",
            json={"expires_in": 3600, "note": "test"},
            timeout=10,
        )
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
        self.hand_over(user, folder)
        return folder

    def hand_over(self, user: str, path: Path) -> None:
        """What the analyst writes is theirs: once the home belongs to the analyst's app
        account (after their first start, when the hub runs as root), so does ``path``."""
        home = self.home(user).stat()
        if home.st_uid == os.geteuid():
            return  # not handed over yet: the hub does it, tree and all, at the first start
        for p in [path.parent, path, *path.rglob("*")] if path.is_dir() else [path]:
            if p == self.home(user) or self.home(user) not in p.parents:
                continue
            os.lchown(p, home.st_uid, home.st_gid)

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
        r = session.post(
            f"{self.url}/hub/api/users/{user}/servers/{app}", json=options or {}, timeout=90
        )
        if r.status_code not in (201, 202):
            raise AssertionError(f"start {user}/{app}: {r.status_code} {r.text}")
        return self.wait_ready(session, user, app)

    def stop_app(self, session: requests.Session, user: str, app: str, remove=False):
        r = session.delete(
            f"{self.url}/hub/api/users/{user}/servers/{app}", json={"remove": remove}, timeout=60
        )
        assert r.status_code in (202, 204), (r.status_code, r.text)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            model = session.get(f"{self.url}/hub/api/users/{user}", timeout=10).json()
            server = model.get("servers", {}).get(app)
            if not server or (not server.get("pending") and not server.get("ready")):
                return
            time.sleep(0.1)
        raise AssertionError(f"{user}/{app} did not stop")

    def app_host(self, user: str) -> str:
        """The host every app of ``user`` is served from (host:port).

        ``TEST_APPS_ON_HUB_HOST=1`` puts apps back on the hub's own host, as before per-user
        hosts existed: only for running the attack suite against an older checkout.
        """
        if os.environ.get("TEST_APPS_ON_HUB_HOST") == "1":
            return f"{self.host}:{self.port}"
        return f"{user}.{self.host}:{self.port}"

    def app_origin(self, user: str) -> str:
        """scheme://host:port of ``user``'s apps."""
        return f"http://{self.app_host(user)}"

    def app_url(self, user: str, app: str, path: str = "") -> str:
        """The app's own URL, on its owner's host (what the hub redirects to)."""
        return f"http://{self.app_host(user)}/user/{user}/{app}/{path}"

    def app_ws_url(self, user: str, app: str, path: str = "_stcore/stream") -> str:
        return self.app_url(user, app, path).replace("http://", "ws://", 1)

    def open_app(self, session: requests.Session, user: str, app: str, path: str = ""):
        """GET the app through the proxy, following the OAuth dance; returns the response."""
        return session.get(self.app_url(user, app, path), timeout=30)

    def app_cookie_header(self, session: requests.Session, user: str, app: str) -> str:
        """Every cookie the browser would send to the app's prefix, as one Cookie header."""
        prefix = f"/user/{user}/{app}/"
        host = f"{user}.{self.host}"
        pairs = [
            f"{c.name}={c.value}"
            for c in session.cookies
            if prefix.startswith(c.path) and _cookie_domain_matches(c.domain, host)
        ]
        return "; ".join(pairs)
