"""Versions (spawner/versions.py): deploy, rollback, delete rules, the per-app lock, metadata."""

from __future__ import annotations

import fcntl
import io
import json
import os
import stat
import threading
import time
import zipfile
from pathlib import Path

import pytest

from spawner import versions as versions_module
from spawner.bundles import BundleError, BundleLimitError, BundleLimits
from spawner.versions import (
    Source,
    Version,
    VersionConflictError,
    VersionError,
    VersionNotFoundError,
    VersionStore,
    user_folder,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def bundle(text: str = "hello", **extra: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", f"import streamlit as st\nst.write({text!r})\n")
        for name, data in extra.items():
            z.writestr(name, data)
    return buf.getvalue()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def store(tmp_path) -> VersionStore:
    return VersionStore(tmp_path / "data")


def deploy(store: VersionStore, text: str = "hello", app: str = "sales", **kwargs) -> Version:
    kwargs.setdefault("created_by", "alice")
    kwargs.setdefault("source", Source.upload("sales.zip"))
    return store.deploy("alice", app, bundle(text), **kwargs)


# ---- deploy and the metadata --------------------------------------------------------------
def test_a_deploy_records_an_active_version_with_its_metadata(store, tmp_path):
    v1 = deploy(store, source=Source.git("https://git.example/sales.git", COMMIT, ref="main"))
    assert (v1.id, v1.number, v1.user, v1.app, v1.entry, v1.files) == (
        "v1",
        1,
        "alice",
        "sales",
        "app.py",
        1,
    )
    assert v1.digest.startswith("sha256:") and v1.size == len(
        "import streamlit as st\nst.write('hello')\n"
    )
    assert v1.created_by == "alice" and v1.created_at.endswith("Z") and v1.environment is None
    assert store.active("alice", "sales") == v1 == store.get("alice", "sales", "v1")
    folder = tmp_path / "data/apps/alice/sales/versions"
    on_disk = json.loads((folder / "v1.json").read_text())
    assert on_disk["source"] == {
        "kind": "git",
        "repo": "https://git.example/sales.git",
        "ref": "main",
        "commit": COMMIT,
    }
    assert on_disk["format"] == 1 and Version.from_json(on_disk) == v1
    assert json.loads((folder / "state.json").read_text()) == {
        "active": "v1",
        "next": 2,
        "format": 1,
    }
    assert store.bundles.has(v1.digest)


def test_metadata_files_and_folders_are_private(store, tmp_path):
    deploy(store)
    for p in (tmp_path / "data").rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p


def test_versions_are_numbered_in_order_and_listed_oldest_first(store):
    ids = [deploy(store, f"v{i}").id for i in range(3)]
    assert ids == ["v1", "v2", "v3"]
    assert [v.id for v in store.versions("alice", "sales")] == ids
    assert store.active_id("alice", "sales") == "v3"
    assert store.versions("alice", "other") == [] and store.active("alice", "other") is None


def test_a_deploy_need_not_activate(store):
    v1 = deploy(store)
    v2 = deploy(store, "next", activate=False)
    assert store.active("alice", "sales") == v1 and store.get("alice", "sales", v2.id) == v2
    assert deploy(store, app="fresh", activate=False) and store.active("alice", "fresh") is None


def test_the_same_bundle_deployed_twice_is_two_versions_and_one_blob(store):
    v1, v2 = deploy(store), deploy(store)
    other_app = deploy(store, app="copy")
    assert v1.id != v2.id and v1.digest == v2.digest == other_app.digest
    assert list(store.bundles.digests()) == [v1.digest]


def test_a_folder_snapshot_is_deployed_like_an_upload(store, tmp_path):
    home_app = tmp_path / "home/apps/sales"
    home_app.mkdir(parents=True)
    (home_app / "main.py").write_text("import streamlit as st\n")
    v = store.deploy(
        "alice",
        "sales",
        home_app,
        created_by="alice",
        source=Source.snapshot("apps/sales"),
        entry="main.py",
    )
    assert v.entry == "main.py" and v.source.to_json() == {"kind": "snapshot", "path": "apps/sales"}
    assert store.bundles.listing(v.digest)[0].path == "main.py"


# ---- rollback and delete ------------------------------------------------------------------
def test_rollback_is_a_metadata_change(store, tmp_path):
    v1, v2 = deploy(store, "one"), deploy(store, "two")
    blobs = tree(tmp_path / "data/bundles")
    assert store.activate("alice", "sales", "v1") == v1
    assert store.active("alice", "sales") == v1
    assert tree(tmp_path / "data/bundles") == blobs
    assert store.versions("alice", "sales") == [v1, v2]
    assert store.activate("alice", "sales", "v2") == v2  # and forward again


def test_the_active_version_cannot_be_deleted(store, tmp_path):
    deploy(store, "one")
    deploy(store, "two")
    before = {p: p.read_bytes() for p in (tmp_path / "data/apps").rglob("*.json")}
    with pytest.raises(
        VersionConflictError, match="v2 is the active version of sales: activate another"
    ) as e:
        store.delete("alice", "sales", "v2")
    assert e.value.http_status == 409
    assert {p: p.read_bytes() for p in (tmp_path / "data/apps").rglob("*.json")} == before


def test_deleting_a_version_keeps_its_number_and_its_bundle_until_collected(store):
    v1 = deploy(store, "one")
    v2 = deploy(store, "two")
    store.activate("alice", "sales", "v1")
    assert store.delete("alice", "sales", "v2") == v2
    with pytest.raises(VersionNotFoundError, match="sales has no version v2"):
        store.get("alice", "sales", "v2")
    assert deploy(store, "three").id == "v3"  # numbers are never reused
    assert store.bundles.has(v2.digest)
    assert store.collect_garbage() == []  # within the grace period
    assert store.collect_garbage(grace_seconds=0) == [v2.digest]
    assert store.bundles.has(v1.digest) and not store.bundles.has(v2.digest)


def test_a_bundle_another_app_points_at_is_not_collected(store):
    deploy(store, "shared", app="first")
    deploy(store, "shared", app="second")
    deploy(store, "new", app="first")
    store.delete("alice", "first", "v1")
    assert store.collect_garbage(grace_seconds=0) == []
    assert len(store.referenced_digests()) == 2


@pytest.mark.parametrize("version_id", ["1", "v0", "v01", "v1.json", "../v1", "", None, "v1/"])
def test_what_is_no_version_id_is_not_found(store, version_id):
    deploy(store)
    for call in (store.get, store.activate, store.delete):
        with pytest.raises(VersionNotFoundError) as e:
            call("alice", "sales", version_id)
        assert e.value.http_status == 404
    assert store.active_id("alice", "sales") == "v1"


def test_environment_is_the_one_field_set_later(store):
    v1 = deploy(store)
    updated = store.set_environment("alice", "sales", "v1", "env-3f2a")
    assert updated.environment == "env-3f2a" and updated == Version(
        **{**v1.__dict__, "environment": "env-3f2a"}
    )
    assert (
        store.get("alice", "sales", "v1") == updated and store.active("alice", "sales") == updated
    )
    with pytest.raises(VersionError, match="environment id"):
        store.set_environment("alice", "sales", "v1", "")


# ---- refusals change nothing --------------------------------------------------------------
def test_a_refused_bundle_records_nothing(store, tmp_path):
    deploy(store)
    before = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    with pytest.raises(BundleError, match=r"has no app\.py"):
        store.deploy(
            "alice",
            "sales",
            bundle().replace(b"app.py", b"xyz.py"),
            created_by="alice",
            source=Source.upload(),
        )
    with pytest.raises(BundleLimitError):
        deploy(store, "x" * 2000, limits=BundleLimits(max_bundle_bytes=1000))
    after = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    assert after == before and store.active_id("alice", "sales") == "v1"


@pytest.mark.parametrize(
    "user, app, created_by, source, said",
    [
        ("alice", "Sales", "alice", Source.upload(), "lowercase"),
        ("alice", "../x", "alice", Source.upload(), "lowercase"),
        ("alice", "", "alice", Source.upload(), "app name is required"),
        ("", "sales", "alice", Source.upload(), "user name is required"),
        ("al\nice", "sales", "alice", Source.upload(), "control characters"),
        ("alice", "sales", "", Source.upload(), "Who made the version is required"),
        ("alice", "sales", "alice", "upload", "needs its source"),
    ],
)
def test_bad_users_apps_and_sources_are_refused_before_anything_is_stored(
    tmp_path, user, app, created_by, source, said
):
    store = VersionStore(tmp_path / "data")
    before = tree(tmp_path / "data")
    with pytest.raises(VersionError, match=said) as e:
        store.deploy(user, app, bundle(), created_by=created_by, source=source)
    assert e.value.http_status == 400 and tree(tmp_path / "data") == before


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda: Source("ftp"), "one of upload, git, snapshot"),
        (lambda: Source.git("https://git.example/r.git", "main"), "resolved to"),
        (lambda: Source.git("https://git.example/r.git", COMMIT.upper()), "resolved to"),
        (lambda: Source.git("", COMMIT), "repository is required"),
        (lambda: Source("upload", repo="x"), "An upload source has no repository"),
        (lambda: Source.snapshot(""), "folder is required"),
        (lambda: Source.upload("a\x00.zip"), "control characters"),
    ],
)
def test_sources_are_checked_when_made(make, said):
    with pytest.raises(VersionError, match=said):
        make()


