"""Bundles (spawner/bundles.py): checked, content-addressed, stored once, materialised, verified.

Every refusal is asserted twice: the error (a sentence, the right class) and the store's
folder unchanged (no blob, no staging left). Archives are real zip/tar files built here.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import tarfile
import tempfile
import threading
import time
import unicodedata
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from spawner.bundles import (
    BundleError,
    BundleFile,
    BundleLimitError,
    BundleLimits,
    BundleNotFoundError,
    BundleStore,
    DigestMismatchError,
    check_entry,
    digest_of,
    listing,
    parse_digest,
    read_listing,
    remove_tree,
    verify,
)

MiB = 2**20
APP = b"import streamlit as st\nst.write('hi')\n"


class M(NamedTuple):
    """One archive member: file (default), exec, dir, symlink, hardlink, fifo, device."""

    name: str
    data: bytes = b""
    kind: str = "file"


_ZIP_MODE = {"file": 0o100644, "exec": 0o100755, "dir": 0o40755, "symlink": 0o120777}
_ZIP_MODE |= {"fifo": 0o10644, "device": 0o20644}
_TAR_TYPE = {"file": tarfile.REGTYPE, "exec": tarfile.REGTYPE, "dir": tarfile.DIRTYPE}
_TAR_TYPE |= {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}
_TAR_TYPE |= {"device": tarfile.CHRTYPE, "block": tarfile.BLKTYPE}


def zip_bytes(members, *, compression=zipfile.ZIP_DEFLATED, when=(2020, 1, 2, 3, 4, 6)) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names, on purpose
        with zipfile.ZipFile(buf, "w", compression) as z:
            for m in members:
                info = zipfile.ZipInfo(m.name, when)
                info.external_attr = _ZIP_MODE[m.kind] << 16
                info.compress_type = compression
                z.writestr(info, m.data or (b"/etc/passwd" if m.kind == "symlink" else b""))
    return buf.getvalue()


def tar_bytes(members, *, mode="w:gz", mtime=1_600_000_000, uid=1000) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as t:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = _TAR_TYPE[m.kind]
            info.mode = 0o755 if m.kind in ("exec", "dir") else 0o644
            info.mtime, info.uid, info.uname = mtime, uid, "someone"
            info.linkname = "app.py" if m.kind == "hardlink" else "/etc/passwd"
            info.size = len(m.data) if info.type == tarfile.REGTYPE else 0
            t.addfile(info, io.BytesIO(m.data) if info.size else None)
    return buf.getvalue()


def build(fmt: str, members) -> bytes:
    return zip_bytes(members) if fmt == "zip" else tar_bytes(members)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def store(tmp_path) -> BundleStore:
    return BundleStore.on_disk(tmp_path / "data")


def assert_refused(store, upload, match, error=BundleError, **kwargs) -> BundleError:
    root = store.staging.parent
    before = tree(root)
    with pytest.raises(error, match=match) as caught:
        store.add(upload, **kwargs)
    assert tree(root) == before, "a refused bundle left something behind"
    assert list(store.digests()) == []
    assert caught.value.http_status == (413 if isinstance(caught.value, BundleLimitError) else 400)
    return caught.value


def over_limit(store, upload, said, **limits) -> BundleError:
    return assert_refused(store, upload, said, BundleLimitError, limits=BundleLimits(**limits))


FILES = [M("app.py", APP), M("pages/1_Data.py", b"x = 1\n"), M("data/sales.csv", b"a,b\n1,2\n")]


# ---- the digest ---------------------------------------------------------------------------
def test_one_bundle_as_zip_tar_gz_tar_folder_and_zipped_folder_has_one_digest_and_one_blob(
    store, tmp_path
):
    folder = tmp_path / "app"
    for m in FILES:
        (folder / m.name).parent.mkdir(parents=True, exist_ok=True)
        (folder / m.name).write_bytes(m.data)
    uploads = [
        zip_bytes(FILES),
        zip_bytes(
            list(reversed(FILES)), compression=zipfile.ZIP_STORED, when=(2001, 1, 1, 0, 0, 0)
        ),
        tar_bytes([M("./", kind="dir"), *[M("./" + m.name, m.data) for m in FILES]]),
        tar_bytes(list(reversed(FILES)), mode="w", mtime=0, uid=0),
        folder,
        zip_bytes([M("my-app/" + m.name, m.data) for m in FILES]),  # a zipped folder
    ]
    infos = [store.add(u) for u in uploads]
    assert len({i.digest for i in infos}) == 1
    assert [i.created for i in infos] == [True] + [False] * 5
    assert list(store.digests()) == [infos[0].digest]
    assert [f.path for f in infos[0].files] == ["app.py", "data/sales.csv", "pages/1_Data.py"]
    assert infos[0].size == sum(len(m.data) for m in FILES) and infos[0].file_count == 3


def test_the_digest_is_sha256_of_the_documented_listing():
    files = [BundleFile("b.py", True, "1" * 64, 3), BundleFile("app.py", False, "2" * 64, 5)]
    expected = (
        b"jupyterhub-streamlit bundle v1\n- " + b"2" * 64 + b" app.py\nx " + b"1" * 64 + b" b.py\n"
    )
    assert listing(files) == expected
    assert digest_of(files) == "sha256:" + hashlib.sha256(expected).hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        [M("app.py", APP + b"\n"), *FILES[1:]],  # a byte of content
        [M("main.py", APP), *FILES[1:]],  # a name (with entry main.py below)
        [M("app.py", APP, "exec"), *FILES[1:]],  # the executable bit
        FILES[:2],  # a file less
    ],
)
def test_content_names_and_the_executable_bit_change_the_digest(store, change):
    entry = "main.py" if change[0].name == "main.py" else None
    assert store.add(zip_bytes(FILES)).digest != store.add(zip_bytes(change), entry=entry).digest


def test_empty_folders_and_modes_other_than_x_do_not_change_the_digest(store):
    a = store.add(tar_bytes([*FILES, M("empty", kind="dir"), M("more/empty", kind="dir")]))
    b = store.add(zip_bytes(FILES))
    assert a.digest == b.digest and not b.created


def test_digests_and_limits_are_checked_when_read_or_made():
    for bad in [{"max_files": 0}, {"max_bundle_bytes": -1}, {"max_depth": True}]:
        with pytest.raises(ValueError, match="BundleLimits"):
            BundleLimits(**bad)
    with pytest.raises(ValueError, match="max_ratio must be at least 1"):
        BundleLimits(max_ratio=0.5)
    assert parse_digest("sha256:" + "a" * 64) == "a" * 64
    for bad in ["a" * 64, "sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256:../../x", None]:
        with pytest.raises(BundleError, match="not a bundle digest"):
            parse_digest(bad)


# ---- hostile names ------------------------------------------------------------------------
HOSTILE = {
    "../evil.py": "'..'",
    "pages/../../evil.py": "'..'",
    "..": "'..'",
    "/etc/cron.d/x": "absolute",
    "//x.py": "absolute",
    "a\\..\\evil.py": "'\\\\'",
    "x\x01y.py": "control characters",
    "line\nbreak.py": "control characters",
    "deep/" * 40 + "x.py": "nested more than 32",
    "x" * 256 + ".py": "too long",
}


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_names_are_refused(store, fmt, name):
    assert_refused(store, build(fmt, [M("app.py", APP), M(name, b"boom")]), HOSTILE[name])


def _zip_with_raw_name(placeholder: str, raw: bytes) -> bytes:
    data = zip_bytes([M("app.py", APP), M(placeholder, b"x")])
    encoded = placeholder.encode()
    assert len(encoded) == len(raw) and data.count(encoded) == 2  # local and central header
    return data.replace(encoded, raw)


def test_names_that_are_not_utf8_are_refused(store):
    assert_refused(store, _zip_with_raw_name("XXXX.py", b"\xff\xfe\xfd\xfc.py"), "not valid UTF-8")
    assert_refused(store, _zip_with_raw_name("é.py", b"\xff\xfe.py"), "not valid UTF-8")  # flagged
    tar = tar_bytes([M("app.py", APP), M(b"\xff.py".decode("utf-8", "surrogateescape"), b"x")])
    assert_refused(store, tar, "not valid UTF-8")


def test_zip_names_in_utf8_are_read_as_utf8_with_or_without_the_flag(store):
    unflagged = _zip_with_raw_name("XX.csv", "é.csv".encode())
    assert "é.csv" in {f.path for f in store.add(unflagged).files}
    assert "é.csv" in {f.path for f in store.add(zip_bytes([M("app.py", APP), M("é.csv")])).files}


@pytest.mark.parametrize(
    "fmt, kind, said",
    [
        ("zip", "symlink", "symbolic link"),
        ("zip", "fifo", "FIFO"),
        ("zip", "device", "device file"),
        ("tar.gz", "symlink", "symbolic link"),
        ("tar.gz", "hardlink", "hard link"),
        ("tar.gz", "fifo", "FIFO"),
        ("tar.gz", "device", "device file"),
        ("tar.gz", "block", "device file"),
    ],
)
def test_links_devices_and_fifos_are_refused(store, fmt, kind, said):
    error = assert_refused(store, build(fmt, [M("app.py", APP), M("data.csv", kind=kind)]), said)
    assert "'data.csv'" in str(error) and "regular files and folders" in str(error)


def test_tar_sparse_members_are_refused(store):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        t.addfile(tarfile.TarInfo("app.py"), io.BytesIO(b""))
        info = tarfile.TarInfo("big.bin")
        info.size, info.pax_headers = 5, {"GNU.sparse.map": "0,5", "GNU.sparse.realsize": "10"}
        info.pax_headers |= {"GNU.sparse.major": "0", "GNU.sparse.minor": "1"}
        t.addfile(info, io.BytesIO(b"abcde"))
    assert_refused(store, buf.getvalue(), "'big.bin' is a sparse file")


@pytest.mark.parametrize(
    "members, said",
    [
        ([M("app.py", APP), M("app.py", b"other")], "holds 'app.py' twice"),
        ([M("app.py", APP), M("./pages//a.py"), M("pages/a.py")], "holds 'pages/a.py' twice"),
        ([M("app.py", APP), M(unicodedata.normalize("NFD", "é.py")), M("é.py")], "twice .also as"),
        ([M("app.py", APP), M("data"), M("data/x.csv")], "both a file and a folder"),
        ([M("app.py", APP), M("data/", kind="dir"), M("data")], "both a file and a folder"),
    ],
)
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_duplicate_names_are_refused(store, fmt, members, said):
    assert_refused(store, build(fmt, members), said)


# ---- entry file ---------------------------------------------------------------------------
def test_a_missing_entry_file_is_refused_with_the_python_files_found(store):
    error = assert_refused(store, zip_bytes([M("main.py", APP), M("x.csv")]), "has no app.py")
    assert "Python files in it: main.py." in str(error)
    assert_refused(store, zip_bytes([M("x.csv")]), "holds no Python file")
    assert_refused(store, zip_bytes([M("app.py", APP)]), "has no src/main.py", entry="src/main.py")
    assert_refused(store, zip_bytes([M("app.py/", kind="dir"), M("app.py/x")]), "has no app.py")


@pytest.mark.parametrize("entry", ["run.sh", "../app.py", "/app.py", "", ".", "a\\b.py", 3])
def test_an_explicit_entry_must_be_a_python_file_inside_the_bundle(store, entry):
    assert_refused(store, zip_bytes(FILES), "entry file", entry=entry)


def test_an_explicit_entry_in_a_subfolder_is_kept_normalised(store):
    info = store.add(zip_bytes([M("src/main.py", APP)]), entry="./src/main.py")
    assert info.entry == "src/main.py" and check_entry("src//main.py") == "src/main.py"


def test_one_top_folder_is_dropped_only_when_it_holds_the_entry(store, tmp_path):
    kept = store.add(zip_bytes([M("app.py", APP), M("lib/x.py")]))
    assert {f.path for f in kept.files} == {"app.py", "lib/x.py"}
    dropped = store.add(
        zip_bytes([M("repo-1a2b/src/app.py", APP), M("repo-1a2b/README")]), entry="src/app.py"
    )
    assert {f.path for f in dropped.files} == {"src/app.py", "README"}
    assert_refused(
        BundleStore.on_disk(tmp_path / "other"),
        zip_bytes([M("a/x.py", APP)]),
        "Python files in it: a/x.py",
    )


def test_os_and_tool_litter_is_left_out(store):
    litter = [M(n) for n in ("__MACOSX/._app.py", ".DS_Store", "a/__pycache__/b.pyc", ".git/x")]
    litter.append(M(".venv/bin/python", kind="symlink"))
    info = store.add(tar_bytes([*FILES, *litter]))
    assert info.digest == store.add(zip_bytes(FILES)).digest


# ---- limits -------------------------------------------------------------------------------
def test_an_upload_over_the_archive_limit_is_refused_before_it_is_read(store):
    error = over_limit(
        store, b"no archive" * 190, "uploads are limited to 1K", max_archive_bytes=1024
    )
    assert "1.9K" in str(error)  # the upload's size, said


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "tar"])
def test_a_bundle_over_the_size_limit_is_refused(store, fmt):
    members = [M("app.py", APP), M("a.bin", os.urandom(700_000)), M("b.bin", os.urandom(700_000))]
    upload = tar_bytes(members, mode="w") if fmt == "tar" else build(fmt, members)
    over_limit(store, upload, "more than 1M uncompressed", max_bundle_bytes=MiB)


def test_a_folder_over_the_size_limit_is_refused(store, tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f/app.py").write_bytes(APP)
    (tmp_path / "f/big.bin").write_bytes(b"x" * 2000)
    over_limit(store, tmp_path / "f", "too large", max_bundle_bytes=1000)


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_too_many_files_are_refused(store, fmt):
    members = [M("app.py", APP)] + [M(f"d/{i}.csv") for i in range(11)]
    over_limit(store, build(fmt, members), "more than 10 files", max_files=10)


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_a_highly_compressed_bundle_is_refused_as_a_bomb(store, fmt):
    bomb = build(fmt, [M("app.py", APP), M("zeros.bin", bytes(3 * MiB))])
    over_limit(store, bomb, "expands more than 50 times", max_ratio=50, ratio_floor_bytes=MiB)
    assert store.add(bomb, limits=BundleLimits(max_ratio=None)).size == 3 * MiB + len(APP)


def test_small_compressible_files_are_below_the_ratio_floor(store):
    assert store.add(zip_bytes([M("app.py", APP * 10_000)])).created  # ~370K at > 100×


def test_zip_members_sharing_one_compressed_stream_are_refused(store):
    one = zip_bytes([M("a.bin", bytes(MiB))])
    eocd = one.rindex(b"PK\x05\x06")
    (cd,) = struct.unpack("<I", one[eocd + 16 : eocd + 20])
    entries = b"".join(one[cd:eocd].replace(b"a.bin", b"%05d" % i) for i in range(50))
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 50, 50, len(entries), cd, 0)
    over_limit(
        store, one[:cd] + entries + end, "overlap", max_ratio=None, max_bundle_bytes=100 * MiB
    )


def test_a_pax_header_bomb_is_stopped_while_it_is_read(store):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("app.py")
        info.pax_headers = {"comment": "x" * (8 * MiB)}
        t.addfile(info)
    assert len(buf.getvalue()) < 20_000
    over_limit(
        store, buf.getvalue(), "too large", max_bundle_bytes=MiB, max_files=10, max_ratio=None
    )


# ---- not archives, damaged, encrypted -----------------------------------------------------
def test_what_is_not_a_zip_or_tar_gz_is_refused(store):
    assert_refused(store, b"print('hello')\n", "not a .zip or .tar.gz")
    assert_refused(store, b"", "not a .zip or .tar.gz")


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_a_damaged_archive_is_refused(store, fmt):
    data = build(fmt, [M("app.py", os.urandom(5000))])
    assert_refused(store, data[: len(data) // 2], "damaged or incomplete")


def test_an_encrypted_zip_member_is_refused(store):
    data = bytearray(zip_bytes([M("app.py", APP)]))
    cd = data.index(b"PK\x01\x02")
    data[6] |= 1
    data[cd + 8] |= 1  # flag bit 0 in the local and the central header
    assert_refused(store, bytes(data), "encrypted")


# ---- folders (snapshots) ------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path) -> Path:
    src = tmp_path / "src"
    (src / "pages").mkdir(parents=True)
    (src / "app.py").write_bytes(APP)
    (src / "pages/a.py").write_bytes(b"a")
    return src


@pytest.mark.parametrize(
    "make, said",
    [
        (lambda f: os.symlink("/etc/passwd", f / "data.csv"), "symbolic link"),
        (lambda f: os.symlink("app.py", f / "pages/b.py"), "symbolic link"),
        (lambda f: os.symlink(f / "pages", f / "more"), "symbolic link"),
        (lambda f: os.mkfifo(f / "pipe"), "FIFO"),
        (lambda f: os.link(f / "app.py", f / "again.py"), "hard link"),
        (
            lambda f: open(os.path.join(os.fsencode(f), b"\xff.csv"), "wb").close(),
            "not valid UTF-8",
        ),
    ],
)
def test_a_folder_with_links_fifos_or_bad_names_is_refused(store, folder, make, said):
    make(folder)
    assert_refused(store, folder, said)


def test_a_folder_that_is_a_symlink_is_refused(store, folder):
    os.symlink(folder, folder.parent / "link")
    assert_refused(store, folder.parent / "link", "symbolic link")


def test_a_folder_snapshot_leaves_litter_out_unread(store, folder):
    (folder / ".git").mkdir()
    os.symlink("/etc/passwd", folder / ".git/evil")
    os.mkfifo(folder / ".git/pipe")
    info = store.add(folder)
    assert [f.path for f in info.files] == ["app.py", "pages/a.py"]


def test_executable_bits_of_folder_files_are_kept(store, folder):
    os.chmod(folder / "pages/a.py", 0o750)
    assert {f.path: f.executable for f in store.add(folder).files} == {
        "app.py": False,
        "pages/a.py": True,
    }


# ---- hypothesis: any names are stored safely or refused, leaving nothing ------------------
_PARTS = st.one_of(  # "|"-separated: the empty part, "..", a backslash, DEL, a newline, …
    st.sampled_from("..|.||app.py|a|é|e\u0301|\\|C:|~| |\x7f|\n|__MACOSX".split("|")),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=4),
)

_ANY_NAMES = st.tuples(st.booleans(), st.lists(_PARTS, min_size=1, max_size=4))
_PLAIN = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1)
_NAMES = st.one_of(  # as many plain names (mostly accepted) as anything-goes ones
    _ANY_NAMES.map(lambda t: ("/" if t[0] else "") + "/".join(t[1])),
    st.lists(_PLAIN.filter(lambda p: "/" not in p), min_size=1, max_size=3).map("/".join),
)
_KINDS = st.sampled_from(["file"] * 8 + ["exec", "dir", "symlink", "hardlink", "fifo", "device"])


def _hostile(name: str) -> bool:
    return (
        name.startswith("/")
        or ".." in name.split("/")
        or "\\" in name
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    )


@settings(max_examples=150)
@given(
    members=st.lists(st.tuples(_NAMES, _KINDS), min_size=1, max_size=3),
    fmt=st.sampled_from(["zip", "tar.gz"]),
)
def test_any_member_names_are_stored_inside_the_bundle_or_refused_leaving_nothing(members, fmt):
    if fmt == "zip":
        members = [(n, "file" if k == "hardlink" else k) for n, k in members]
    archive = build(fmt, [M("app.py", APP), *(M(n, b"data", k) for n, k in members)])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = BundleStore.on_disk(root / "data")
        before = tree(root)
        try:
            info = store.add(archive)
        except BundleError:
            assert tree(root) == before
            event("refused")
            return
        event("accepted")
        assert not any(_hostile(n) for n, _k in members), "a hostile name was accepted"
        for f in info.files:
            parts = f.path.split("/")
            assert not f.path.startswith("/") and not {"", ".", ".."} & set(parts)
            f.path.encode("utf-8")
        run = store.materialise(info.digest, root / "run")
        for p in run.rglob("*"):
            assert not p.is_symlink() and p.resolve().is_relative_to(run.resolve())
        remove_tree(run)


# ---- materialise and verify ---------------------------------------------------------------
def test_materialise_writes_a_read_only_copy_that_verifies(store, tmp_path):
    info = store.add(zip_bytes([*FILES, M("run.sh", b"#!/bin/sh\n", "exec")]))
    run = store.materialise(info.digest, tmp_path / "run")
    modes = {str(p.relative_to(run)): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*")}
    assert modes == {
        "app.py": 0o400,
        "run.sh": 0o500,
        "data": 0o500,
        "data/sales.csv": 0o400,
        "pages": 0o500,
        "pages/1_Data.py": 0o400,
    }
    assert stat.S_IMODE(run.stat().st_mode) == 0o500 and (run / "app.py").read_bytes() == APP
    verify(run, info.digest)
    shared = store.materialise(info.digest, tmp_path / "shared", readable_by_others=True)
    assert stat.S_IMODE((shared / "run.sh").stat().st_mode) == 0o555
    assert stat.S_IMODE((shared / "app.py").stat().st_mode) == 0o444
    with pytest.raises(FileExistsError):
        store.materialise(info.digest, tmp_path / "run")
    remove_tree(run)
    remove_tree(shared)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_damaged_blob_is_not_materialised(store, tmp_path):
    good = store.add(zip_bytes(FILES))
    other = store.add(zip_bytes([M("app.py", b"other")]))
    blob = store.blobs.path(store.key(good.digest))
    blob.write_bytes(store.blobs.path(store.key(other.digest)).read_bytes())
    with pytest.raises(DigestMismatchError, match="damaged"):
        store.materialise(good.digest, tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    with pytest.raises(BundleNotFoundError):
        store.materialise("sha256:" + "0" * 64, tmp_path / "run")


def test_verify_takes_bytes_a_path_or_a_folder_and_refuses_any_difference(store, tmp_path):
    info = store.add(zip_bytes(FILES))
    with store.open(info.digest) as f:
        blob = f.read()
    verify(blob, info.digest)
    verify(store.blobs.path(store.key(info.digest)), info.digest)
    verify(zip_bytes(FILES), info.digest)  # any archive of the same files
    with pytest.raises(DigestMismatchError, match="fetch it again"):
        verify(blob, "sha256:" + "0" * 64)
    run = store.materialise(info.digest, tmp_path / "run")
    os.chmod(run, 0o700)
    (run / "extra.txt").write_bytes(b"")
    with pytest.raises(DigestMismatchError):
        verify(run, info.digest)
    with pytest.raises(DigestMismatchError):  # verify leaves nothing out: no litter rules
        verify(zip_bytes([*FILES, M(".DS_Store")]), info.digest)
    with pytest.raises(BundleError, match="not a bundle digest"):
        verify(blob, "md5:abc")
    remove_tree(run)


def test_read_listing_stores_nothing(store):
    files = read_listing(zip_bytes(FILES))
    assert digest_of(files) == store.add(zip_bytes(FILES)).digest


# ---- the store ----------------------------------------------------------------------------
def test_everything_stored_is_private(store):
    store.add(zip_bytes(FILES))
    for p in store.staging.parent.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p


def test_concurrent_adds_of_one_bundle_store_it_once(store):
    upload, results, barrier = zip_bytes(FILES), [], threading.Barrier(4)

    def add():
        barrier.wait()
        results.append(store.add(upload))

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.digest for r in results}) == 1 and [r.created for r in results].count(True) == 1
    assert len(list(store.digests())) == 1 and list(store.staging.iterdir()) == []


def test_garbage_collection_keeps_referenced_and_recent_bundles(store):
    kept = store.add(zip_bytes(FILES)).digest
    dropped = store.add(zip_bytes([M("app.py", b"old")])).digest
    (store.staging / "add-crashed").mkdir()
    assert store.collect_garbage({kept}) == []  # both recent
    later = time.time() + 7200
    assert store.collect_garbage({kept}, now=later) == [dropped]
    assert list(store.digests()) == [kept] and list(store.staging.iterdir()) == []
    assert not store.has(dropped) and store.delete(kept) and not store.delete(kept)
