"""The usual alternative as a reference: CHP -> jupyter-server-proxy standalone -> Streamlit.

That is how jhub-apps-style deployments serve a Streamlit app from JupyterHub: the named
server runs ``jupyter-standaloneproxy`` (JupyterHub OAuth on every request), which starts
``streamlit run`` on a random port and proxies to it. It runs here from a bench-only venv
(``.bench-venv/``, made on first use with the project's pins plus jupyter-server-proxy), never
a project dependency, on its own hub with the same policy, proxy and demo app.

Measured the same way as the platform's own rows: ``/_stcore/health`` on one keep-alive
connection, req/s over 10 connections, websocket reruns, and the RSS of the app's whole
process tree (the proxy and Streamlit) idle and after one session.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench import streamlit_flags
from tests.helpers.hub import REPO, Hub

VENV = REPO / ".bench-venv"
JSP_VERSION = "4.6.0"


def ensure_venv() -> Path:
    exe = VENV / "bin" / "jupyter-standaloneproxy"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [
                str(VENV / "bin/python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-c",
                str(REPO / "constraints.txt"),
                f"jupyter-server-proxy=={JSP_VERSION}",
                "jupyterhub",
                "streamlit",
            ],
            check=True,
        )
    return VENV


def extra_config(entry: Path) -> str:
    venv = ensure_venv()
    cmd = [
        str(venv / "bin/jupyter-standaloneproxy"),
        "--",
        str(venv / "bin/streamlit"),
        "run",
        str(entry),
        *streamlit_flags("{port}"),
    ]
    return f"""
from jupyterhub.spawner import LocalProcessSpawner


class StandaloneProxySpawner(LocalProcessSpawner):
    # jupyter-standaloneproxy reads its address from JUPYTERHUB_SERVICE_URL; the args the
    # base class adds are for jupyter-singleuser.
    def get_args(self):
        return []

    # one Unix user for every hub user, as the platform's local spawner does
    def user_env(self, env):
        env["USER"] = self.user.name
        return env

    def make_preexec_fn(self, name):
        return None


c.JupyterHub.spawner_class = StandaloneProxySpawner
c.LocalProcessSpawner.cmd = {cmd!r}
c.LocalProcessSpawner.ip = "127.0.0.1"
c.Spawner.start_timeout = 120
"""


def tree_pids(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").iterdir():
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def tree_rss_mb(pid: int) -> float:
    total = 0.0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def server_pid(hub: Hub, name: str) -> int:
    from tests.helpers.procs import processes_mentioning

    pids = [
        p
        for p in processes_mentioning(f"JUPYTERHUB_SERVER_NAME={name}\0")
        if f"127.0.0.1:{hub.hub_port}/".encode() in Path(f"/proc/{p}/environ").read_bytes()
        and b"standaloneproxy" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    if len(pids) != 1:
        raise RuntimeError(f"expected one jupyter-standaloneproxy for {name}, found {pids}")
    return pids[0]


def run(workdir: Path, entry_of, rounds: int, n: int) -> dict:
    """Measure the reference; ``entry_of(hub)`` gives the demo app's path in that hub."""
    from bench import viewers
    from bench.__main__ import timed_gets
    from tests.helpers.streamlit_ws import ws_url

    hub = Hub(workdir)  # made first so the entry path (in its data dir) is known
    hub.extra_config = extra_config(entry_of(hub))
    hub.start()
    out = {"health": [], "rps": [], "rps_errors": [], "ws": []}
    try:
        alice = hub.login("alice")
        t0 = time.monotonic()
        r = alice.post(f"{hub.url}/hub/api/users/alice/servers/jsp", json={}, timeout=150)
        if r.status_code not in (201, 202):
            raise RuntimeError(
                f"jupyter-server-proxy app did not start: {r.status_code} {r.text[:300]}"
            )
        hub.wait_ready(alice, "alice", "jsp", timeout=150)
        out["spawn_to_ready_s"] = time.monotonic() - t0
        prefix = "/user/alice/jsp/"
        for _ in range(60):  # the proxy answers before Streamlit behind it does
            page = hub.open_app(alice, "alice", "jsp", "_stcore/health")
            if page.status_code == 200 and page.text == "ok":
                break
            time.sleep(1)
        cookie = {"Cookie": hub.app_cookie_header(alice, "alice", "jsp")}
        http_headers = {**cookie, "Host": hub.app_host("alice")}  # the app's own host
        pid = server_pid(hub, "jsp")
        time.sleep(3)
        out["rss_idle_mb"] = tree_rss_mb(pid)
        timed_gets("127.0.0.1", hub.port, prefix + "_stcore/health", http_headers, 20)  # warm up
        for _ in range(rounds):
            out["health"] += timed_gets(
                "127.0.0.1", hub.port, prefix + "_stcore/health", http_headers, n
            )
            rps, errors = viewers.concurrent_gets(
                hub.port, prefix + "_stcore/health", http_headers, 10, n // 2
            )
            out["rps"].append(rps)
            out["rps_errors"] += errors
            out["ws"] += viewers.ws_rerun_times(ws_url(hub.app_origin("alice"), prefix), cookie, 11)
        out["rss_session_mb"] = tree_rss_mb(pid)
        hub.stop_app(alice, "alice", "jsp", remove=True)
    finally:
        out["left_behind"] = hub.stop()
    return out