def test_a_git_source_takes_a_sha256_commit_too():
    source = Source.git("git@git.example:r.git", "ab" * 32)
    assert Source.from_json(source.to_json()) == source


# ---- user folders -------------------------------------------------------------------------
def test_any_user_name_is_one_folder_inside_apps(store, tmp_path):
    users = ["alice@example.com", "..", ".hidden", "a/b", "a%2Fb", "Ünïcode", "x" * 200]
    for user in users:
        store.deploy(user, "sales", bundle(), created_by=user, source=Source.upload())
    apps = tmp_path / "data/apps"
    assert len(list(apps.iterdir())) == len(users)
    for user in users:
        folder = apps / user_folder(user)
        assert folder.parent == apps and folder.resolve().parent == apps.resolve()
    assert sorted(u for u, _app in store.apps()) == sorted(users)
    assert user_folder("..") == "%2E." and user_folder("alice@example.com") == "alice@example.com"


# ---- concurrency and crashes --------------------------------------------------------------
def test_concurrent_deploys_of_one_app_are_serialised_and_all_recorded(store, monkeypatch):
    inside, most, guard = [0], [0], threading.Lock()
    real_write = versions_module._write_json

    def slow_write(path, data):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.01)
        real_write(path, data)
        with guard:
            inside[0] -= 1

    monkeypatch.setattr(versions_module, "_write_json", slow_write)
    barrier, results, errors = threading.Barrier(6), [], []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results.append(deploy(store, f"deploy {i % 3}"))  # some bundles alike
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and most[0] == 1
    assert sorted(v.number for v in results) == [1, 2, 3, 4, 5, 6]
    assert [v.id for v in store.versions("alice", "sales")] == [f"v{i}" for i in range(1, 7)]
    assert len(list(store.bundles.digests())) == 3
    state = json.loads((store.folder("alice", "sales") / "state.json").read_text())
    assert state["next"] == 7 and state["active"] in {v.id for v in results}


