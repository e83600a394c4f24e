"""Tiny wheels written by hand (zipfile), for installer tests that never touch an index.

A wheel is a zip archive with the package's files, ``<name>-<version>.dist-info/METADATA``,
``WHEEL`` and ``RECORD`` (PEP 427): that is all ``uv pip install --no-index --find-links``
needs, so the tests need no build backend (hatchling, setuptools) and no network.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path


def _normalize(name: str) -> str:
    """The distribution name as a wheel's file name spells it (PEP 427 / PEP 503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(
    folder: Path,
    name: str,
    version: str = "1.0",
    *,
    requires: list[str] | tuple[str, ...] = (),
    module: str | None = None,
    source: str | None = None,
    padding: int = 0,
) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` into ``folder`` and return its path.

    The wheel holds one module (``module``, default: the normalized name) whose source is
    ``source`` (default: ``__version__ = "<version>"``), and depends on ``requires`` (PEP 508
    strings). ``padding`` adds that many bytes of incompressible data in a second file, for
    tests that need an environment of a known size.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dist = _normalize(name)
    module = module or dist
    source = source if source is not None else f'__version__ = "{version}"\n'
    info = f"{dist}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {req}" for req in requires]
    files: dict[str, bytes] = {f"{module}.py": source.encode()}
    if padding:
        files[f"{module}_data.bin"] = hashlib.shake_256(name.encode()).digest(padding)
    files[f"{info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests.helpers.wheels\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in files.items()]
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in files.items():
            archive.writestr(arcname, data)
    return path
