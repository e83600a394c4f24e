"""Publishing wired to the hub (#14): deploy a bundle as a version, build its environment,
run the active version.

The core is three modules that know nothing of the hub: ``bundles`` (checked,
content-addressed app folders), ``versions`` (an app's versions, one active) and
``environments`` (a bundle's ``requirements.txt`` built with uv over the platform's app
environment). This module puts them together for the hub and its spawners:

- :class:`Publisher` (hub side; the REST API in ``publish_api`` holds one): ``deploy`` checks
  and stores the upload, builds its environment *before* recording the version (a build that
  fails records nothing and changes nothing: the app keeps running what it ran, and the build
  log is kept as the app's last build log), then records the version and activates it.
  Deploys of one app are serialised (an ``asyncio.Lock`` per app in the hub, the version
  store's ``flock`` across processes); both are recorded.
- :func:`prepare_run` (spawner side): the version an app start runs, extracted read-only
  into ``<root>/runs/<user>/<app>/<digest>`` (readable by the analyst's app account only),
  and the Python of its environment.

On disk, under the publishing root (``<data>/publish`` on one machine)::

    bundles/ apps/            the core's stores (private to the hub)
    apps/<user>/<app>/last-build.log   the last deploy's build log (owner and admins read it)
    environments/envs/<key>/  built environments (readable: app accounts run them)
    runs/<user>/<app>/<hex>/  a version, extracted for its app account (read-only)
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import os
import tarfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .bundles import DEFAULT_LIMITS, BundleLimits, BundleStore, remove_tree
from .environments import (
    LAST_USED_NAME,
    EnvironmentBuildError,
    EnvironmentStore,
    Requirements,
    parse_requirements,
)
from .versions import Source, Version, VersionError, VersionStore, user_folder

REQUIREMENTS_FILE = "requirements.txt"
MAX_BUILD_LOG_BYTES = 256 * 1024
Progress = Callable[[int, str], "Awaitable[object] | object"]


class DeployError(Exception):
    """A deploy that changed nothing. ``str()`` is the sentence for the analyst;
    ``http_status`` the REST answer; ``log`` the build log (empty when no build ran)."""

    def __init__(self, message: str, http_status: int = 400, log: str = ""):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.log = log


@dataclass(frozen=True)
class Deployed:
    version: Version
    activated: bool
    previous: str | None  # the version that was active before
    environment: str  # the environment's key, "" without requirements
    reused_environment: bool


def read_requirements(bundles: BundleStore, digest: str, limit: int = 64 * 1024) -> str | None:
    """The bundle's top-level ``requirements.txt`` (text), or None when it has none.

    Read from the canonical archive the store wrote (regular files only, checked at ``add``).
    """
    with bundles.open(digest) as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
        for member in tar:
            if member.name == REQUIREMENTS_FILE and member.isfile():
                if member.size > limit:
                    raise DeployError(
                        f"{REQUIREMENTS_FILE} is {member.size} bytes; at most {limit} are read."
                    )
                data = tar.extractfile(member).read()
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    raise DeployError(f"{REQUIREMENTS_FILE} is not UTF-8 text.") from None
    return None


@dataclass(frozen=True)
class PublishLimits:
    """What a user's groups allow when they publish (the policy's publishing keys)."""

    may_publish: bool = True
    bundle: BundleLimits = DEFAULT_LIMITS
    environment_bytes: int | None = None  # None: the hub's (EnvironmentStore.max_env_bytes)
    package_index: str | None = None  # None: the hub's
    build_timeout: float | None = None  # None: the hub's

    @classmethod
    def of(cls, rule) -> PublishLimits:
        """From a policy ``Rule`` (``policy.limits_for(...).rule``)."""
        bundle = replace(
            DEFAULT_LIMITS,
            max_archive_bytes=rule.max_upload_size or DEFAULT_LIMITS.max_archive_bytes,
            max_bundle_bytes=rule.max_bundle_size or DEFAULT_LIMITS.max_bundle_bytes,
        )
        return cls(
            may_publish=rule.may_publish,
            bundle=bundle,
            environment_bytes=rule.max_environment_size,
            package_index=rule.package_index,
            build_timeout=rule.build_timeout,
        )


class Publisher:
    """The hub's publishing: versions, bundles and environments under ``root``.

    ``policy`` (a ``PolicyFile``): each user's ``PublishLimits`` come from their groups'
    rule; without one, the defaults. ``environments`` is the hub's store (its index, build
    timeout and size limit); a group's own index or timeout gets a store of its own over the
    same folder (an environment's key includes its index, so they never mix).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        environments: EnvironmentStore | None,
        *,
        policy=None,
        index_url: str | bool | None = False,
    ):
        self.root = Path(root)
        self.versions = VersionStore(self.root)
        self.environments = environments
        self.policy = policy
        # Without ``environments``: ``False``, a requirements.txt is refused (no builder);
        # else app pods build it themselves from this index (None: PyPI) and the group's.
        self.index_url = index_url
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._stores: dict[tuple[str | None, float | None], EnvironmentStore] = {}

    def published_apps(self, user: str) -> set[str]:
        """The names of ``user``'s apps with versions (one folder, not every user's)."""
        folder = self.versions.root / user_folder(user)
        try:
            return {d.name for d in folder.iterdir() if (d / "versions").is_dir()}
        except OSError:
            return set()

    def limits_for(self, user) -> PublishLimits:
        if self.policy is None:
            return PublishLimits()
        from .policy import group_names, limits_for

        return PublishLimits.of(limits_for(self.policy.current, group_names(user)).rule)

    def environments_for(self, limits: PublishLimits) -> EnvironmentStore | None:
        base = self.environments
        if base is None or (limits.package_index is None and limits.build_timeout is None):
            return base
        key = (limits.package_index, limits.build_timeout)
        if key not in self._stores:
            store = copy.copy(base)
            store.index_url = limits.package_index or base.index_url
            store.build_timeout = limits.build_timeout or base.build_timeout
            store._locks = {}
            self._stores[key] = store
        return self._stores[key]

    @property
    def bundles(self) -> BundleStore:
        return self.versions.bundles

    def build_log_path(self, user: str, app: str) -> Path:
        return self.versions.folder(user, app).parent / "last-build.log"

    def last_build_log(self, user: str, app: str) -> str | None:
        try:
            return self.build_log_path(user, app).read_text(errors="replace")
        except FileNotFoundError:
            return None

    def _keep_log(self, user: str, app: str, text: str) -> None:
        path = self.build_log_path(user, app)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = text.encode(errors="replace")[-MAX_BUILD_LOG_BYTES:]
        tmp = path.with_name(path.name + ".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    async def deploy(
        self,
        user: str,
        app: str,
        upload,
        *,
        by: str,
        source: Source,
        entry: str | None = None,
        activate: bool = True,
        limits: PublishLimits | None = None,
        progress: Progress | None = None,
    ) -> Deployed:
        """Check, store, build and record a version of ``user``'s ``app``.

        Raises :class:`DeployError` (or ``BundleError``/``VersionError``, with their
        ``http_status``), and then no version is recorded and the active one is unchanged.
        """
        self.versions.folder(user, app)  # a bad name is refused before anything is read
        limits = limits or PublishLimits()
        lock = self._locks.setdefault((user, app), asyncio.Lock())
        if lock.locked():
            await _say(progress, 1, "Waiting for another deploy of this app to finish")
        async with lock:
            await _say(progress, 5, "Checking the bundle")
            bundle = await asyncio.to_thread(
                self.bundles.add, upload, entry=entry, limits=limits.bundle
            )
            await _say(
                progress,
                15,
                f"Bundle {bundle.digest[7:19]}: {bundle.file_count} files, "
                f"{_size(bundle.size)}, entry {bundle.entry}",
            )
            text = await asyncio.to_thread(read_requirements, self.bundles, bundle.digest)
            key, reused = "", False
            log = ""
            envs = self.environments_for(limits)
            if text is not None and envs is not None:
                key, reused, log = await self._build(envs, user, app, text, limits, progress)
            elif text is not None and self.index_url is not False:
                # Kubernetes: the pod builds it (app_server/published.py); refuse bad lines now
                try:
                    parse_requirements(text, index_url=limits.package_index or self.index_url)
                except EnvironmentBuildError as e:
                    raise DeployError(e.message, 400) from None
            elif text is not None:
                raise DeployError(
                    "This hub builds no per-app environments, so a bundle with a "
                    f"{REQUIREMENTS_FILE} cannot run here: remove it, or ask an admin.",
                )
            version = await asyncio.to_thread(
                self.versions.record, user, app, bundle, created_by=by, source=source,
                activate=False,
            )  # fmt: skip
            if key:
                version = await asyncio.to_thread(
                    self.versions.set_environment, user, app, version.id, key
                )
            previous = self.versions.active_id(user, app)
            if activate:
                version = await asyncio.to_thread(self.versions.activate, user, app, version.id)
            summary = f"Deployed {version.id} ({bundle.digest[:19]})" + (
                f" with environment {key[:12]}" if key else " (no requirements.txt)"
            )
            self._keep_log(user, app, (log + "\n" if log else "") + summary + "\n")
            await _say(progress, 95, summary)
        await asyncio.to_thread(self.collect_garbage)
        return Deployed(version, activate, previous, key, reused)

    def collect_garbage(self, grace_seconds: float = 3600.0) -> list[str]:
        """Bundles no version points at any more (deleted versions and apps, refused deploys),
        stored longer ago than ``grace_seconds``: removed after every deploy. A failure is
        logged, never the deploy's."""
        try:
            return self.versions.collect_garbage(grace_seconds=grace_seconds)
        except OSError:
            logging.getLogger(__name__).exception("collecting unused bundles failed")
            return []

    async def _build(
        self,
        envs: EnvironmentStore,
        user: str,
        app: str,
        text: str,
        limits: PublishLimits,
        progress: Progress | None,
    ) -> tuple[str, bool, str]:
        try:
            requirements: Requirements = envs.parse(text)
        except EnvironmentBuildError as e:
            self._keep_log(user, app, f"{REQUIREMENTS_FILE} refused: {e.message}\n")
            raise DeployError(e.message, 400) from None
        if not requirements:
            return "", False, ""
        in_use = {v.environment for a_user, a_app in self.versions.apps()
                  for v in self.versions.versions(a_user, a_app) if v.environment}  # fmt: skip
        builds = envs.builds

        async def step(percent: int, message: str) -> None:
            await _say(progress, 20 + percent * 70 // 100, message)

        try:
            env = await envs.ensure(requirements, progress=step, in_use=in_use)
        except EnvironmentBuildError as e:
            self._keep_log(user, app, (e.log or "") + f"\nThe build failed: {e.message}\n")
            raise DeployError(
                f"The app's environment could not be built: {e.message} The app still runs "
                "the version it ran before.",
                422,
                e.log,
            ) from None
        try:
            log = env.log_path.read_text(errors="replace")
        except OSError:
            log = ""
        if limits.environment_bytes is not None and env.size > limits.environment_bytes:
            message = (
                f"The app's environment takes {_size(env.size)}, more than the "
                f"{_size(limits.environment_bytes)} your groups allow: trim requirements.txt, "
                "or ask an admin. The app still runs the version it ran before."
            )
            self._keep_log(user, app, log + "\n" + message + "\n")
            raise DeployError(message, 413, log)
        return env.key, envs.builds == builds, log

    def activate(self, user: str, app: str, version_id: str) -> tuple[Version, str | None]:
        """Make ``version_id`` active; returns it and the version active before."""
        version = self.versions.get(user, app, version_id)
        if version.environment and self.environments is not None:
            if self.environments.get(version.environment) is None:
                raise VersionError(
                    f"{version.id}'s environment is gone (evicted to free disk): deploy its "
                    "bundle again to rebuild it."
                )
        previous = self.versions.active_id(user, app)
        return self.versions.activate(user, app, version.id), previous


# ---- the spawner's side ---------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedRun:
    version: Version
    folder: Path  # the bundle, extracted read-only
    entry: Path
    python: Path | None  # the environment's interpreter; None: the platform's


@functools.lru_cache(maxsize=8)
def _store(root: str | os.PathLike) -> VersionStore:
    """The spawners' version store for ``root``: made once per process (making one creates
    the bundle folders), not at every options check and form."""
    return VersionStore(root)


def active_version(root: str | os.PathLike, user: str, app: str) -> Version | None:
    """The app's active version, or None (no versions: it runs from the owner's home)."""
    try:
        return _store(root).active(user, app)
    except VersionError:
        return None


def check_run(
    root: str | os.PathLike, user: str, app: str, version_id: str | None = None
) -> Version:
    """The version an app start runs (the active one unless ``version_id``), if it can run:
    ``VersionError`` with a sentence for the person starting it otherwise."""
    store = _store(root)
    version = store.get(user, app, version_id) if version_id else store.active(user, app)
    if version is None:
        raise VersionError(f"{app} has no active version: deploy one first.")
    if version.environment and not _env_python(Path(root), version.environment).exists():
        raise VersionError(
            f"{version.id}'s environment is gone (evicted to free disk): deploy the app again "
            "to rebuild it."
        )
    return version


def run_folder(root: str | os.PathLike, user: str, app: str, version: Version) -> Path:
    """Where ``version`` is extracted for its app account."""
    return Path(root) / "runs" / user_folder(user) / app / version.digest.removeprefix("sha256:")


def _env_python(root: Path, key: str) -> Path:
    return root / "environments" / "envs" / key / "bin" / "python"


def prepare_run(
    root: str | os.PathLike,
    user: str,
    app: str,
    version_id: str | None = None,
    *,
    account=None,
) -> PreparedRun:
    """Extract the version an app start runs (the active one unless ``version_id``).

    ``account`` (a ``unix_users.Account``): the analyst's app account, which alone may read
    ``runs/<user>/``; without it (apps run as the hub's user) the folder is the hub's own.
    Older extractions of the app are removed (a running app keeps its open files).
    Raises ``VersionError`` with a sentence for the person starting it.
    """
    root = Path(root)
    version = check_run(root, user, app, version_id)
    python = None
    if version.environment:
        python = _env_python(root, version.environment)
        with contextlib.suppress(OSError):  # a use: evicted last (EnvironmentStore.touch)
            (python.parent.parent / LAST_USED_NAME).touch()
    folder = run_folder(root, user, app, version)
    runs = folder.parent.parent.parent
    runs.mkdir(mode=0o711, exist_ok=True)
    os.chmod(runs, 0o711)
    user_dir = folder.parent.parent
    user_dir.mkdir(mode=0o700, exist_ok=True)
    if account is not None:
        os.chown(user_dir, 0, account.gid)
        os.chmod(user_dir, 0o750)
    folder.parent.mkdir(mode=0o755, exist_ok=True)
    os.chmod(folder.parent, 0o755)
    if not folder.is_dir():
        _store(root).bundles.materialise(version.digest, folder, readable_by_others=True)
    for old in folder.parent.iterdir():
        if old != folder and not old.name.startswith("."):
            remove_tree(old)
    return PreparedRun(version, folder, folder / version.entry, python)


def forget_app(root: str | os.PathLike, user: str, app: str) -> None:
    """An app deleted from the hub takes its versions, build log and extracted runs along
    (their bundles go at the next collection, when no other version points at them)."""
    store = _store(root)
    try:
        folder = store.folder(user, app).parent
    except VersionError:
        return
    if folder.exists():
        remove_tree(folder)
    runs = Path(root) / "runs" / user_folder(user) / app
    if runs.exists():
        remove_tree(runs)


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


async def _say(progress: Progress | None, percent: int, message: str) -> None:
    if progress is None:
        return
    result = progress(percent, message)
    if asyncio.iscoroutine(result):
        await result


__all__ = [
    "DeployError",
    "Deployed",
    "PreparedRun",
    "PublishLimits",
    "Publisher",
    "active_version",
    "check_run",
    "forget_app",
    "prepare_run",
    "read_requirements",
    "run_folder",
]
