"""The chart's hub pod, rebuilt on this machine from what ``helm template`` rendered.

What the kubelet would do for the hub pod, for tests: its volumes (the ConfigMap ``hub`` with
the chart's ``jupyterhub_config.py`` and ``z2jh.py``, the Secret ``hub`` with the rendered
values, the PVC, and the Secrets/ConfigMaps the operator creates by hand per docs/deploy.md)
become files; its environment is the rendered container env with ``secretKeyRef``/``fieldRef``
resolved and the ``<SERVICE>_SERVICE_HOST/PORT`` variables Kubernetes adds.

Two ways to put the files where the pod has them:

- ``bind_mounts()``: the exact paths, in a private mount namespace (tests/helpers/netns.py);
- ``redirect()``: no privileges: a copy of the chart's two files with their absolute paths
  (``/usr/local/etc/jupyterhub/``) rewritten into a temporary root, and env values under a
  mount rewritten the same way. ``python -m tests.helpers.chart_hub`` then loads the chart's
  configuration exactly as the hub would (``hub.extraConfig`` → ``configure(c)`` included) and
  builds an app pod with the spawner configured by it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from types import SimpleNamespace

from .helm import Rendered

REPO = Path(__file__).resolve().parents[2]
HUB_WORKDIR = "/srv/jupyterhub"  # the k8s-hub image's WORKDIR: where sqlite-pvc's file goes
CHART_ETC = "/usr/local/etc/jupyterhub/"


def site_objects(policy_text: str) -> dict:
    """What docs/deploy.md tells the operator to create before installing (test values)."""
    return {
        "Secret": {
            "streamlit-hub-google": {
                "client-id": "test-client.apps.googleusercontent.com",
                "client-secret": secrets.token_urlsafe(16),
                "service-account.json": '{"type": "service_account"}',
            },
            "streamlit-hub-secrets": {
                "crypt-key": secrets.token_hex(32),
                "audit-db-url": f"sqlite:///{HUB_WORKDIR}/audit.sqlite",
            },
        },
        "ConfigMap": {"streamlit-hub-policy": {"policy.yaml": policy_text}},
    }


def service_env(rendered: Rendered, host: str = "127.0.0.1") -> dict[str, str]:
    """The ``<NAME>_SERVICE_HOST`` / ``_PORT`` / ``_PORT_<PORT NAME>`` variables of every Service."""
    env = {}
    for svc in rendered.all("Service"):
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ports = svc["spec"].get("ports") or []
        env[f"{prefix}_SERVICE_HOST"] = host
        if ports:
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
    return env


def expand(value: str, env: dict) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command and args."""
    for k, v in env.items():
        value = value.replace(f"$({k})", v)
    return value


