"""Per-app environments (#14): an app's ``requirements.txt`` gets its own environment.

Built with ``uv`` at deploy time, layered over the platform's app environment (``.venv-app``:
Streamlit, the app server and their pinned dependencies), shared by every app that needs the
same set, and evicted least-recently-used under a disk budget. Nothing here is wired into the
spawners yet: :class:`EnvironmentStore` is the whole core, and the tests drive it with wheels
written by hand (``tests/helpers/wheels.py``), never an index.

The layering, and why
---------------------
The platform's pins must win: the app server imports Streamlit, tornado, starlette… and must
get the versions the platform tested together, whatever the app asks for.

- ``uv venv --system-site-packages`` cannot layer over ``.venv-app``: that is itself a venv,
  a venv's base is always the *system* interpreter, so the flag exposes Debian's
  ``/usr/lib/python3/dist-packages``, not the platform's packages.
- ``uv pip install -r requirements.txt --constraint <pins>`` into a plain venv does refuse
  conflicts, but uv cannot see the platform's packages there, so it installs a second copy of
  every platform package the app names or depends on (measured: ``scikit-learn`` 207 MB
  instead of 154, numpy again; ``pandas`` + ``streamlit`` 390 MB and 34 packages instead of
  0.09 MB and none).
- A ``.pth`` line naming the platform's site-packages puts them *after* the app's own: any
  module the app environment ships under a platform package's name (another distribution's
  ``jwt`` next to PyJWT, a fork named ``tornado``) would shadow the platform's.

What is built instead, in three steps:

1. **Resolve** on a *view* of the platform: a throwaway venv holding copies of the platform's
   ``*.dist-info`` metadata (no code, no ``RECORD``). ``uv pip install --dry-run
   --output-format json -r requirements.in --constraint <pins>`` there sees every platform
   package as installed, so it plans only what the app adds, fetches nothing the platform has
   (not even metadata: it works with an index that lacks the platform's exact versions, and
   with the editable project), and the pins (every distribution the platform interpreter sees,
   ``importlib.metadata``, exact versions) make any change to one a resolution failure whose
   text names ``<package>==<pinned version>``: that is how :class:`PlatformConflict` names the
   package. The view, not ``.venv-app``, is uv's target: uv leaves a world-writable ``.lock``
   in the environment it plans for, and an app account could hold a lock on it.
2. **Install** exactly the planned ``name==version`` list, ``--no-deps``, into a fresh
   ``uv venv --relocatable`` on the platform's base interpreter (same Python, same ABI),
   ``--link-mode hardlink`` from uv's cache (on the same filesystem: ``<root>/cache``) and
   ``--compile-bytecode`` (app accounts cannot write ``__pycache__`` into it).
3. **Layer**: ``00-jupyterhub-streamlit-platform.pth`` imports a 20-line module written into
   the environment that ``site.addsitedir()``-s the platform's site-packages (their own
   ``.pth`` files run: the editable ``spawner`` package, so ``python -m spawner.app_server``
   works) and moves them *ahead* of the environment's own site-packages. An app can add
   packages; it can never replace one the platform has. A last check runs the new interpreter
   and compares every visible version with the pins and the plan before publishing.

Measured on the project's machine (2 shared cores, uv 0.13.9, CPython 3.11.2, PyPI): an
environment for one small pure-Python dependency (``humanize``) builds in 0.4-0.5 s, cold
cache included, and takes 1.1 MB (0.09 MB of it the venv skeleton and the layer);
``scikit-learn`` (scipy, joblib…, numpy from the platform) 1.1 s and 154 MB without bytecode,
2.3 s and 206 MB with it. The time is mostly four process starts (uv three times, the check).
With hard links the files are shared with uv's cache while it holds them: ``clean_cache()``
empties it, and then each environment owns its bytes (what the budget counts).

Content addressing: the key is a digest of the normalized requirements (canonical names,
sorted, duplicates dropped), the platform interpreter (implementation, version, platform),
the platform pins, the package index and this module's layout version. The same set of
requirements on the same platform is one environment; a platform upgrade changes every key.
Unpinned requirements are resolved once, when the environment is first built.

Build: into ``<root>/.building/<key>-*/`` (same filesystem), then one ``rename()`` to
``<root>/envs/<key>``: a failed, cancelled or timed-out build leaves nothing behind but its
log (``<root>/failed/<key>.log``, also carried by the exception). A concurrent build of the
same key in another process loses the rename and uses the winner's environment. The uv
processes get a clean environment (no ``UV_*`` or ``PIP_*`` of the hub's), ``--no-config``,
umask 022 (the per-analyst app accounts read the environment), and their own process group,
killed whole on timeout or cancellation.

Refused before any build, with a sentence naming the line: another package index (only the
allowed one, ``index_url``, may be named), ``-e``, ``-r``/``-c`` includes, VCS, file and URL
requirements, ``--hash`` and other options, environment variables (``${X}``, which uv would
expand from the hub's environment), and anything that is not a PEP 508 requirement. uv never
reads the analyst's file: the store writes the parsed, normalized requirements.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

# Bump when what an environment holds changes (the layer, the files beside the venv): every
# key changes with it, so old environments are never reused and age out under the budget.
LAYOUT_VERSION = 1
PTH_NAME = "00-jupyterhub-streamlit-platform.pth"
LAYER_MODULE = "_jupyterhub_streamlit_platform"
META_NAME = "streamlit-hub-env.json"
LOG_NAME = "streamlit-hub-build.log"
LOCK_NAME = "streamlit-hub-requirements.lock"
LAST_USED_NAME = "streamlit-hub-last-used"

MAX_REQUIREMENTS_BYTES = 64 * 1024
MAX_REQUIREMENT_LINES = 500
# The variables a uv process keeps from the hub's environment (certificates, proxies, locale).
_PASSED_VARIABLES = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
_VCS_PREFIXES = ("git+", "hg+", "svn+", "bzr+")
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar.xz")
_INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url")
_INCLUDE_OPTIONS = ("-r", "--requirement", "-c", "--constraint")
_EDITABLE_OPTIONS = ("-e", "--editable")
_OPTION = re.compile(r"^(--?[A-Za-z][A-Za-z-]*)(?:(?:=|\s+)(.*))?$")

Progress = Callable[[int, str], "Awaitable[object] | object"]


# ---- errors ---------------------------------------------------------------------------------
class EnvironmentBuildError(Exception):
    """An environment was not built. ``str()`` is one sentence for the analyst; ``log`` is
    the build's log (empty when nothing ran)."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.message = message
        self.log = log


