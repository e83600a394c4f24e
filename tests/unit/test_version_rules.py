"""Versions (spawner/versions.py), rule by rule: what a source must hold, each text field's
limits, each refusal's sentence, and how the metadata files are written.

Complements tests/unit/test_versions.py (deploy, rollback, the lock, crashes); these pin what
mutation testing (#18, ``python -m bench.mutation run versions``) found no test would notice.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from spawner import versions as versions_module
from spawner.bundles import BundleStore, LocalBlobStore
from spawner.versions import (
    Source,
    Version,
    VersionConflictError,
    VersionError,
    VersionNotFoundError,
    VersionStore,
    version_number,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "https://git.example/sales.git"


def bundle(text: str = "hello") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", f"import streamlit as st\nst.write({text!r})\n")
    return buf.getvalue()


@pytest.fixture
def store(tmp_path) -> VersionStore:
    return VersionStore(tmp_path / "data")


def deploy(store: VersionStore, text: str = "hello", **kwargs) -> Version:
    kwargs.setdefault("created_by", "alice")
    kwargs.setdefault("source", Source.upload("sales.zip"))
    return store.deploy("alice", "sales", bundle(text), **kwargs)


def said(make) -> str:
    with pytest.raises(VersionError) as caught:
        make()
    assert caught.value.http_status == 400
    return str(caught.value)


# ---- sources ------------------------------------------------------------------------------
def test_a_git_source_needs_its_repository_and_commit_a_snapshot_its_folder():
    assert said(lambda: Source("git", commit=COMMIT)) == "A git source's repository is required."
    assert said(lambda: Source("git", repo=REPO)) == (
        "A git source needs the commit it was resolved to (40 or 64 lowercase hex digits), not "
        "only a branch or tag."
    )
    assert said(lambda: Source("snapshot")) == "A snapshot source's folder is required."
    assert Source("upload").to_json() == {"kind": "upload"}  # an upload needs nothing


@pytest.mark.parametrize(
    ("make", "sentence"),
    [
        (lambda: Source("upload", path="apps/x"), "An upload source has no folder."),
        (lambda: Source("git", repo=REPO, commit=COMMIT, filename="x.zip"), "A git source has no "),
        (lambda: Source("snapshot", path="apps/x", ref="main"), "A snapshot source has no "),
        (lambda: Source.upload(" "), "An upload source's file name is required."),
        (lambda: Source.snapshot("\t"), "A snapshot source's folder is required."),
        (lambda: Source.git(REPO, COMMIT, ref=""), "A git source's branch or tag is required."),
    ],
)
def test_a_source_is_refused_in_a_sentence_with_its_article(make, sentence):
    assert said(make).startswith(sentence)


def test_source_fields_may_be_1024_characters_with_spaces_and_past_ascii():
    assert Source.git("https://g.example/" + "r" * 1006, COMMIT).repo  # 1024 characters
    assert Source.upload("my sales (final) – v2 é.zip").filename
    assert Source.upload("x\x80.zip").filename  # C1 characters are not refused
    assert said(lambda: Source.git("https://g.example/" + "r" * 1007, COMMIT)) == (
        "A git source's repository must be at most 1024 characters, without control characters."
    )
    assert said(lambda: Source.upload("del\x7f.zip")) == (
        "An upload source's file name must be at most 1024 characters, without control characters."
    )


# ---- users, apps, who made it -------------------------------------------------------------
def test_user_names_may_be_255_characters(store):
    assert store.folder("u" * 255, "sales").parent.parent.name == "u" * 255
    assert said(lambda: store.folder("u" * 256, "sales")) == (
        "A user name must be at most 255 characters, without control characters."
    )
    assert said(lambda: store.folder("", "sales")) == "A user name is required."


def test_who_made_a_version_is_checked_like_a_user_name(store):
    assert deploy(store, created_by="c" * 255).created_by == "c" * 255
    assert said(lambda: deploy(store, created_by="c" * 256)) == (
        "Who made the version must be at most 255 characters, without control characters."
    )


def test_a_version_without_a_source_object_is_refused(store):
    assert said(lambda: deploy(store, source={"kind": "upload"})) == (
        "A version needs its source (upload, git or snapshot)."
    )


def test_a_version_id_that_is_none_is_said():
    with pytest.raises(VersionNotFoundError) as caught:
        version_number("v0")
    assert str(caught.value) == "'v0' is not a version: versions are v1, v2, …"
    assert version_number("v999999999") == 999999999


# ---- the store ----------------------------------------------------------------------------
def test_the_store_uses_the_bundle_store_it_is_given(tmp_path):
    bundles = BundleStore(LocalBlobStore(tmp_path / "elsewhere"), tmp_path / "staging")
    store = VersionStore(tmp_path / "data", bundles=bundles)
    assert store.bundles is bundles
    v1 = deploy(store)
    assert bundles.has(v1.digest)
    assert not (tmp_path / "data" / "bundles").exists()


def test_a_recorded_version_is_active_unless_said_otherwise(store):
    info = store.bundles.add(bundle())
    v1 = store.record("alice", "sales", info, created_by="alice", source=Source.upload())
    assert store.active_id("alice", "sales") == v1.id == "v1"
    store.record("alice", "sales", info, created_by="alice", source=Source.upload(), activate=False)
    assert store.active_id("alice", "sales") == "v1"


def test_deleting_the_active_version_says_what_to_do(store):
    deploy(store)
    with pytest.raises(VersionConflictError) as caught:
        store.delete("alice", "sales", "v1")
    assert str(caught.value) == (
        "v1 is the active version of sales: activate another version first, then delete this one."
    )
    assert caught.value.http_status == 409


def test_an_environment_id_may_be_255_characters(store):
    deploy(store)
    assert store.set_environment("alice", "sales", "v1", "e" * 255).environment == "e" * 255
    assert said(lambda: store.set_environment("alice", "sales", "v1", "e" * 256)) == (
        "The environment id must be at most 255 characters, without control characters."
    )
    assert said(lambda: store.set_environment("alice", "sales", "v1", " ")) == (
        "The environment id is required."
    )


def test_a_version_file_without_a_format_field_is_read(store):
    v1 = deploy(store)
    data = v1.to_json()
    assert data.pop("format") == 1
    assert Version.from_json(data) == v1


def test_bundles_no_version_points_at_are_collected_after_an_hour(store):
    old = deploy(store, "old")
    deploy(store, "new")
    store.delete("alice", "sales", old.id)
    blob = store.bundles.blobs.path(store.bundles.key(old.digest))
    an_hour_ago = time.time() - 3600.5
    os.utime(blob, (an_hour_ago, an_hour_ago))
    assert store.collect_garbage() == [old.digest]


# ---- the metadata files -------------------------------------------------------------------
def test_metadata_files_are_indented_and_sorted(store):
    v1 = deploy(store)
    folder = store.folder("alice", "sales")
    text = (folder / "v1.json").read_text()
    assert text == json.dumps(v1.to_json(), indent=2, sort_keys=True) + "\n"
    assert text.index('"app"') < text.index('"created_at"') < text.index('"user"')
    state = (folder / "state.json").read_text()
    assert state == '{\n  "active": "v1",\n  "format": 1,\n  "next": 2\n}\n'


def test_a_metadata_file_is_written_hidden_beside_it_then_renamed(store, monkeypatch):
    replaced = []
    real_replace = os.replace

    def replace(src, dst):
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(versions_module.os, "replace", replace)
    deploy(store)
    folder = store.folder("alice", "sales")
    assert [dst for _src, dst in replaced] == [folder / "v1.json", folder / "state.json"]
    for src, dst in replaced:
        assert src.parent == dst.parent  # one file system: the rename is atomic
        assert src.name.startswith(".") and src.name.endswith(".tmp")