class HubPod:
    def __init__(self, rendered: Rendered, site: dict, root: Path):
        self.rendered, self.site, self.root = rendered, site, Path(root)
        self.spec = rendered.get("Deployment", "hub")["spec"]["template"]["spec"]
        self.container = next(c for c in self.spec["containers"] if c["name"] == "hub")
        self.mounts: list[tuple[Path, str]] = []

    # ---- objects ------------------------------------------------------------------------
    def _data(self, kind: str, name: str) -> dict[str, str]:
        try:
            if kind == "Secret":
                return self.rendered.secret_data(name)
            return dict(self.rendered.get(kind, name).get("data") or {})
        except KeyError:
            pass
        if name in self.site.get(kind, {}):
            return self.site[kind][name]
        raise KeyError(
            f"the hub pod needs the {kind} {name!r}: neither the chart renders it nor "
            "does docs/deploy.md say to create it"
        )

    def _volume_files(self, volume: dict) -> dict[str, str] | None:
        if "configMap" in volume:
            src, data = volume["configMap"], self._data("ConfigMap", volume["configMap"]["name"])
        elif "secret" in volume:
            src, data = volume["secret"], self._data("Secret", volume["secret"]["secretName"])
        else:
            return None
        if src.get("items"):
            return {i["path"]: data[i["key"]] for i in src["items"]}
        return data

    def materialize(self) -> list[tuple[Path, str]]:
        """Write every volume the hub container mounts under ``root`` + its mount path."""
        volumes = {v["name"]: v for v in self.spec.get("volumes") or []}
        self.mounts = []
        for m in self.container.get("volumeMounts") or []:
            volume, path = volumes[m["name"]], m["mountPath"]
            local = self.root / path.lstrip("/")
            files = self._volume_files(volume)
            if files is None:  # a PVC or an emptyDir: a folder
                if not ("persistentVolumeClaim" in volume or "emptyDir" in volume):
                    raise ValueError(f"volume {m['name']}: kind not handled here: {volume}")
                local.mkdir(parents=True, exist_ok=True)
            elif m.get("subPath"):
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(files[m["subPath"]])
            else:
                local.mkdir(parents=True, exist_ok=True)
                for name, text in files.items():
                    (local / name).write_text(text)
            self.mounts.append((local, path.rstrip("/") or "/"))
        return self.mounts

    # ---- environment --------------------------------------------------------------------
    def env(self, namespace: str) -> dict[str, str]:
        """The container's env as the kubelet gives it (service variables included)."""
        env = service_env(self.rendered)
        for e in self.container.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            ref = e["valueFrom"]
            if "secretKeyRef" in ref:
                r = ref["secretKeyRef"]
                env[e["name"]] = self._data("Secret", r["name"])[r["key"]]
            elif "configMapKeyRef" in ref:
                r = ref["configMapKeyRef"]
                env[e["name"]] = self._data("ConfigMap", r["name"])[r["key"]]
            elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                env[e["name"]] = namespace
            else:
                raise ValueError(f"env {e['name']}: {ref} not handled here")
        return env

    def args(self) -> list[str]:
        return [*(self.container.get("command") or []), *(self.container.get("args") or [])]

    # ---- without privileges: paths rewritten ---------------------------------------------
    def redirect(self, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
        """Rewrite the chart's two files and ``env`` for files under ``root``; returns the
        config file to load and the rewritten env."""
        prefix = str(self.root) + CHART_ETC
        for name in ("jupyterhub_config.py", "z2jh.py"):
            f = self.root / CHART_ETC.lstrip("/") / name
            f.write_text(f.read_text().replace(CHART_ETC, prefix))
        out = {}
        for k, v in env.items():
            under = [p for _, p in self.mounts if v == p or v.startswith(p.rstrip("/") + "/")]
            out[k] = str(self.root) + v if under else v
        return self.root / CHART_ETC.lstrip("/") / "jupyterhub_config.py", out


# ---- in a child process: the chart's configuration loaded, an app pod built with it ----------
class _Group:
    def __init__(self, name):
        self.name = name


class _User:
    def __init__(self, name, groups):
        self.name, self.id, self.url = name, 1, f"/user/{name}/"
        self.groups = [_Group(g) for g in groups]
        self.spawners, self.orm_spawners = {}, {}


SPAWNER_TRAITS = (
    "cmd",
    "uid",
    "gid",
    "fs_gid",
    "image",
    "image_pull_policy",
    "start_timeout",
    "http_timeout",
    "extra_labels",
    "scheduler_name",
    "priority_class_name",
    "mem_guarantee",
    "mem_limit",
    "cpu_guarantee",
    "cpu_limit",
    "init_containers",
    "lifecycle_hooks",
    "extra_pod_config",
    "extra_containers",
    "namespace",
    "storage_pvc_ensure",
    "pvc_name_template",
    "storage_capacity",
    "events_enabled",
    "policy_file",
    "audit_url",
    "service_account",
    "node_selector",
    "tolerations",
    "allow_privilege_escalation",
)
HUB_TRAITS = (
    "spawner_class",
    "subdomain_host",
    "hub_connect_url",
    "hub_bind_url",
    "cleanup_servers",
    "allow_named_servers",
    "concurrent_spawn_limit",
    "db_url",
    "template_paths",
    "admin_access",
)


def _plain(value):
    return json.loads(json.dumps(value, default=repr))


def build_through_chart(config_file: Path, starts: list[dict]) -> dict:
    """Load ``config_file`` as the hub does; for each start (user, groups, options, name) build
    the app pod with a spawner configured by it."""
    from kubernetes_asyncio.client import ApiClient
    from traitlets.config.loader import PyFileConfigLoader

    from spawner.kube import StreamlitKubeSpawner

    cfg = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(f"{record.levelname} {record.getMessage()}")

    async def one(start):
        orm = SimpleNamespace(name=start["name"], user_options=None, state=None, server=None)
        sp = StreamlitKubeSpawner(
            _mock=True, config=cfg, orm_spawner=orm, user=_User(start["user"], start["groups"])
        )
        sp.log.addHandler(Keep())
        sp.user_options = start.get("options") or {}
        opts = sp.validated_options()
        sp.app_profile_spec = sp.admit(opts)
        sp.app_entry = sp.resolve_app_entry(opts)
        await sp.load_user_options()
        pod = ApiClient().sanitize_for_serialization(await sp.get_pod_manifest())
        pvc = ApiClient().sanitize_for_serialization(sp.get_pvc_manifest())
        return {
            "pod": pod,
            "pvc": pvc,
            "spawner": {t: _plain(getattr(sp, t)) for t in SPAWNER_TRAITS},
        }

    async def go():
        return [await one(s) for s in starts]

    hub = cfg.JupyterHub
    return {
        "starts": asyncio.run(go()),
        "hub": {t: _plain(hub[t]) for t in HUB_TRAITS if t in hub},
        "services": [
            _plain({k: v for k, v in s.items() if k != "api_token"}) for s in hub.services
        ],
        "proxy": _plain({k: v for k, v in cfg.ConfigurableHTTPProxy.items() if k != "auth_token"}),
        "log": records,
        # (test values only) the key that encrypts auth state, and the one configure() checks
        "crypt": {
            "config": list(cfg.CryptKeeper.get("keys", [])),
            "env": os.environ.get("JUPYTERHUB_CRYPT_KEY"),
        },
    }


KUBECONFIG_NOWHERE = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: none, user: {token: not-a-secret}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: default}}]
current-context: none
"""


def through_chart(
    rendered: Rendered, site: dict, root: Path, starts: list[dict], namespace: str = "streamlit-hub"
) -> dict:
    """Load the chart's hub configuration with these rendered values, in a child process with
    the hub pod's environment, and build an app pod for each start (``user``, ``groups``,
    ``options``, ``name``) with the spawner it configures."""
    import subprocess

    pod = HubPod(rendered, site, root)
    pod.materialize()
    config, env = pod.redirect(pod.env(namespace))
    kubeconfig = root / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG_NOWHERE)  # KubeSpawner loads one even when mocked
    workdir = root / HUB_WORKDIR.lstrip("/")
    env.update(
        PATH=os.environ["PATH"],
        HOME=str(root),
        LANG="C.UTF-8",
        PYTHONPATH=str(REPO),
        KUBECONFIG=str(kubeconfig),
        # spawner/hubconfig.py's default data dir is the pod's /srv/jupyterhub
        STREAMLIT_HUB_DATA_DIR=str(workdir),
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.helpers.chart_hub",
            "--config",
            str(config),
            "--starts",
            json.dumps(starts),
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0 or "@@RESULT@@" not in out.stdout:
        raise RuntimeError(
            f"the chart's hub configuration failed ({out.returncode}):\n"
            f"{out.stdout[-4000:]}\n{out.stderr[-6000:]}"
        )
    result = json.loads(out.stdout.split("@@RESULT@@", 1)[1])
    result["stdout"] = out.stdout.split("@@RESULT@@", 1)[0]
    result["stderr"] = out.stderr
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.helpers.chart_hub")
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--starts", required=True, help="JSON: [{user, groups, options, name}]")
    args = ap.parse_args(argv)
    out = build_through_chart(args.config, json.loads(args.starts))
    sys.stdout.write("\n@@RESULT@@" + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