class RequirementsRefused(EnvironmentBuildError):
    """Bad input, refused before any build; ``line`` is its 1-based line number (or None)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class PlatformConflict(EnvironmentBuildError):
    """A requirement needs another version of a package the platform pins (``packages``)."""

    def __init__(self, message: str, packages: Sequence[str], log: str):
        super().__init__(message, log)
        self.packages = tuple(packages)


class BuildFailed(EnvironmentBuildError):
    """The build ran and failed: a package that does not exist, the time or size limit…"""


# ---- requirements ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Requirements:
    """Normalized requirements: one PEP 508 string each, canonical names, sorted, unique."""

    lines: tuple[str, ...]

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)

    def __bool__(self) -> bool:
        return bool(self.lines)


def _normalize_url(url: str) -> str:
    return url.strip().rstrip("/")


def redact_url(url: str) -> str:
    """``url`` without its credentials (``https://****@host/simple``)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"****@{host}", parts.path, parts.query, parts.fragment))


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(first line number, line) with comments dropped and ``\\`` continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            yield start, line
    if pending.strip():
        yield start, pending.strip()


def parse_requirements(text: str, *, index_url: str | None = None) -> Requirements:
    """The requirements of an app's ``requirements.txt``, or :class:`RequirementsRefused`.

    ``index_url`` is the one package index builds use: a line naming it (``-i``,
    ``--index-url``, ``--extra-index-url``) is accepted and changes nothing; any other index,
    and every other option, is refused.
    """
    if len(text.encode()) > MAX_REQUIREMENTS_BYTES:
        raise RequirementsRefused(
            f"requirements.txt is larger than {MAX_REQUIREMENTS_BYTES // 1024} KB."
        )
    allowed_index = _normalize_url(index_url) if index_url else None
    found: dict[str, str] = {}
    count = 0
    for number, line in _logical_lines(text):
        count += 1
        if count > MAX_REQUIREMENT_LINES:
            raise RequirementsRefused(
                f"requirements.txt has more than {MAX_REQUIREMENT_LINES} requirements.", number
            )
        where = f"Line {number} of requirements.txt"
        if "${" in line or "$(" in line:
            raise RequirementsRefused(
                f"{where} uses an environment variable ({line[:80]!r}): write the value itself.",
                number,
            )
        if line.startswith("-"):
            _check_option(line, where, number, allowed_index)
            continue
        requirement = _parse_requirement(line, where, number)
        requirement.name = canonicalize_name(requirement.name)
        found.setdefault(str(requirement), str(requirement))
    return Requirements(tuple(sorted(found)))


def _check_option(line: str, where: str, number: int, allowed_index: str | None) -> None:
    match = _OPTION.match(line)
    option, value = (match.group(1), (match.group(2) or "").strip()) if match else (line, "")
    if option in _INDEX_OPTIONS:
        if allowed_index and value and _normalize_url(value) == allowed_index:
            return
        named = redact_url(value) if value else "another index"
        allowed = (
            f"the platform's index ({redact_url(allowed_index)})"
            if allowed_index
            else "the platform's index"
        )
        raise RequirementsRefused(
            f"{where} names the package index {named}: packages come only from {allowed}.",
            number,
        )
    if option in _EDITABLE_OPTIONS:
        raise RequirementsRefused(
            f"{where} is an editable install ({option}): list the package by name and version.",
            number,
        )
    if option in _INCLUDE_OPTIONS:
        raise RequirementsRefused(
            f"{where} includes another file ({option}): put every requirement in "
            "requirements.txt itself.",
            number,
        )
    raise RequirementsRefused(
        f"{where} is an option ({option}) that an app's requirements.txt cannot use: only "
        "requirements like 'pandas>=2.2' are accepted.",
        number,
    )


def _parse_requirement(line: str, where: str, number: int) -> Requirement:
    lowered = line.lower()
    if lowered.startswith(_VCS_PREFIXES) or any(f"@ {p}" in lowered for p in _VCS_PREFIXES):
        raise RequirementsRefused(
            f"{where} installs from a version-control repository ({line[:80]!r}): publish the "
            "package to the platform's index and require it by name.",
            number,
        )
    if (
        lowered.startswith((".", "/", "~", "file:"))
        or "://" in lowered
        or lowered.endswith(_ARCHIVE_SUFFIXES)
    ):
        raise RequirementsRefused(
            f"{where} installs from a file or URL ({line[:80]!r}): require packages by name "
            "(and version) from the platform's index.",
            number,
        )
    if re.search(r"\s--?[A-Za-z]", line):
        raise RequirementsRefused(
            f"{where} has an option after the requirement ({line[:80]!r}): per-requirement "
            "options such as --hash are not supported (the platform pins what it installs "
            "itself).",
            number,
        )
    try:
        requirement = Requirement(line)
    except InvalidRequirement as exc:
        raise RequirementsRefused(
            f"{where} is not a requirement ({line[:80]!r}): {exc}.", number
        ) from None
    if requirement.url:
        raise RequirementsRefused(
            f"{where} installs from a URL ({line[:80]!r}): require packages by name "
            "(and version) from the platform's index.",
            number,
        )
    return requirement


# ---- the platform -----------------------------------------------------------------------------
_PROBE = r"""
import importlib.metadata, json, platform, sys, sysconfig
pins = {}
for dist in importlib.metadata.distributions():
    name = dist.metadata["Name"]
    if name and dist.version:
        pins.setdefault(name, dist.version)
paths = []
for key in ("purelib", "platlib"):
    path = sysconfig.get_path(key)
    if path not in paths:
        paths.append(path)
print(json.dumps({
    "base_python": getattr(sys, "_base_executable", sys.executable),
    "implementation": sys.implementation.name,
    "version": platform.python_version(),
    "platform": sysconfig.get_platform(),
    "site_packages": paths,
    "pins": pins,
}))
"""


@dataclass(frozen=True)
class Platform:
    """The platform's app environment, as its own interpreter sees it."""

    python: str
    base_python: str
    python_id: str  # "cpython-3.11.2-linux-x86_64"
    version: str
    site_packages: tuple[str, ...]
    pins: dict[str, str] = field(hash=False)  # canonical name -> exact version

    def constraints(self) -> str:
        return "".join(f"{name}=={version}\n" for name, version in sorted(self.pins.items()))


def probe_platform(python: str, timeout: float = 60) -> Platform:
    """Ask the platform's interpreter what it is and which distributions it sees."""
    result = subprocess.run(
        [python, "-I", "-c", _PROBE],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cannot inspect the platform's Python {python}: {result.stderr}")
    data = json.loads(result.stdout)
    pins: dict[str, str] = {}
    for name, version in data["pins"].items():
        pins.setdefault(canonicalize_name(name), version)
    return Platform(
        python=python,
        base_python=data["base_python"],
        python_id=f"{data['implementation']}-{data['version']}-{data['platform']}",
        version=data["version"],
        site_packages=tuple(data["site_packages"]),
        pins=pins,
    )


# ---- environments ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Environment:
    """A built environment: run ``python`` (``<path>/bin/python``) to use it."""

    key: str
    path: Path
    requirements: tuple[str, ...]
    installed: tuple[str, ...]  # "name==version" of what the environment adds to the platform
    size: int  # bytes on disk (distinct inodes inside ``path``)
    built_at: float
    build_seconds: float
    last_used: float

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def log_path(self) -> Path:
        return self.path / LOG_NAME


def disk_usage(path: Path) -> int:
    """Bytes allocated to the files under ``path`` (each inode once; symlinks not followed)."""
    total, seen = 0, set()
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return total


def copy_metadata(site_packages: Sequence[str], dest: Path) -> None:
    """Copy the distributions' metadata (``*.dist-info``, ``*.egg-info``; not ``RECORD``)
    found in ``site_packages`` into ``dest``: what uv reads to see them as installed."""
    for folder in map(Path, site_packages):
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith((".dist-info", ".egg-info")):
                continue
            if entry.is_dir():
                shutil.copytree(
                    entry,
                    dest / entry.name,
                    ignore=shutil.ignore_patterns("RECORD", "__pycache__"),
                    dirs_exist_ok=True,
                )
            elif entry.is_file():
                shutil.copy2(entry, dest / entry.name)


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSED_VARIABLES if k in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra or {})
    return env


def _layer_module(site_packages: Sequence[str]) -> str:
    return f'''"""Put the platform's app environment ahead of this one (jupyterhub-streamlit).

Written by spawner/environments.py: Streamlit, the app server and every package the platform
pins come from the platform's environment; this environment only adds packages after them.
"""

import os
import site
import sys

PLATFORM = {list(site_packages)!r}


def _layer():
    here = os.path.dirname(os.path.abspath(__file__))
    before = list(sys.path)
    for folder in PLATFORM:
        site.addsitedir(folder)  # runs the platform's own .pth files too
    added = [p for p in sys.path if p not in before]
    at = before.index(here) if here in before else len(before)
    sys.path[:] = before[:at] + added + before[at:]


_layer()
'''


_CHECK = r"""
import importlib.metadata, json, sys
expected = json.load(sys.stdin)
wrong = {}
for name, version in expected.items():
    try:
        seen = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        seen = None
    if seen != version:
        wrong[name] = [version, seen]
print(json.dumps(wrong))
"""


class _Log:
    def __init__(self, redact: Callable[[str], str]):
        self.parts: list[str] = []
        self.redact = redact

    def add(self, text: str) -> None:
        self.parts.append(self.redact(text))

    def text(self) -> str:
        return "".join(self.parts)


class EnvironmentStore:
    """Per-app environments under ``root``: built, shared, looked up and evicted.

    ``platform_python`` is the platform's app environment's interpreter (``.venv-app/bin/
    python``). Policy knobs: ``index_url`` (the one package index; None: uv's default),
    ``max_env_bytes`` (an environment larger than that is refused after its build and
    deleted), ``build_timeout`` (seconds for the whole build), ``disk_budget`` (bytes for all
    environments: after each build, the least recently used ones outside ``in_use`` are
    evicted down to it). ``find_links``, ``no_index`` and ``offline`` serve tests and
    air-gapped sites; ``cache_dir`` defaults to ``<root>/cache`` (same filesystem: uv
    hard-links files from it, ``link_mode``).
    """

    def __init__(
        self,
        root: Path | str,
        platform_python: str,
        *,
        uv: str | None = None,
        index_url: str | None = None,
        find_links: Sequence[str] = (),
        no_index: bool = False,
        offline: bool = False,
        max_env_bytes: int | None = None,
        build_timeout: float = 600,
        disk_budget: int | None = None,
        cache_dir: Path | str | None = None,
        link_mode: str = "hardlink",
        compile_bytecode: bool = True,
        platform: Platform | None = None,
    ):
        self.root = Path(root)
        self.platform_python = platform_python
        self.uv = uv or _find_uv()
        self.index_url = index_url
        self.find_links = tuple(str(f) for f in find_links)
        self.no_index = no_index
        self.offline = offline
        self.max_env_bytes = max_env_bytes
        self.build_timeout = build_timeout
        self.disk_budget = disk_budget
        self.cache_dir = Path(cache_dir) if cache_dir else self.root / "cache"
        self.link_mode = link_mode
        self.compile_bytecode = compile_bytecode
        self._platform = platform
        self._locks: dict[str, asyncio.Lock] = {}
        self.builds = 0  # builds started by this store (tests count them)

    # -- layout --
    @property
    def envs_dir(self) -> Path:
        return self.root / "envs"

    @property
    def building_dir(self) -> Path:
        return self.root / ".building"

    @property
    def failed_dir(self) -> Path:
        return self.root / "failed"

    @property
    def platform(self) -> Platform:
        if self._platform is None:
            self._platform = probe_platform(self.platform_python)
        return self._platform

    def parse(self, text: str) -> Requirements:
        return parse_requirements(text, index_url=self.index_url)

    def key(self, requirements: Requirements) -> str:
        """The environment's address: requirements, interpreter, pins, index, layout."""
        platform = self.platform
        digest = hashlib.sha256(
            json.dumps(
                {
                    "layout": LAYOUT_VERSION,
                    "requirements": list(requirements.lines),
                    "python": platform.python_id,
                    "pins": sorted(platform.pins.items()),
                    "index": redact_url(self.index_url) if self.index_url else None,
                    "no_index": self.no_index,
                },
                sort_keys=True,
            ).encode()
        ).hexdigest()
        return digest[:32]

    # -- lookup --
    def get(self, key: str) -> Environment | None:
        path = self.envs_dir / key
        try:
            meta = json.loads((path / META_NAME).read_text())
        except (OSError, ValueError):
            return None
        try:
            last_used = (path / LAST_USED_NAME).stat().st_mtime
        except OSError:
            last_used = meta.get("built_at", 0.0)
        return Environment(
            key=key,
            path=path,
            requirements=tuple(meta["requirements"]),
            installed=tuple(meta["installed"]),
            size=int(meta["size"]),
            built_at=float(meta["built_at"]),
            build_seconds=float(meta["build_seconds"]),
            last_used=last_used,
        )

    def list(self) -> list[Environment]:
        try:
            keys = sorted(p.name for p in self.envs_dir.iterdir())
        except OSError:
            return []
        return [env for env in map(self.get, keys) if env is not None]

    def touch(self, key: str) -> None:
        """Record a use of the environment (an app start): it is evicted last."""
        marker = self.envs_dir / key / LAST_USED_NAME
        with contextlib.suppress(OSError):
            marker.touch()
            os.utime(marker)

    # -- build --
    async def ensure(
        self,
        requirements: Requirements | str,
        *,
        progress: Progress | None = None,
        in_use: Iterable[str] = (),
    ) -> Environment:
        """The environment for ``requirements``: reused when built, else built now.

        ``progress(percent, message)`` hears each step (it may be a coroutine function).
        Raises :class:`RequirementsRefused`, :class:`PlatformConflict` or :class:`BuildFailed`.
        After a build, environments are evicted down to ``disk_budget``, never one in
        ``in_use`` (keys) nor the new one.
        """
        if isinstance(requirements, str):
            requirements = self.parse(requirements)
        key = self.key(requirements)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            env = self.get(key)
            if env is not None:
                self.touch(key)
                await _report(progress, 100, f"Reusing the app's environment ({key[:12]})")
                return self.get(key) or env
            env = await self._build(requirements, key, progress)
        if self.disk_budget is not None:
            await asyncio.to_thread(self.evict, in_use=[*in_use, key])
        return env

    async def _build(
        self, requirements: Requirements, key: str, progress: Progress | None
    ) -> Environment:
        self.builds += 1
        started = time.monotonic()
        deadline = started + self.build_timeout
        platform = self.platform
        log = _Log(self._redact)
        for folder in (self.root, self.envs_dir, self.building_dir, self.failed_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.envs_dir.chmod(0o755)  # the app accounts run the environments…
        self.building_dir.chmod(0o700)  # …but never reach a build, its lock files or logs
        self.failed_dir.chmod(0o700)
        work = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=self.building_dir))
        venv = work / "env"
        try:
            (work / "requirements.in").write_text(requirements.text())
            (work / "platform-pins.txt").write_text(platform.constraints())
            n = len(requirements.lines)
            await _report(
                progress,
                10,
                f"Resolving {n} requirement{'s' * (n != 1)} on top of the platform's "
                f"{len(platform.pins)} pinned packages",
            )
            # The new venv does not depend on the plan: made while uv plans (one process less
            # to wait for); a refused plan throws it away with the rest of ``work``.
            made = asyncio.ensure_future(
                self._uv(
                    ["venv", "--relocatable", "--python", platform.base_python, str(venv)],
                    work,
                    deadline,
                    log,
                )
            )
            try:
                installed = await self._resolve(work, platform, deadline, log)
            finally:
                code, _ = await made
            lock_text = "".join(f"{line}\n" for line in installed)
            (work / "lock.txt").write_text(lock_text)
            await _report(progress, 35, f"Creating the environment (Python {platform.version})")
            if code != 0:
                raise BuildFailed("The environment could not be created.", log.text())
            site_packages = self._site_packages(venv)
            (site_packages / f"{LAYER_MODULE}.py").write_text(_layer_module(platform.site_packages))
            (site_packages / PTH_NAME).write_text(f"import {LAYER_MODULE}\n")
            if installed:
                shown = ", ".join(installed[:5]) + (" …" if len(installed) > 5 else "")
                await _report(progress, 50, f"Installing {len(installed)} package(s): {shown}")
                install_args = [
                    "pip",
                    "install",
                    "--python",
                    str(venv / "bin" / "python"),
                    "--no-deps",
                    "--link-mode",
                    self.link_mode,
                    "-r",
                    "lock.txt",
                ]
                if self.compile_bytecode:
                    install_args.append("--compile-bytecode")
                code, _ = await self._uv(install_args, work, deadline, log)
                if code != 0:
                    raise BuildFailed(
                        f"The packages could not be installed: {_uv_error(log.text())}",
                        log.text(),
                    )
            # uv's lock file is world-writable: the published environment is never written to
            with contextlib.suppress(OSError):
                (venv / ".lock").unlink()
            await _report(progress, 85, "Checking the environment against the platform")
            await self._check(venv, platform, installed, deadline, log)
            size = disk_usage(venv)
            if self.max_env_bytes is not None and size > self.max_env_bytes:
                raise BuildFailed(
                    f"The environment takes {human_bytes(size)}, more than the "
                    f"{human_bytes(self.max_env_bytes)} allowed.",
                    log.text(),
                )
            took = time.monotonic() - started
            log.add(f"# built in {took:.2f} s, {human_bytes(size)}\n")
            (venv / LOCK_NAME).write_text(lock_text)
            (venv / LOG_NAME).write_text(log.text())
            (venv / META_NAME).write_text(
                json.dumps(
                    {
                        "key": key,
                        "requirements": list(requirements.lines),
                        "installed": list(installed),
                        "python": platform.python_id,
                        "size": size,
                        "built_at": time.time(),
                        "build_seconds": round(took, 3),
                    },
                    indent=1,
                )
            )
            (venv / LAST_USED_NAME).touch()
            _readable_by_all(venv)
            await _report(progress, 95, "Publishing the environment")
            try:
                os.rename(venv, self.envs_dir / key)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # another process built the same key first: use its environment
            env = self.get(key)
            if env is None:  # pragma: no cover - renamed away under us
                raise BuildFailed("The environment vanished after its build.", log.text())
            with contextlib.suppress(OSError):
                (self.failed_dir / f"{key}.log").unlink()
            await _report(
                progress,
                100,
                f"Environment ready in {took:.1f} s ({human_bytes(env.size)})",
            )
            return env
        except EnvironmentBuildError as exc:
            if not exc.log:
                exc.log = log.text()
            self._keep_failed_log(key, exc.log)
            raise
        except BaseException:
            self._keep_failed_log(key, log.text())
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _keep_failed_log(self, key: str, text: str) -> None:
        with contextlib.suppress(OSError):
            (self.failed_dir / f"{key}.log").write_text(text)

    def failed_log(self, key: str) -> str | None:
        """The log of the last failed build of ``key``, if any."""
        try:
            return (self.failed_dir / f"{key}.log").read_text()
        except OSError:
            return None

    def _site_packages(self, venv: Path) -> Path:
        found = sorted((venv / "lib").glob("python*/site-packages"))
        if not found:
            raise BuildFailed("The new environment has no site-packages folder.")
        return found[0]

    async def _check(
        self,
        venv: Path,
        platform: Platform,
        installed: Sequence[str],
        deadline: float,
        log: _Log,
    ) -> None:
        expected = dict(platform.pins)
        for line in installed:
            name, _, version = line.partition("==")
            expected[canonicalize_name(name)] = version
        code, out = await self._run(
            [str(venv / "bin" / "python"), "-I", "-c", _CHECK],
            venv.parent,
            deadline,
            log,
            stdin=json.dumps(expected).encode(),
        )
        try:
            wrong = json.loads(out) if code == 0 else None
        except ValueError:
            wrong = None
        if wrong is None:
            raise BuildFailed("The new environment's Python does not start.", log.text())
        if wrong:
            shown = ", ".join(f"{n} (wanted {v[0]}, sees {v[1]})" for n, v in sorted(wrong.items()))
            raise BuildFailed(
                f"The new environment does not see the expected versions: {shown}.", log.text()
            )

    async def _resolve(
        self, work: Path, platform: Platform, deadline: float, log: _Log
    ) -> tuple[str, ...]:
        """What the environment adds to the platform, as ``name==version`` lines.

        uv plans an install (``--dry-run``) into a *view* of the platform: a throwaway venv
        holding copies of the platform's ``*.dist-info`` metadata and no code. uv sees every
        platform package as installed, so it neither fetches nor plans them, and the pins as
        constraints make any change to one a resolution failure. The platform's own
        environment is never a target: uv would leave a world-writable lock file in it.
        """
        view = await self._platform_view(platform, deadline, log)
        code, out = await self._uv(
            [
                "pip",
                "install",
                "--dry-run",
                "--output-format",
                "json",
                "--python",
                str(view / "bin" / "python"),
                "-r",
                "requirements.in",
                "--constraint",
                "platform-pins.txt",
            ],
            work,
            deadline,
            log,
        )
        if code != 0:
            raise self._resolution_error(log.text())
        try:
            changes = json.loads(out)["changes"]
            planned = [(c["name"], c["version"], c.get("action")) for c in changes]
        except (ValueError, KeyError, TypeError):
            raise BuildFailed("uv's install plan could not be read.", log.text()) from None
        installed, touched = [], []
        for name, version, action in planned:
            name = canonicalize_name(name)
            pinned = platform.pins.get(name)
            if action == "installed" and pinned is None:
                installed.append(f"{name}=={version}")
            elif not (action == "installed" and pinned == version):
                touched.append(name)
            # else: a pinned package whose metadata the view lacks: the platform provides it
        if touched:
            pins = [f"{n}=={platform.pins[n]}" for n in touched if n in platform.pins]
            raise self._conflict(pins or touched, "uv planned to change them.", log.text())
        return tuple(sorted(installed))

    async def _platform_view(self, platform: Platform, deadline: float, log: _Log) -> Path:
        """The view of the platform uv plans against, made once per platform (its interpreter
        and pins: a platform upgrade makes a new one) and reused by every build: making it
        (a venv and a copy of every platform package's metadata) cost each build 0.2-0.5 s.
        Private to the hub (``<root>/.views``); made aside and renamed into place whole."""
        tag = hashlib.sha256(
            json.dumps([platform.python_id, sorted(platform.pins.items())]).encode()
        ).hexdigest()[:16]
        views = self.root / ".views"
        views.mkdir(mode=0o700, exist_ok=True)
        view = views / f"platform-{tag}"
        if (view / "bin" / "python").exists():
            return view
        work = Path(tempfile.mkdtemp(prefix=".new-", dir=views))
        try:
            code, _ = await self._uv(
                ["venv", "--python", platform.base_python, str(work / "view")], work, deadline, log
            )
            if code != 0:
                raise BuildFailed("The environment could not be created.", log.text())
            copy_metadata(platform.site_packages, self._site_packages(work / "view"))
            try:
                os.rename(work / "view", view)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # another build made it first: use that one
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return view

    def _resolution_error(self, log: str) -> EnvironmentBuildError:
        error = _uv_error(log)
        conflicts = []
        for name, version in sorted(self.platform.pins.items()):
            pattern = rf"(?<![\w.-]){re.escape(name)}=={re.escape(version)}(?![\w.+-])"
            if re.search(pattern, error, re.I):
                conflicts.append(f"{name}=={version}")
        if conflicts:
            return self._conflict(conflicts, f"uv: {error}", log)
        return BuildFailed(f"The requirements could not be resolved: {error}", log)

    def _conflict(self, pins: Sequence[str], why: str, log: str) -> PlatformConflict:
        names = [pin.partition("==")[0] for pin in pins]
        one = len(pins) == 1
        return PlatformConflict(
            f"Refused: the requirements need another version of {', '.join(names)} than the "
            f"platform's {', '.join(pins)}; the app server runs on {'it' if one else 'them'}, "
            f"so an app cannot change {'its' if one else 'their'} version. {why}",
            names,
            log,
        )

    def _redact(self, text: str) -> str:
        if self.index_url and self.index_url != redact_url(self.index_url):
            text = text.replace(self.index_url, redact_url(self.index_url))
            parts = urlsplit(self.index_url)
            if parts.password:
                text = text.replace(parts.password, "****")
        return text

    def _uv_env(self) -> dict[str, str]:
        return _clean_env(
            {
                "UV_CACHE_DIR": str(self.cache_dir),
                "UV_NO_PROGRESS": "1",
                "NO_COLOR": "1",
                "UV_PYTHON_DOWNLOADS": "never",
            }
        )

    def _index_args(self) -> list[str]:
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for link in self.find_links:
            args += ["--find-links", link]
        if self.no_index:
            args.append("--no-index")
        return args

    async def _uv(self, args: list[str], cwd: Path, deadline: float, log: _Log) -> tuple[int, str]:
        command = [self.uv, *args, "--no-config"]
        if args[0] == "pip":
            command += self._index_args()
        if self.offline:
            command.append("--offline")
        return await self._run(command, cwd, deadline, log)

    async def _run(
        self,
        command: list[str],
        cwd: Path,
        deadline: float,
        log: _Log,
        *,
        stdin: bytes | None = None,
    ) -> tuple[int, str]:
        """Run ``command`` in its own process group; its output goes to the log; (status,
        stdout). Past the deadline, or when the caller is cancelled, the group is killed."""
        log.add(f"$ {' '.join(command)}\n")
        left = deadline - time.monotonic()
        if left <= 0:
            raise BuildFailed(self._timeout_sentence(), log.text())
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=self._uv_env(),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            umask=0o022,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), timeout=left)
        except TimeoutError:
            _kill_group(process)
            await process.wait()
            log.add("# timed out: the build was stopped\n")
            raise BuildFailed(self._timeout_sentence(), log.text()) from None
        except BaseException:
            _kill_group(process)
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())
            raise
        text = out.decode(errors="replace")
        log.add(err.decode(errors="replace"))
        log.add(text)
        if process.returncode:
            log.add(f"# exit status {process.returncode}\n")
        return process.returncode or 0, text

    def _timeout_sentence(self) -> str:
        return f"The build took longer than the {self.build_timeout:g} s allowed and was stopped."

    # -- eviction --
    def evict(self, *, in_use: Iterable[str] = (), budget: int | None = None) -> list[str]:
        """Delete least-recently-used environments until they fit ``budget`` bytes (default:
        ``disk_budget``); never one whose key is in ``in_use``. Returns the evicted keys.
        Also clears build folders left by a crashed hub (older than twice the timeout)."""
        self._clear_stale_builds()
        budget = self.disk_budget if budget is None else budget
        if budget is None:
            return []
        keep = set(in_use)
        envs = sorted(self.list(), key=lambda env: (env.last_used, env.key))
        total = sum(env.size for env in envs)
        evicted = []
        for env in envs:
            if total <= budget:
                break
            if env.key in keep:
                continue
            if self.remove(env.key):
                total -= env.size
                evicted.append(env.key)
        return evicted

    def remove(self, key: str) -> bool:
        """Delete one environment (first renamed away, so it vanishes at once)."""
        path = self.envs_dir / key
        self.building_dir.mkdir(parents=True, exist_ok=True)
        trash = self.building_dir / f"evicted-{key}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(path, trash)
        except OSError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def clean_cache(self) -> None:
        """Empty uv's cache. Environments keep their files (hard links outlive the cache's
        copy), so after this each one owns its bytes and eviction frees them."""
        subprocess.run(
            [self.uv, "cache", "clean", "--no-config", "--quiet"],
            env=self._uv_env(),
            capture_output=True,
            timeout=self.build_timeout,
            check=False,
        )

    def _clear_stale_builds(self) -> None:
        cutoff = time.time() - 2 * self.build_timeout
        try:
            entries = list(self.building_dir.iterdir())
        except OSError:
            return
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)


