"""An app's versions: immutable records of a bundle, one of them active (issue #14).

A **version** (``v1``, ``v2``, …; numbers are never reused) records one bundle of
``spawner.bundles`` by digest, with who made it, when, from what (``Source``: an upload, a
git repository at a resolved commit, a snapshot of a home folder), the entry file, the size,
and the environment the builder made for it (``environment``, filled in later). One version
of an app is **active**: the one its server runs. Activating another one (a rollback) only
changes metadata; the spawner restarts the app on it (wiring still to come).

Invariants:

- ``deploy`` checks and stores the bundle first (``BundleStore.add``, no lock: content-
  addressed, so two stores of one bundle are one blob), then records the version under the
  app's lock. A refused bundle (``BundleError``) or a bad user, app or source
  (``VersionError``) leaves nothing behind.
- Writes to one app are serialised by a per-app lock: a thread lock (one hub process) and an
  ``flock`` on ``versions/.lock`` (other processes, e.g. a CLI). Two deploys at once are both
  recorded, as two versions.
- Metadata are JSON files replaced atomically (``os.replace``), so a reader (who takes no
  lock) sees the old or the new file, never half of one:
  ``<data>/apps/<user>/<app>/versions/v<N>.json`` and ``versions/state.json`` (active
  version, next number). A version file is written before the state that names it, and the
  next number is never below an existing file's, so a crash between the two loses nothing.
  (Files rather than sqlite: one writer per app, a handful of records, nothing to migrate,
  and an app's history is readable and removable with ``ls``/``rm -r``.)
- The active version cannot be deleted (``VersionConflictError``); deleting a version keeps
  its bundle until ``collect_garbage`` finds no version of any app pointing at it.
- The user's folder name is the user name percent-encoded (``quote(name, safe="@")``, a
  leading ``.`` as ``%2E``), so any JupyterHub user name is one folder and never ``..``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from spawner.bundles import (
    DEFAULT_LIMITS,
    BundleInfo,
    BundleInput,
    BundleLimits,
    BundleStore,
    parse_digest,
    private_makedirs,
)
from spawner.names import app_name_problem
from spawner.utc import iso_z

_VERSION_ID = re.compile(r"v([1-9][0-9]{0,8})")
_VERSION_FILE = re.compile(r"v([1-9][0-9]{0,8})\.json")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
SOURCE_KINDS = ("upload", "git", "snapshot")
_SOURCE_FIELDS = {
    "filename": "file name",
    "repo": "repository",
    "ref": "branch or tag",
    "commit": "commit",
    "path": "folder",
}
_SOURCE_FIELDS_OF = {
    "upload": ("filename",),
    "git": ("repo", "ref", "commit"),
    "snapshot": ("path",),
}
_FORMAT = 1  # of the JSON files


# ---- errors -------------------------------------------------------------------------------
class VersionError(ValueError):
    """A request about versions is refused; ``str(e)`` says why. Nothing was changed."""

    http_status = 400


class VersionNotFoundError(VersionError, LookupError):
    """No such version of this app."""

    http_status = 404


class VersionConflictError(VersionError):
    """The request conflicts with the app's state (deleting the active version)."""

    http_status = 409


# ---- records ------------------------------------------------------------------------------
def _text(value: object, what: str, limit: int = 1024) -> str:
    if not isinstance(value, str) or not value.strip():
        raise VersionError(f"{what} is required.")
    if len(value) > limit or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise VersionError(
            f"{what} must be at most {limit} characters, without control characters."
        )
    return value


@dataclass(frozen=True)
class Source:
    """Where a version's bundle came from.

    ``upload``: ``filename`` (as sent, optional). ``git``: ``repo`` and the ``commit`` it was
    resolved to (40 or 64 hex digits; a branch or tag alone is not reproducible), ``ref`` as
    asked (optional). ``snapshot``: ``path``, the folder in the home it was taken from.
    """

    kind: str
    filename: str | None = None
    repo: str | None = None
    ref: str | None = None
    commit: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise VersionError(
                f"A version's source is one of {', '.join(SOURCE_KINDS)}, not {self.kind!r}."
            )
        article = "An" if self.kind == "upload" else "A"
        required = {"git": ("repo", "commit"), "snapshot": ("path",)}.get(self.kind, ())
        for name, label in _SOURCE_FIELDS.items():
            value = getattr(self, name)
            if value is None and name not in required:
                continue
            if name not in _SOURCE_FIELDS_OF[self.kind]:
                raise VersionError(f"{article} {self.kind} source has no {label}.")
            if name == "commit" and not (isinstance(value, str) and _COMMIT.fullmatch(value)):
                raise VersionError(
                    "A git source needs the commit it was resolved to (40 or 64 lowercase hex "
                    "digits), not only a branch or tag."
                )
            _text(value, f"{article} {self.kind} source's {label}")

    @classmethod
    def upload(cls, filename: str | None = None) -> Source:
        return cls("upload", filename=filename)

    @classmethod
    def git(cls, repo: str, commit: str, ref: str | None = None) -> Source:
        return cls("git", repo=repo, ref=ref, commit=commit)

    @classmethod
    def snapshot(cls, path: str) -> Source:
        return cls("snapshot", path=path)

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Source:
        return cls(**data)


