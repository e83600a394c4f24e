"""A Kubernetes API **test double** with a loopback kubelet, for the streamlit-kube end to end.

Not a cluster. ``kmock``'s ``KubernetesEmulator`` (pinned 0.8) keeps objects in memory and
serves the Kubernetes REST API over HTTP on 127.0.0.1; this module patches the gaps of 0.8
that KubeSpawner runs into, and adds a "loopback kubelet" that turns each pod into a local
process:

- ``watch=True`` (as kubernetes_asyncio sends it) is not recognised: the query is lower-cased;
- objects get no ``uid``/``resourceVersion``/``creationTimestamp``/``namespace`` and pods no
  ``status`` on create: filled in here (without a namespace, watch events were filtered out);
- label/field selectors and watch ``timeoutSeconds`` are ignored: harmless here (only the
  spawner's pods and their events exist);
- DELETE ignores the grace period: the kubelet puts a finalizer on every pod and removes it
  once the pod's process is gone, so a pod disappears only after its process;
- ``/api/v1/namespaces`` paths and ownerReference garbage collection: not used here.

Secrets reach a container the way the kubelet gives them: ``env[].valueFrom.secretKeyRef``
and ``envFrom[].secretRef`` are resolved from the Secrets stored here (``data`` base64,
``stringData``), ``optional`` honoured. A container whose non-optional Secret (or key) is
missing does not start: the pod stays Pending with a ``Failed`` event ("CreateContainerConfigError")
and is tried again on the next pass, as a kubelet does.

The kubelet gives every pod a distinct loopback address (127.0.x.y, never reused in a run),
runs its container's command as a local process bound to that address (the container's
volume mounts mapped to local folders: a PVC to ``<workdir>/pvc/<claim>``, an emptyDir to a
folder of the pod), marks it Running/Ready once its port answers, posts the usual events
(Scheduled, Pulled, Created, Started), and stops the process when the pod is deleted.

With ``--requests FILE`` every API request but the kubelet's own is appended to FILE as a JSON
line (method, Kubernetes action, resource, namespace, user agent), so a test can hold what the
hub asked for against the RBAC the chart grants it.

Run: ``python -m tests.helpers.kube_double --port P --workdir DIR`` (prints ``ready``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import kmock
from kmock._internal import enums, parsing

FINALIZER = "kubelet.test.streamlit-hub.io/process"
KUBELET_AGENT = "loopback-kubelet"
_guess = parsing.guess_k8s


def _guess_k8s(k8s, method, query):
    if "watch" in query:
        query = {**query, "watch": str(query["watch"]).lower()}
    return _guess(k8s, method, query)


parsing.guess_k8s = _guess_k8s


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Emulator(kmock.KubernetesEmulator):
    _versions = itertools.count(1)
    requests_log: Path | None = None

    def _log_request(self, request):
        agent = request.headers.get("User-Agent", "")
        if self.requests_log is None or agent == KUBELET_AGENT:
            return
        entry = {
            "method": str(request.method.value if request.method else ""),
            "action": str(request.action.value if request.action else ""),
            "resource": request.resource.plural if request.resource is not None else None,
            "namespace": request.namespace,
            "path": request.url.path,
            "agent": agent,
        }
        with open(self.requests_log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    async def _handle(self, request):
        self._log_request(request)
        data = request.data
        if request.resource is not None and isinstance(data, dict):
            if request.action == enums.action.CREATE:
                meta = data.setdefault("metadata", {})
                meta.setdefault("namespace", request.namespace or "default")
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", _now())
                meta["resourceVersion"] = str(next(self._versions))
                if request.resource.plural == "pods":
                    meta.setdefault("finalizers", []).append(FINALIZER)
                    data.setdefault("status", {"phase": "Pending"})
                if request.resource.plural == "persistentvolumeclaims":
                    data.setdefault("status", {"phase": "Bound"})
            elif request.action == enums.action.UPDATE:
                data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)


class ContainerConfigError(Exception):
    """A Secret (or a key of it) the container needs is missing."""


class Kubelet:
    def __init__(self, emulator: Emulator, base_url: str, workdir: Path):
        self.emu = emulator
        self.base = base_url.rstrip("/")
        self.workdir = workdir
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.scheduled: dict[str, str] = {}  # pod key -> its address
        self.config_errors: set[str] = set()  # pods told once that a Secret is missing
        self.tasks: set[asyncio.Future] = set()  # the loop holds only weak references
        self.ips = (f"127.0.{a}.{b}" for a in range(10, 250) for b in range(2, 250))
        self.events = itertools.count(1)

    async def run(self):
        async with aiohttp.ClientSession(headers={"User-Agent": KUBELET_AGENT}) as self.http:
            while True:
                try:
                    await self.sync()
                except Exception as e:
                    print(f"kubelet: {e!r}", file=sys.stderr, flush=True)
                await asyncio.sleep(0.2)

    def pods(self):
        for (resource, ns, name), obj in list(self.emu.objects.items()):
            if resource.plural == "pods" and not obj.deleted:
                yield ns, name, obj.raw

    async def sync(self):
        for ns, name, pod in self.pods():
            key = f"{ns}/{name}"
            meta = pod.get("metadata", {})
            if meta.get("deletionTimestamp"):
                await self.kill(key)
                self.scheduled.pop(key, None)  # a new pod of that name gets a new address
                self.config_errors.discard(key)
                await self.patch(ns, name, {"metadata": {"finalizers": []}})
            elif key not in self.procs and pod.get("status", {}).get("phase") == "Pending":
                await self.start(ns, name, pod)
            elif (
                key in self.procs
                and self.procs[key].returncode is not None
                and pod["status"].get("phase") == "Running"
            ):
                code = self.procs[key].returncode
                await self.patch(
                    ns,
                    name,
                    {
                        "status": {
                            "phase": "Succeeded" if code == 0 else "Failed",
                            "containerStatuses": [
                                {
                                    "name": "notebook",
                                    "ready": False,
                                    "restartCount": 0,
                                    "image": "",
                                    "imageID": "",
                                    "state": {"terminated": {"exitCode": code}},
                                }
                            ],
                        }
                    },
                )

    async def patch(self, ns, name, body):
        async with self.http.patch(
            f"{self.base}/api/v1/namespaces/{ns}/pods/{name}",
            json=body,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as r:
            r.raise_for_status()

    async def event(self, ns, pod, reason, message):
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{pod['metadata']['name']}.{next(self.events)}", "namespace": ns},
            "involvedObject": {
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "namespace": ns,
                "uid": pod["metadata"].get("uid"),
            },
            "reason": reason,
            "message": message,
            "type": "Normal",
            "firstTimestamp": _now(),
            "lastTimestamp": _now(),
            "count": 1,
        }
        async with self.http.post(f"{self.base}/api/v1/namespaces/{ns}/events", json=body) as r:
            r.raise_for_status()

    def local_path(self, ns, name, pod, volume_name) -> Path:
        for v in pod["spec"].get("volumes") or []:
            if v["name"] == volume_name:
                if "persistentVolumeClaim" in v:
                    path = self.workdir / "pvc" / v["persistentVolumeClaim"]["claimName"]
                else:
                    path = self.workdir / "pods" / ns / name / volume_name
                path.mkdir(parents=True, exist_ok=True)
                return path
        raise ValueError(f"pod {name}: no volume {volume_name}")

    def secret(self, ns, name) -> dict[str, str] | None:
        """A Secret's decoded data, or None if there is no such Secret."""
        for (resource, obj_ns, obj_name), obj in list(self.emu.objects.items()):
            if resource.plural == "secrets" and (obj_ns, obj_name) == (ns, name):
                if obj.deleted:
                    return None
                raw = obj.raw
                data = {k: base64.b64decode(v).decode() for k, v in (raw.get("data") or {}).items()}
                data.update(raw.get("stringData") or {})
                return data
        return None

    def secret_env(self, ns, container) -> tuple[dict[str, str], dict[str, str]]:
        """What ``envFrom`` gives the container, and what ``env[].valueFrom.secretKeyRef`` does."""
        out: dict[str, str] = {}
        refs: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if not ref:
                continue
            data = self.secret(ns, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'secret "{ref["name"]}" not found')
            prefix = source.get("prefix") or ""
            out.update({prefix + k: v for k, v in data.items()})
        for e in container.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if not ref:
                continue
            data = self.secret(ns, ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                missing = (
                    f'secret "{ref["name"]}" not found'
                    if data is None
                    else f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}"
                )
                raise ContainerConfigError(missing)
            refs[e["name"]] = data[ref["key"]]
        return out, refs

    async def start(self, ns, name, pod):
        key = f"{ns}/{name}"
        if key not in self.scheduled:
            self.scheduled[key] = next(self.ips)
            await self.patch(ns, name, {"spec": {"nodeName": "loopback"}})
            await self.event(ns, pod, "Scheduled", f"Successfully assigned {key} to loopback")
        ip = self.scheduled[key]
        (container,) = pod["spec"]["containers"]
        try:
            env_from, secret_refs = self.secret_env(ns, container)
        except ContainerConfigError as e:
            if key not in self.config_errors:  # (a kubelet repeats it with a backoff)
                self.config_errors.add(key)
                await self.event(ns, pod, "Failed", f"Error: {e} (CreateContainerConfigError)")
            return
        mounts = sorted(
            (
                (m["mountPath"], self.local_path(ns, name, pod, m["name"]))
                for m in container.get("volumeMounts") or []
            ),
            key=lambda m: -len(m[0]),
        )

        def local(value: str) -> str:
            for mount, path in mounts:
                if value == mount or value.startswith(mount.rstrip("/") + "/"):
                    return str(path) + value[len(mount.rstrip("/")) :]
            return value

        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **env_from}
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = local(str(e["value"]))
            elif e["name"] in secret_refs:
                env[e["name"]] = secret_refs[e["name"]]
        port = next((p["containerPort"] for p in container.get("ports") or []), 8888)
        service_url = env.get("JUPYTERHUB_SERVICE_URL", f"http://0.0.0.0:{port}/")
        env["JUPYTERHUB_SERVICE_URL"] = service_url.replace("0.0.0.0", ip, 1)
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        if command and command[0] == "python":
            command[0] = sys.executable
        await self.event(
            ns, pod, "Pulled", f'Container image "{container["image"]}" already present on machine'
        )
        log = open(self.workdir / f"{name}.log", "ab")
        cwd = local(container.get("workingDir") or env.get("HOME") or "/")
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            cwd=cwd if Path(cwd).is_dir() else str(self.workdir),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.procs[key] = proc
        await self.event(ns, pod, "Created", "Created container notebook")
        await self.event(ns, pod, "Started", "Started container notebook")
        await self.patch(
            ns, name, {"status": {"phase": "Pending", "podIP": ip, "hostIP": "127.0.0.1"}}
        )
        task = asyncio.ensure_future(self.ready_when_listening(ns, name, ip, port, proc))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def ready_when_listening(self, ns, name, ip, port, proc):
        for _ in range(600):
            if proc.returncode is not None:
                # the container exited before it listened (an app that cannot start): say so
                # as a kubelet would, so the spawner fails the start now, not at its timeout
                await self.patch(
                    ns,
                    name,
                    {
                        "status": {
                            "phase": "Failed",
                            "containerStatuses": [
                                {
                                    "name": "notebook",
                                    "ready": False,
                                    "started": False,
                                    "restartCount": 0,
                                    "image": "",
                                    "imageID": "",
                                    "state": {
                                        "terminated": {
                                            "exitCode": proc.returncode,
                                            "reason": "Error",
                                            "finishedAt": _now(),
                                        }
                                    },
                                }
                            ],
                        }
                    },
                )
                return
            try:
                _, writer = await asyncio.open_connection(ip, port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        await self.patch(
            ns,
            name,
            {
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "startTime": _now(),
                    "conditions": [
                        {"type": "Ready", "status": "True"},
                        {"type": "PodScheduled", "status": "True"},
                    ],
                    "containerStatuses": [
                        {
                            "name": "notebook",
                            "ready": True,
                            "started": True,
                            "restartCount": 0,
                            "image": "",
                            "imageID": "",
                            "state": {"running": {"startedAt": _now()}},
                        }
                    ],
                }
            },
        )

    async def kill(self, key):
        proc = self.procs.pop(key, None)
        if proc is None or proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def kill_all(self):
        for key in list(self.procs):
            await self.kill(key)


def kubeconfig(port: int) -> str:
    return f"""apiVersion: v1
kind: Config
clusters: [{{name: double, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: double, user: {{token: not-a-secret}}}}]
contexts: [{{name: double, context: {{cluster: double, user: double, namespace: default}}}}]
current-context: double
"""


async def serve(port: int, workdir: Path, requests_log: Path | None = None):
    emu = Emulator()
    emu.requests_log = requests_log
    for plural in ("pods", "events", "persistentvolumeclaims", "secrets", "services", "configmaps"):
        emu.resources[f"v1/{plural}"] = {}
    async with emu, kmock.Server(emu, port=port) as server:
        kubelet = Kubelet(emu, str(server.url), workdir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.ensure_future(kubelet.run())
        print("ready", flush=True)
        await stop.wait()
        task.cancel()
        await kubelet.kill_all()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.helpers.kube_double")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--requests", type=Path, help="append each API request here (JSON lines)")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.port, args.workdir, args.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