# ---- helpers ----------------------------------------------------------------------------------
def _find_uv() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:  # pragma: no cover - uv is in the hub extra
        found = shutil.which("uv")
        if not found:
            raise RuntimeError(
                "uv is not installed: pip install jupyterhub-streamlit[hub]"
            ) from None
        return found
    return find_uv_bin()


def _uv_error(log: str) -> str:
    """uv's error, from its last ``error:`` line on, on one line (at most 600 characters)."""
    at = log.rfind("error:")
    text = log[at + len("error:") :] if at >= 0 else log[-600:]
    text = re.sub(r"^\s*(cause|hint|help):\s*", "", text.strip(), flags=re.M)
    text = re.sub(r"^# .*$", "", text, flags=re.M)
    text = " ".join(text.split())
    text = re.sub(r"^No solution found when resolving dependencies:?\s*", "", text)
    return text[:600] + ("…" if len(text) > 600 else "")


def _readable_by_all(path: Path) -> None:
    for folder, _dirs, files in os.walk(path):
        os.chmod(folder, 0o755)
        for name in files:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                mode = os.stat(full).st_mode
                os.chmod(full, mode | 0o444 | (0o111 if mode & 0o100 else 0))


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _report(progress: Progress | None, percent: int, message: str) -> None:
    if progress is None:
        return
    result = progress(percent, message)
    if inspect.isawaitable(result):
        await result