@dataclass(frozen=True)
class Version:
    """One version of one app; only ``environment`` changes after it is recorded."""

    id: str  # v1, v2, …
    user: str
    app: str
    digest: str  # the bundle's, sha256:<hex>
    created_at: str  # UTC, spawner.utc.iso_z
    created_by: str
    source: Source
    entry: str  # the entry file in the bundle
    size: int  # bytes, uncompressed
    files: int
    environment: str | None = None  # set by the environment builder

    @property
    def number(self) -> int:
        return version_number(self.id)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = self.source.to_json()
        data["format"] = _FORMAT
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Version:
        data = dict(data)
        data.pop("format", None)
        data["source"] = Source.from_json(data["source"])
        return cls(**data)


def version_number(version_id: object) -> int:
    """``v3`` -> 3; ``VersionNotFoundError`` for anything that is no version id."""
    m = _VERSION_ID.fullmatch(version_id) if isinstance(version_id, str) else None
    if not m:
        raise VersionNotFoundError(f"{version_id!r} is not a version: versions are v1, v2, …")
    return int(m.group(1))


def user_folder(user: str) -> str:
    """The user's folder name: percent-encoded, so never empty, ``.``, ``..`` or with ``/``."""
    folder = quote(user, safe="@")
    return "%2E" + folder[1:] if folder.startswith(".") else folder


def _check_user(user: object, what: str = "A user name") -> str:
    return _text(user, what, limit=255)