def test_the_lock_holds_off_another_process(store):
    deploy(store)
    fd = os.open(store.folder("alice", "sales") / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another process would
    done = threading.Event()
    worker = threading.Thread(target=lambda: (deploy(store, "later"), done.set()))
    worker.start()
    try:
        assert not done.wait(0.3)
        assert [v.id for v in store.versions("alice", "sales")] == ["v1"]
    finally:
        os.close(fd)
    worker.join(10)
    assert done.is_set() and store.active_id("alice", "sales") == "v2"


def test_a_crash_between_version_and_state_loses_nothing(store):
    v1 = deploy(store)
    folder = store.folder("alice", "sales")
    orphan = {**v1.to_json(), "id": "v2"}
    (folder / "v2.json").write_text(
        json.dumps(orphan)
    )  # written, but state.json still says next: 2
    assert deploy(store, "after").id == "v3"
    assert json.loads((folder / "v2.json").read_text()) == orphan


def test_a_failed_metadata_write_leaves_the_old_file_and_no_temporary(store, monkeypatch):
    deploy(store)
    folder = store.folder("alice", "sales")
    state = (folder / "state.json").read_bytes()

    def broken_dump(data, f, **kwargs):
        f.write('{"half": ')
        raise OSError("disk full")

    monkeypatch.setattr(versions_module.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        store.activate("alice", "sales", "v1")
    assert (folder / "state.json").read_bytes() == state
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "state.json", "v1.json"]
