"""The chart, deployed onto this machine: its hub pod, its proxy pod, an API double, one network.

``ChartCluster`` renders ``helm-values/`` with the real chart (tests/helpers/helm.py) and runs,
in one pod network (tests/helpers/netns.py: a private loopback where the Service names
``hub``, ``proxy-api``, ... resolve, so the chart's fixed ports and names work as rendered):

- the Kubernetes API test double with its loopback kubelet (tests/helpers/kube_double.py),
  which runs app pods as local processes in the same network;
- the proxy pod: the rendered ``configurable-http-proxy`` command line, as is;
- the hub pod: the rendered container args (``jupyterhub --config
  /usr/local/etc/jupyterhub/jupyterhub_config.py --upgrade-db``), its volumes mounted at their
  paths (the chart's config files and values from the rendered ConfigMap and Secret, the
  policy ConfigMap, the PVC as /srv/jupyterhub, its working directory), its rendered env.

What is not the pod's: KUBECONFIG points the hub at the double (no service-account token:
the double speaks plain HTTP), and the processes run as this machine's user. The test side
reaches the proxy through a forwarder on ``http://localhost:<port>``, the port the values'
``STREAMLIT_HUB_PUBLIC_URL`` names (the ingress's job in a cluster).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from .chart_hub import HUB_WORKDIR, HubPod, expand, service_env, site_objects
from .helm import LOCAL_VALUES, VALUES, Rendered, render
from .hub import REPO, Hub, free_port
from .kube_double import kubeconfig
from .netns import Sandbox
from .procs import wait_gone

API_PORT = 6443  # the double, inside the pod network


def _ancestors() -> set[int]:
    """This process's parents (a wrapper's command line may name the work folder too)."""
    out, pid = set(), os.getpid()
    while pid > 1:
        out.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return out


class ChartCluster(Hub):
    """A started chart; the ``Hub`` helpers (login, start_app, app_url, ...) work on it."""

    def __init__(self, workdir: Path, policy: str, namespace: str = "streamlit-hub"):
        super().__init__(workdir, policy=None)
        self.namespace = namespace
        self.policy_text = policy
        self.api_port = free_port()  # the double, from this side
        self.hub_pod_port = (
            free_port()
        )  # the hub container's own port, as the kubelet's probes reach it
        self.url = f"http://localhost:{self.port}"
        self.log_path = self.workdir / "hub.log"
        self.sandbox: Sandbox | None = None
        self.hub_proc = self.proxy_proc = self.double_proc = None
        self.requests_log = self.workdir / "api-requests.jsonl"
        self.cluster_dir = self.workdir / "cluster"
        self.root = self.workdir / "hub-pod"

    # ---- render --------------------------------------------------------------------------
    def render(self) -> Rendered:
        overlay = self.workdir / "values-test.yaml"
        overlay.write_text(
            yaml.safe_dump(
                {
                    "hub": {
                        "config": {"JupyterHub": {"subdomain_host": self.url}},
                        "extraEnv": {"STREAMLIT_HUB_PUBLIC_URL": self.url},
                    }
                }
            )
        )
        return render(VALUES, LOCAL_VALUES, overlay, namespace=self.namespace)

    # ---- life cycle ----------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> ChartCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rendered = r = self.render()
        self.pod = HubPod(r, site_objects(self.policy_text), self.root)
        mounts = self.pod.materialize()
        services = {s["metadata"]["name"]: "127.0.0.1" for s in r.all("Service")}
        self._check_service_ports(r)
        self.sandbox = Sandbox(
            self.workdir / "ns", services, tmpfs=["/usr/local/etc", "/srv"], binds=mounts
        ).__enter__()
        base_env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "LANG": "C.UTF-8",
            "HOME": str(self.workdir),
        }
        # the API double (its kubelet's pods live in this network too)
        self.double_proc = self.sandbox.run(
            [
                sys.executable,
                "-m",
                "tests.helpers.kube_double",
                "--port",
                str(API_PORT),
                "--workdir",
                str(self.cluster_dir),
                "--requests",
                str(self.requests_log),
            ],
            env={**os.environ, **base_env},
            cwd=REPO,
            log=self.workdir / "double.log",
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.double_proc.stdout.readline().strip() != "ready":
            raise RuntimeError("API double did not start:\n" + self._tail("double.log"))
        config = self.workdir / "kubeconfig"
        config.write_text(
            kubeconfig(API_PORT).replace("namespace: default", f"namespace: {self.namespace}")
        )
        svc_env = service_env(r)
        # the proxy pod, as rendered
        chp = r.container("Deployment", "proxy", "chp")
        proxy_env = {
            **svc_env,
            **base_env,
            "PATH": f"{REPO / 'node_modules/.bin'}:{base_env['PATH']}",
            "CONFIGPROXY_AUTH_TOKEN": r.secret_data("hub")[
                "hub.config.ConfigurableHTTPProxy.auth_token"
            ],
        }
        argv = [expand(a, proxy_env) for a in [*chp["command"], *chp["args"]]]
        self.proxy_proc = self.sandbox.run(
            argv, env=proxy_env, cwd="/", log=self.workdir / "proxy.log"
        )
        # the hub pod, as rendered
        hub_env = {**self.pod.env(self.namespace), **base_env, "KUBECONFIG": str(config)}
        self.hub_env = hub_env
        self.password = hub_env.get("STREAMLIT_HUB_DEMO_PASSWORD", "")
        self.hub_proc = self.sandbox.run(
            self.pod.args(), env=hub_env, cwd=HUB_WORKDIR, log=self.log_path
        )
        self.proc = self.hub_proc
        # the ingress: this side's localhost:<port> to the proxy pod; and the API, for checks
        proxy_port = next(p["containerPort"] for p in chp["ports"] if p["name"] == "http")
        hub_port = next(
            p["containerPort"] for p in self.pod.container["ports"] if p["name"] == "http"
        )
        self.sandbox.forward(
            [(self.port, proxy_port), (self.api_port, API_PORT), (self.hub_pod_port, hub_port)],
            self.workdir / "forward.log",
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.hub_proc.poll() is not None:
                raise RuntimeError(
                    f"hub exited with {self.hub_proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if requests.get(self.url + "/hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"hub did not come up in {timeout} s:\n{self.log_tail()}")

    @staticmethod
    def _check_service_ports(r: Rendered) -> None:
        """Every process listens on 127.0.0.1 in the pod network, so a Service's port must be
        its pods' port (true of the hub's and the proxy API's; proxy-public is the forwarder's)."""
        for name, deploy, container in (("hub", "hub", "hub"), ("proxy-api", "proxy", "chp")):
            named = {
                p.get("name"): p["containerPort"]
                for p in r.container("Deployment", deploy, container).get("ports") or []
            }
            for p in r.get("Service", name)["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                assert named.get(target, target) == p["port"], (name, p)

    def stop(self, timeout: float = 30.0) -> list[int]:
        """Stop the hub (SIGTERM, as the kubelet does), the proxy, the double, the network;
        return PIDs of anything left that mentions this cluster's folders."""
        if self.sandbox is not None:
            for proc in (self.hub_proc, self.proxy_proc, self.double_proc):
                if proc is not None:
                    Sandbox.stop_process(proc, signal.SIGTERM, timeout)
            self.sandbox.__exit__(None, None, None)
            self.sandbox = None
        mine = _ancestors()
        left = [p for p in wait_gone(str(self.workdir), timeout=10) if p not in mine]
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def interrupt(self, timeout: float = 30.0) -> None:  # pragma: no cover - not used here
        raise NotImplementedError

    def _tail(self, name: str, n: int = 60) -> str:
        try:
            return "\n".join((self.workdir / name).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def probe(self, deployment: str, container: str, kind: str = "readinessProbe") -> int:
        """The status a kubelet's HTTP probe of the rendered container would get."""
        c = self.rendered.container("Deployment", deployment, container)
        probe = c[kind]["httpGet"]
        named = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
        port = named.get(probe["port"], probe["port"])
        outside = {8000: self.port, 8081: self.hub_pod_port}[port]
        return requests.get(f"http://127.0.0.1:{outside}{probe['path']}", timeout=10).status_code

    # ---- the API double --------------------------------------------------------------------
    def k8s(self, path: str) -> dict:
        return requests.get(f"http://127.0.0.1:{self.api_port}{path}", timeout=10).json()

    def api_requests(self) -> list[dict]:
        try:
            lines = self.requests_log.read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def home(self, user: str) -> Path:
        """The user's home PVC as the loopback kubelet keeps it."""
        return self.cluster_dir / "pvc" / f"home-{user}"