# ---- atomic JSON --------------------------------------------------------------------------
def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` whole or not at all: a private temporary file, fsync, os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)  # mode 600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


# ---- the lock -----------------------------------------------------------------------------
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _app_lock(folder: Path) -> Iterator[None]:
    """One writer per app: a thread lock for this process, then ``flock`` for the others.

    Both: ``flock`` alone would serialise threads too on a local disk, but not where it is
    emulated with per-process locks (NFS); the thread lock does not reach other processes.
    """
    key = os.path.abspath(folder)
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
    with lock:
        private_makedirs(folder)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


# ---- the store ----------------------------------------------------------------------------
class VersionStore:
    """Versions of every app under ``<data>/apps``; bundles in ``bundles`` (default: on disk)."""

    def __init__(self, data_dir: str | os.PathLike, bundles: BundleStore | None = None):
        self.root = Path(data_dir) / "apps"
        self.bundles = bundles if bundles is not None else BundleStore.on_disk(data_dir)

    def folder(self, user: str, app: str) -> Path:
        """``<data>/apps/<user>/<app>/versions``; ``VersionError`` for a bad user or app name."""
        _check_user(user)
        problem = app_name_problem(app)
        if problem:
            raise VersionError(problem)
        return self.root / user_folder(user) / app / "versions"

    # -- writing (under the app's lock) --
    def deploy(
        self,
        user: str,
        app: str,
        upload: BundleInput,
        *,
        created_by: str,
        source: Source,
        entry: str | None = None,
        limits: BundleLimits = DEFAULT_LIMITS,
        activate: bool = True,
    ) -> Version:
        """Check and store ``upload`` (archive bytes or path, or a folder), record a version.

        ``activate``: make it the active version (default). Raises ``BundleError`` or
        ``VersionError``, and then nothing is stored or recorded.
        """
        self._check_request(user, app, created_by, source)
        bundle = self.bundles.add(upload, entry=entry, limits=limits)
        return self.record(
            user, app, bundle, created_by=created_by, source=source, activate=activate
        )

    def record(
        self,
        user: str,
        app: str,
        bundle: BundleInfo,
        *,
        created_by: str,
        source: Source,
        activate: bool = True,
    ) -> Version:
        """Record a version of a bundle already stored (``BundleStore.add``)."""
        folder = self._check_request(user, app, created_by, source)
        parse_digest(bundle.digest)
        with _app_lock(folder):
            state = self._state(folder)
            number = max([state["next"], *(n + 1 for n in self._numbers(folder))])
            version = Version(
                id=f"v{number}",
                user=user,
                app=app,
                digest=bundle.digest,
                created_at=iso_z(),
                created_by=created_by,
                source=source,
                entry=bundle.entry,
                size=bundle.size,
                files=bundle.file_count,
            )
            _write_json(folder / f"{version.id}.json", version.to_json())
            state["next"] = number + 1
            if activate:
                state["active"] = version.id
            _write_json(folder / "state.json", state)
        return version

    def activate(self, user: str, app: str, version_id: str) -> Version:
        """Make ``version_id`` the active version (a rollback, or a roll forward)."""
        folder = self.folder(user, app)
        with _app_lock(folder):
            version = self.get(user, app, version_id)
            state = self._state(folder)
            state["active"] = version.id
            _write_json(folder / "state.json", state)
        return version

    def delete(self, user: str, app: str, version_id: str) -> Version:
        """Forget a version that is not the active one; its bundle stays until collected."""
        folder = self.folder(user, app)
        with _app_lock(folder):
            version = self.get(user, app, version_id)
            if self._state(folder)["active"] == version.id:
                raise VersionConflictError(
                    f"{version.id} is the active version of {app}: activate another version "
                    "first, then delete this one."
                )
            (folder / f"{version.id}.json").unlink()
        return version

    def set_environment(self, user: str, app: str, version_id: str, environment: str) -> Version:
        """Record the environment the builder made for a version (its one mutable field)."""
        _text(environment, "The environment id", limit=255)
        folder = self.folder(user, app)
        with _app_lock(folder):
            version = replace(self.get(user, app, version_id), environment=environment)
            _write_json(folder / f"{version.id}.json", version.to_json())
        return version

    # -- reading (no lock: every file is replaced whole) --
    def get(self, user: str, app: str, version_id: str) -> Version:
        number = version_number(version_id)
        data = _read_json(self.folder(user, app) / f"v{number}.json")
        if data is None:
            raise VersionNotFoundError(f"{app} has no version {version_id}.")
        return Version.from_json(data)

    def versions(self, user: str, app: str) -> list[Version]:
        """The app's versions, oldest first."""
        folder = self.folder(user, app)
        found = []
        for number in sorted(self._numbers(folder)):
            data = _read_json(folder / f"v{number}.json")
            if data is not None:  # deleted since the folder was listed
                found.append(Version.from_json(data))
        return found

    def active_id(self, user: str, app: str) -> str | None:
        return self._state(self.folder(user, app))["active"]

    def active(self, user: str, app: str) -> Version | None:
        """The version the app runs, or None (no version yet, or none activated)."""
        version_id = self.active_id(user, app)
        return None if version_id is None else self.get(user, app, version_id)

    def apps(self) -> Iterator[tuple[str, str]]:
        """Every (user, app) with a versions folder."""
        if not self.root.is_dir():
            return
        for user_dir in sorted(self.root.iterdir()):
            for app_dir in sorted(user_dir.iterdir()):
                if (app_dir / "versions").is_dir():
                    yield unquote(user_dir.name), app_dir.name

    def referenced_digests(self) -> set[str]:
        """The digests some version of some app points at."""
        return {v.digest for user, app in self.apps() for v in self.versions(user, app)}

    def collect_garbage(self, *, grace_seconds: float = 3600.0) -> list[str]:
        """Delete bundles no version points at (see ``BundleStore.collect_garbage``)."""
        return self.bundles.collect_garbage(self.referenced_digests(), grace_seconds=grace_seconds)

    # -- internals --
    def _check_request(self, user: str, app: str, created_by: str, source: Source) -> Path:
        folder = self.folder(user, app)
        _check_user(created_by, "Who made the version")
        if not isinstance(source, Source):
            raise VersionError("A version needs its source (upload, git or snapshot).")
        return folder

    @staticmethod
    def _numbers(folder: Path) -> list[int]:
        if not folder.is_dir():
            return []
        return [
            int(m.group(1)) for name in os.listdir(folder) if (m := _VERSION_FILE.fullmatch(name))
        ]

    @staticmethod
    def _state(folder: Path) -> dict[str, Any]:
        state = _read_json(folder / "state.json") or {}
        return {"active": state.get("active"), "next": int(state.get("next", 1)), "format": _FORMAT}
