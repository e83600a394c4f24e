"""Bundles (spawner/bundles.py), rule by rule: each limit at its boundary, each refusal's
sentence, the canonical blob's bytes, and the races a folder snapshot guards against.

Complements tests/unit/test_bundles.py (the behaviour end to end); these pin what mutation
testing (#18, ``python -m bench.mutation run bundles``) found no test would notice changing.
"""

from __future__ import annotations

import gzip
import io
import os
import socket
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from spawner import bundles
from spawner.bundles import (
    DEFAULT_LIMITS,
    BundleError,
    BundleLimitError,
    BundleLimits,
    BundleNotFoundError,
    BundleStore,
    DigestMismatchError,
    LocalBlobStore,
    MiB,
    parse_digest,
    verify,
)

APP = b"import streamlit as st\nst.write('hi')\n"


def zip_of(*members: tuple[str, bytes], mode: int | None = 0o100644, system: int = 3) -> bytes:
    """A zip of (name, data) members; ``mode``: the Unix mode of each, written on ``system``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            z.writestr(info, data)
    data = bytearray(buf.getvalue())
    if system != 3:  # "version made by": its high byte is the system; zipfile writes 3 (Unix)
        at = data.index(b"PK\x01\x02")
        while at >= 0:
            data[at + 5] = system
            at = data.find(b"PK\x01\x02", at + 4)
    return bytes(data)


def tar_of(*members: tarfile.TarInfo | tuple[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as t:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                t.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                t.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def store(tmp_path) -> BundleStore:
    return BundleStore.on_disk(tmp_path / "data")


def refused(store: BundleStore, upload, error=BundleError, **kwargs) -> str:
    """The sentence of a refusal; the store is left as it was."""
    root = store.staging.parent
    before = tree(root)
    with pytest.raises(error) as caught:
        store.add(upload, **kwargs)
    assert tree(root) == before
    return str(caught.value)


TOO_BIG_1K = (
    "The bundle is too large: its files add up to more than 1K uncompressed. Leave large data "
    "files out (read them from shared storage), or ask an admin for a larger limit."
)
TOO_MANY_3 = (
    "The bundle has more than 3 files and folders: leave some out, or ask an admin for a "
    "larger limit."
)


# ---- limits: what they may be, and at their boundaries --------------------------------------
def test_limits_of_one_are_allowed():
    limits = BundleLimits(
        max_archive_bytes=1,
        max_bundle_bytes=1,
        max_files=1,
        max_ratio=1.0,
        ratio_floor_bytes=1,
        max_path_bytes=1,
        max_depth=1,
    )
    assert limits.max_ratio == 1.0
    with pytest.raises(ValueError) as caught:
        BundleLimits(max_ratio=0.99)
    assert str(caught.value) == "BundleLimits.max_ratio must be at least 1, not 0.99"
    with pytest.raises(ValueError) as caught:
        BundleLimits(max_path_bytes=0)
    assert str(caught.value) == "BundleLimits.max_path_bytes must be a positive integer, not 0"


def test_the_limits_of_a_stored_blob_allow_its_headers_and_any_ratio():
    limits = BundleLimits(max_bundle_bytes=10 * MiB, max_files=100, max_ratio=20.0)
    stored = limits.for_stored()
    # a canonical blob: the files, plus a header of at most 4 KiB for each (and a margin)
    assert stored.max_archive_bytes == 10 * MiB + (100 + 16) * 4096
    assert stored.max_ratio is None
    assert (stored.max_bundle_bytes, stored.max_files) == (10 * MiB, 100)


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "folder"])
def test_a_bundle_of_exactly_the_size_limit_is_accepted_one_byte_more_refused(store, tmp_path, fmt):
    def upload(data: bytes):
        if fmt == "zip":
            return zip_of(("app.py", data))
        if fmt == "tar.gz":
            return tar_of(("app.py", data))
        folder = tmp_path / f"f{len(data)}"
        folder.mkdir()
        (folder / "app.py").write_bytes(data)
        return folder

    limits = BundleLimits(max_bundle_bytes=1024)
    assert store.add(upload(b"#" * 1024), limits=limits).size == 1024
    assert refused(store, upload(b"#" * 1025), BundleLimitError, limits=limits) == TOO_BIG_1K


def test_the_size_limit_counts_every_file(store):
    limits = BundleLimits(max_bundle_bytes=1024)
    fits = tar_of(("app.py", b"#" * 1000), ("b.txt", b"b" * 20), ("c.txt", b"c" * 4))
    assert store.add(fits, limits=limits).size == 1024
    over = tar_of(("app.py", b"#" * 1000), ("b.txt", b"b" * 20), ("c.txt", b"c" * 5))
    assert refused(store, over, BundleLimitError, limits=limits) == TOO_BIG_1K


def test_a_tar_gz_at_the_limits_is_read_whole_headers_and_all(store):
    # the stream holds a 512-byte header per member and end blocks besides the files
    limits = BundleLimits(max_bundle_bytes=1024, max_files=1)
    assert store.add(tar_of(("app.py", b"#" * 1024)), limits=limits).size == 1024


def test_a_folder_file_that_grows_while_read_is_stopped_at_the_limit(store, tmp_path, monkeypatch):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "app.py").write_bytes(b"#" * 1000)
    (folder / "data.txt").write_bytes(b"x")

    def grow():
        with open(folder / "data.txt", "ab") as f:
            f.write(b"x" * 100)  # after its size was read: only the bytes read can tell

    swap_after_stat(monkeypatch, "data.txt", grow)
    limits = BundleLimits(max_bundle_bytes=1024)
    assert refused(store, folder, BundleLimitError, limits=limits) == TOO_BIG_1K


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "folder"])
def test_exactly_the_file_limit_is_accepted_one_more_refused(store, tmp_path, fmt):
    def upload(n: int):
        names = ["app.py", *(f"d{i}.txt" for i in range(n - 1))]
        if fmt == "zip":
            return zip_of(*((name, b"x") for name in names))
        if fmt == "tar.gz":
            return tar_of(*((name, b"x") for name in names))
        folder = tmp_path / f"f{n}"
        folder.mkdir()
        for name in names:
            (folder / name).write_bytes(b"x")
        return folder

    limits = BundleLimits(max_files=3)
    assert store.add(upload(3), limits=limits).file_count == 3
    assert refused(store, upload(4), BundleLimitError, limits=limits) == TOO_MANY_3


def test_folders_count_against_the_file_limit(store, tmp_path):
    folder = tmp_path / "f"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "app.py").write_bytes(APP)
    assert store.add(folder, limits=BundleLimits(max_files=3)).file_count == 1
    (folder / "a" / "b" / "c.txt").write_bytes(b"x")
    assert refused(store, folder, BundleLimitError, limits=BundleLimits(max_files=3)) == (
        TOO_MANY_3
    )


def test_an_archive_of_exactly_the_upload_limit_is_read(store):
    upload = zip_of(("app.py", APP))
    assert store.add(upload, limits=BundleLimits(max_archive_bytes=len(upload))).created
    said = refused(
        store, upload, BundleLimitError, limits=BundleLimits(max_archive_bytes=len(upload) - 1)
    )
    assert said == (
        f"The archive is {len(upload)} bytes; uploads are limited to {len(upload) - 1} bytes. "
        "Leave large data files out, or ask an admin."
    )


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1K"),
        (1536, "1.5K"),
        (10 * 1024 + 512, "10K"),  # from 10 on, whole units
        (int(9.75 * MiB), "9.8M"),
        (MiB, "1M"),
        (2**30, "1G"),
        (3 * 2**30 // 2, "1.5G"),
        (2**31, "2G"),
    ],
)
def test_sizes_are_said_in_binary_units(n, shown):
    assert bundles._size(n) == shown


# ---- the compression ratio ----------------------------------------------------------------
def ratio_limits(**kwargs) -> BundleLimits:
    return BundleLimits(**{"max_ratio": 100.0, "ratio_floor_bytes": 1000, **kwargs})


def test_the_ratio_is_checked_only_above_its_floor():
    bundles._check_ratio(1000, 1, ratio_limits(), "x")  # at the floor: not checked
    with pytest.raises(BundleLimitError):
        bundles._check_ratio(1001, 1, ratio_limits(), "x")
    bundles._check_ratio(10**9, 1, ratio_limits(max_ratio=None), "x")


def test_exactly_the_ratio_is_allowed_more_is_refused():
    bundles._check_ratio(200_000, 2000, ratio_limits(), "x")
    with pytest.raises(BundleLimitError) as caught:
        bundles._check_ratio(200_001, 2000, ratio_limits(), "'big.bin'")
    assert str(caught.value) == (
        "'big.bin' expands more than 100 times its compressed size (2.0K to 195K), like an "
        "archive bomb, so it was refused. Leave such a file out (generate it when the app "
        "starts) or ask an admin."
    )


def test_a_member_compressed_to_nothing_counts_as_one_byte():
    bundles._check_ratio(100, 0, ratio_limits(ratio_floor_bytes=1), "x")
    with pytest.raises(BundleLimitError):
        bundles._check_ratio(101, 0, ratio_limits(ratio_floor_bytes=1), "x")
    with pytest.raises(BundleLimitError):
        bundles._check_ratio(150, 1, ratio_limits(ratio_floor_bytes=1), "x")


def test_a_zip_bomb_is_named_whole_or_by_member(store):
    zeros = bytes(2 * MiB)
    upload = zip_of(("app.py", APP), ("zeros.bin", zeros))
    whole = refused(store, upload, BundleLimitError, limits=BundleLimits(ratio_floor_bytes=MiB))
    assert whole.startswith("The archive expands more than 100 times its compressed size (")
    # the archive as a whole is within the ratio (padded with random bytes), the member not
    padded = zip_of(("app.py", APP), ("zeros.bin", zeros), ("noise.bin", os.urandom(30_000)))
    member = refused(
        store, padded, BundleLimitError, limits=BundleLimits(max_ratio=80, ratio_floor_bytes=MiB)
    )
    assert member.startswith("'zeros.bin' expands more than 80 times its compressed size (")


def test_a_tar_gz_bomb_is_named_as_the_archive(store):
    upload = tar_of(("app.py", APP), ("zeros.bin", bytes(2 * MiB)))
    said = refused(store, upload, BundleLimitError, limits=BundleLimits(ratio_floor_bytes=MiB))
    assert said.startswith("The archive expands more than 100 times its compressed size (")


def test_large_members_that_do_not_compress_are_accepted(store):
    noise = os.urandom(300_000)
    limits = BundleLimits(ratio_floor_bytes=100_000)
    assert store.add(zip_of(("app.py", APP), ("noise.bin", noise)), limits=limits).created
    plain_tar = tar_of(("app.py", APP), ("noise.bin", noise), mode="w")
    assert store.add(plain_tar, limits=limits).size == len(APP) + len(noise)


def test_the_tar_stream_reader_stops_just_past_its_limit():
    def read(n: int, limit: int) -> int:
        reader = bundles._LimitedReader(io.BytesIO(b"x" * n), limit, DEFAULT_LIMITS, n)
        return len(io.BufferedReader(reader).read())

    assert read(1000, 1000) == 1000
    with pytest.raises(BundleLimitError) as caught:
        read(1001, 1000)
    assert str(caught.value).startswith("The bundle is too large")


# ---- zip archives -------------------------------------------------------------------------
def test_an_empty_zip_is_an_archive_without_the_entry_file(store):
    empty = zip_of()
    assert empty.startswith(b"PK\x05\x06")
    assert refused(store, empty) == (
        "The bundle has no app.py: put the app's Streamlit script there, or name the entry "
        "file when you upload. It holds no Python file."
    )


def test_what_is_no_archive_is_refused_with_a_sentence(store):
    assert refused(store, b"print('hello')\n") == (
        "The upload is not a .zip or .tar.gz archive: upload the app's folder as one."
    )


def test_a_damaged_archive_says_what_broke(store):
    upload = zip_of(("app.py", os.urandom(5000)))
    said = refused(store, upload[: len(upload) // 2])
    assert said.startswith("The archive is damaged or incomplete (BadZipFile: ")
    assert said.endswith("): create it again and upload it.")


def test_members_that_touch_are_fine_members_that_overlap_are_refused():
    def info(name: str, offset: int, size: int, flags: int = 0) -> zipfile.ZipInfo:
        i = zipfile.ZipInfo(name)
        i.header_offset, i.compress_size, i.flag_bits = offset, size, flags
        return i

    # each local header: 30 bytes, the name as written, then the data
    a_end = 30 + len("a.py") + 100
    bundles._check_zip_overlap([info("a.py", 0, 100), info("b.py", a_end, 10)])
    with pytest.raises(BundleLimitError) as caught:
        bundles._check_zip_overlap([info("b.py", a_end - 1, 10), info("a.py", 0, 100)])
    assert str(caught.value) == (
        "The archive's members overlap, as in a zip bomb, so it was refused: create the archive "
        "again with an ordinary zip tool."
    )
    # a name not flagged UTF-8 is written in cp437: 'é' is one byte there, two in UTF-8
    e_end = 30 + len("é.py".encode("cp437")) + 100
    bundles._check_zip_overlap([info("é.py", 0, 100), info("b.py", e_end, 10)])
    with pytest.raises(BundleLimitError):
        utf8_end = 30 + len("é.py".encode()) + 100
        bundles._check_zip_overlap(
            [info("é.py", 0, 100, flags=0x800), info("b.py", utf8_end - 1, 10)]
        )


def test_exactly_as_many_zip_members_as_allowed_are_read(store):
    upload = zip_of(("app.py", APP), ("b.txt", b"b"), ("c.txt", b"c"))
    assert store.add(upload, limits=BundleLimits(max_files=3)).file_count == 3


def test_a_zip_declaring_exactly_the_size_limit_is_read(store):
    upload = zip_of(("app.py", b"#" * 1000), ("b.txt", b"b" * 24))
    assert store.add(upload, limits=BundleLimits(max_bundle_bytes=1024)).size == 1024


@pytest.mark.parametrize(
    ("mode", "executable"),
    [(0o100755, True), (0o100744, True), (0o100645, True), (0o100646, False), (0o100600, False)],
)
def test_any_x_bit_of_a_zip_member_makes_it_executable(store, mode, executable):
    info = store.add(zip_of(("app.py", APP), ("run.sh", b"#!/bin/sh\n"), mode=mode))
    assert {f.path: f.executable for f in info.files}["run.sh"] is executable


def test_unix_modes_in_a_zip_made_elsewhere_are_ignored(store):
    # "made by" MS-DOS (0): the high bits of external_attr are not a Unix mode
    for mode in (0o120777, 0o100755):
        info = store.add(zip_of(("app.py", APP), ("x.txt", b"x"), mode=mode, system=0))
        assert [(f.path, f.executable) for f in info.files] == [("app.py", False), ("x.txt", False)]


def test_folder_entries_of_a_zip_without_unix_modes_are_folders(store):
    upload = zip_of(("app.py", APP), ("data/", b""), ("data/x.csv", b"1"), mode=None, system=0)
    assert [f.path for f in store.add(upload).files] == ["app.py", "data/x.csv"]


@pytest.mark.parametrize(
    ("mode", "said"),
    [(0o140644, "is a socket"), (0o160644, "is not a regular file or folder")],
)
def test_zip_members_of_other_kinds_are_refused_naming_the_kind(store, mode, said):
    other = zip_of(("data/", b""), mode=mode)  # a mode of another kind, even named as a folder
    assert refused(store, other) == (
        f"'data' {said}: a bundle holds only regular files and folders (put a copy of the "
        "file itself in the archive)."
    )


def test_kinds_of_file_modes():
    assert bundles._kind_of_mode(stat.S_IFSOCK | 0o644) == "socket"
    assert bundles._kind_of_mode(0o160644) == "other"  # no kind this module knows


def test_a_nul_in_a_zip_name_is_refused_as_such(store):
    upload = bytearray(zip_of(("app.py", APP), ("aXb.txt", b"x")))
    upload[:] = upload.replace(b"aXb.txt", b"a\x00b.txt")
    said = refused(store, bytes(upload))
    assert said == "The name 'a\\x00b.txt' contains a NUL character: rename the file."


def test_a_zip_name_that_is_not_utf8_is_shown_as_its_bytes(store):
    upload = zip_of(("app.py", APP), ("XX.txt", b"x")).replace(b"XX.txt", b"\xff\xfe.txt")
    assert refused(store, upload) == (
        "The name b'\\xff\\xfe.txt' is not valid UTF-8: rename the file with UTF-8 characters."
    )


def test_an_encrypted_member_is_named(store):
    data = bytearray(zip_of(("app.py", APP), ("secret.csv", b"1,2")))
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature)
        at = data.index(signature, at + 4)  # the second member's headers
        data[at + flag_at] |= 1
    assert refused(store, bytes(data)) == (
        "'secret.csv' is encrypted: upload an archive without a password."
    )


# ---- tar archives -------------------------------------------------------------------------
def test_a_tar_member_of_an_unknown_type_is_refused(store):
    odd = tarfile.TarInfo("odd")
    odd.type = b"Z"
    upload = tar_of(("app.py", APP), odd)
    assert refused(store, upload) == (
        "'odd' is not a regular file or folder: a bundle holds only regular files and folders "
        "(put a copy of the file itself in the archive)."
    )


@pytest.mark.parametrize(
    ("mode", "executable"), [(0o755, True), (0o645, True), (0o646, False), (0o600, False)]
)
def test_any_x_bit_of_a_tar_member_makes_it_executable(store, mode, executable):
    run = tarfile.TarInfo("run.sh")
    run.mode = mode
    info = store.add(tar_of(("app.py", APP), run))
    assert {f.path: f.executable for f in info.files}["run.sh"] is executable


def test_tar_names_are_read_as_utf8_whatever_the_locale(store, monkeypatch):
    # an old-style (ustar) name is bytes; a hub started under a Latin-1 locale must not read
    # b"\xff" as "ÿ"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in (("app.py", APP), ("\udcff.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    upload = buf.getvalue()
    assert b"\xff.txt\x00" in upload
    monkeypatch.setattr(tarfile.TarFile, "encoding", "latin-1")  # tarfile's locale default
    assert "not valid UTF-8" in refused(store, upload)


# ---- names --------------------------------------------------------------------------------
def test_a_digest_that_is_not_one_is_named(store):
    with pytest.raises(BundleError) as caught:
        parse_digest("md5:abc")
    assert str(caught.value) == "'md5:abc' is not a bundle digest (sha256: and 64 hex digits)."
    with pytest.raises(BundleNotFoundError) as caught:
        store.open("sha256:" + "0" * 64)
    assert str(caught.value) == f"No bundle sha256:{'0' * 64} is stored."


def test_the_missing_entry_lists_five_python_files_at_most(store):
    five = [(f"s{i}.py", b"x") for i in range(5)]
    assert refused(store, zip_of(*five)) == (
        "The bundle has no app.py: put the app's Streamlit script there, or name the entry "
        "file when you upload. Python files in it: s0.py, s1.py, s2.py, s3.py, s4.py."
    )
    six = [*five, ("s5.py", b"x")]
    assert refused(store, zip_of(*six)).endswith(
        "Python files in it: s0.py, s1.py, s2.py, s3.py, s4.py, …."
    )


def test_an_entry_found_where_it_is_named_is_never_moved(store):
    info = store.add(zip_of(("a/app.py", APP), ("a/a/app.py", APP)), entry="a/app.py")
    assert [f.path for f in info.files] == ["a/a/app.py", "a/app.py"]


def test_two_top_folders_are_never_stripped(store):
    upload = zip_of(("one/app.py", APP), ("two/app.py", APP))
    assert "has no app.py" in refused(store, upload)


# ---- the canonical blob -------------------------------------------------------------------
def test_the_stored_blob_has_no_name_time_or_owner(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_bytes(APP)
    (src / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(src / "run.sh", 0o700)
    os.utime(src / "app.py", (1_600_000_000, 1_600_000_000))
    info = store.add(src)
    blob = store.blobs.path(store.key(info.digest)).read_bytes()
    assert blob[:4] == b"\x1f\x8b\x08\x00"  # gzip, deflate, no flags: no file name stored
    assert blob[4:8] == b"\x00\x00\x00\x00"  # no time
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as t:
        members = t.getmembers()
    assert [(m.name, m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members] == [
        ("app.py", 0o644, 0, 0, 0, "", ""),
        ("run.sh", 0o755, 0, 0, 0, "", ""),
    ]


def test_the_blob_is_stored_by_the_first_two_hex_digits(store):
    digest = "sha256:" + "ab" + "c" * 62
    assert BundleStore.key(digest) == f"sha256/ab/ab{'c' * 62}.tar.gz"


# ---- folder snapshots: races --------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "executable"), [(0o755, True), (0o601, True), (0o646, False), (0o644, False)]
)
def test_any_x_bit_of_a_folder_file_makes_it_executable(store, tmp_path, mode, executable):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "app.py").write_bytes(APP)
    (tmp_path / "f" / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(tmp_path / "f" / "run.sh", mode)
    info = store.add(tmp_path / "f")
    assert {f.path: f.executable for f in info.files}["run.sh"] is executable


def test_a_socket_in_a_folder_is_refused(store, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "app.py").write_bytes(APP)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(folder / "sock"))
        assert "'sock' is a socket" in refused(store, folder)


def swap_after_stat(monkeypatch, name: str, swap) -> None:
    """Run ``swap`` just after the snapshot looked at ``name``: a change made meanwhile."""
    real_stat = os.stat

    def stat_then_swap(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if path == name:
            swap()
        return result

    monkeypatch.setattr(bundles.os, "stat", stat_then_swap)


def test_a_file_replaced_by_a_link_while_read_is_not_followed(store, tmp_path, monkeypatch):
    folder, secret = tmp_path / "f", tmp_path / "secret.txt"
    folder.mkdir()
    (folder / "app.py").write_bytes(APP)
    (folder / "data.txt").write_bytes(b"mine")
    secret.write_bytes(b"someone else's")

    def swap():
        (folder / "data.txt").unlink()
        (folder / "data.txt").symlink_to(secret)

    swap_after_stat(monkeypatch, "data.txt", swap)
    with pytest.raises(OSError):
        store.add(folder)
    assert list(store.digests()) == []


def test_a_folder_replaced_by_a_link_while_read_is_not_followed(store, tmp_path, monkeypatch):
    folder, elsewhere = tmp_path / "f", tmp_path / "elsewhere"
    (folder / "pages").mkdir(parents=True)
    (folder / "app.py").write_bytes(APP)
    elsewhere.mkdir()
    (elsewhere / "secret.py").write_bytes(b"someone else's")

    def swap():
        (folder / "pages").rmdir()
        (folder / "pages").symlink_to(elsewhere)

    swap_after_stat(monkeypatch, "pages", swap)
    with pytest.raises(OSError):
        store.add(folder)
    assert list(store.digests()) == []


def test_a_file_hard_linked_while_read_is_refused(store, tmp_path, monkeypatch):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "app.py").write_bytes(APP)
    (folder / "data.txt").write_bytes(b"x")
    swap_after_stat(monkeypatch, "data.txt", lambda: os.link(folder / "data.txt", tmp_path / "l"))
    assert refused(store, folder) == "'data.txt' changed while it was read: try again."


def test_a_file_replaced_by_a_fifo_while_read_is_refused_not_waited_on(
    store, tmp_path, monkeypatch
):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "app.py").write_bytes(APP)
    (folder / "data.txt").write_bytes(b"x")

    def swap():
        (folder / "data.txt").unlink()
        os.mkfifo(folder / "data.txt")

    swap_after_stat(monkeypatch, "data.txt", swap)
    assert refused(store, folder) == "'data.txt' changed while it was read: try again."


def test_a_private_file_is_never_written_through_a_link_or_over_a_file(tmp_path):
    (tmp_path / "target").write_bytes(b"keep")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(OSError):
        bundles._create_private(tmp_path / "link")
    with pytest.raises(FileExistsError):
        bundles._create_private(tmp_path / "target")
    assert (tmp_path / "target").read_bytes() == b"keep"


# ---- materialise --------------------------------------------------------------------------
def test_materialise_writes_beside_the_target_hidden_then_renames(store, tmp_path, monkeypatch):
    info = store.add(zip_of(("app.py", APP)))
    renamed = []
    real_rename = os.rename
    monkeypatch.setattr(
        bundles.os, "rename", lambda a, b: (renamed.append((Path(a), Path(b))), real_rename(a, b))
    )
    target = tmp_path / "runs" / "v1"
    target.parent.mkdir()
    assert store.materialise(info.digest, target) == target
    [(work, to)] = renamed
    assert to == target and work.parent == target.parent and work.name.startswith(".v1-")
    with pytest.raises(FileExistsError) as caught:
        store.materialise(info.digest, target)
    assert str(caught.value) == f"{target} exists"
    bundles.remove_tree(target)


def test_materialise_applies_the_limits_it_is_given(store, tmp_path):
    info = store.add(zip_of(("app.py", APP), ("b.txt", b"b")))
    with pytest.raises(BundleLimitError):
        store.materialise(info.digest, tmp_path / "run", limits=BundleLimits(max_files=1))
    assert not (tmp_path / "run").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_verify_says_both_digests(store):
    info = store.add(zip_of(("app.py", APP)))
    other = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatchError) as caught:
        verify(zip_of(("app.py", APP)), other)
    assert str(caught.value) == (
        f"The bundle does not match its digest (expected {other}, found {info.digest}): "
        "fetch it again."
    )


# ---- the blob store and garbage collection ------------------------------------------------
def test_hidden_files_in_the_blob_store_are_no_bundles(store):
    info = store.add(zip_of(("app.py", APP)))
    blob = store.blobs.path(store.key(info.digest))
    (blob.parent / ".upload-in-progress.tar.gz").write_bytes(b"")
    assert list(store.digests()) == [info.digest]
    assert store.collect_garbage(set(), now=time.time() + 10**6) == [info.digest]


def test_a_blob_collected_between_link_and_touch_is_linked_again(tmp_path, monkeypatch):
    blobs = LocalBlobStore(tmp_path / "blobs")
    (tmp_path / "a").write_bytes(b"a")
    key = "sha256/ab/abc.tar.gz"
    assert blobs.put(key, tmp_path / "a") is True
    real_utime, calls = os.utime, []

    def collected_meanwhile(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            Path(path).unlink()  # the garbage collector got there first
            raise FileNotFoundError(path)
        return real_utime(path, *args, **kwargs)

    monkeypatch.setattr(bundles.os, "utime", collected_meanwhile)
    assert blobs.put(key, tmp_path / "a") is True
    assert blobs.exists(key)


def test_a_blob_store_that_keeps_losing_the_race_gives_up(tmp_path, monkeypatch):
    blobs = LocalBlobStore(tmp_path / "blobs")
    (tmp_path / "a").write_bytes(b"a")
    key = "sha256/ab/abc.tar.gz"
    blobs.put(key, tmp_path / "a")

    def always_gone(path, *args, **kwargs):
        raise FileNotFoundError(path)

    monkeypatch.setattr(bundles.os, "utime", always_gone)
    with pytest.raises(OSError) as caught:
        blobs.put(key, tmp_path / "a")
    assert str(caught.value) == f"could not store blob {key}"


def test_garbage_is_collected_from_exactly_the_grace_period_on(store):
    digests = sorted(store.add(zip_of(("app.py", text))).digest for text in (b"1", b"2", b"3"))
    kept, *old = digests  # the first one listed is kept: collection goes on past it
    stored = 1_700_000_000
    for digest in digests:
        os.utime(store.blobs.path(store.key(digest)), (stored, stored))
    # the default grace period: an hour
    assert store.collect_garbage({kept}, now=stored + 3599) == []
    assert store.collect_garbage({kept}, now=stored + 3600) == old
    assert list(store.digests()) == [kept]


def test_staging_leftovers_are_removed_from_exactly_the_grace_period_on(store):
    now = float(int(time.time()))
    for name, age in (("add-old", 100), ("add-new", 99)):
        (store.staging / name).mkdir()
        os.utime(store.staging / name, (now - age, now - age))
    store.collect_garbage(set(), grace_seconds=100, now=now)
    assert [p.name for p in store.staging.iterdir()] == ["add-new"]


def test_a_staging_leftover_that_cannot_be_removed_stops_nothing(store, monkeypatch):
    old = store.add(zip_of(("app.py", b"old"))).digest
    (store.staging / "add-stuck").mkdir()
    os.utime(store.staging / "add-stuck", (0, 0))
    real_rmtree = bundles.shutil.rmtree

    def rmtree(path, ignore_errors=False, **kwargs):
        if Path(path).name == "add-stuck":
            if not ignore_errors:
                raise PermissionError(path)
            return None
        return real_rmtree(path, ignore_errors=ignore_errors, **kwargs)

    monkeypatch.setattr(bundles.shutil, "rmtree", rmtree)
    assert store.collect_garbage(set(), now=time.time() + 7200) == [old]


# ---- names, said -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("../evil.py", "The name '../evil.py' contains '..', which leads outside the bundle."),
        (
            "/etc/x.py",
            "The name '/etc/x.py' is an absolute path: paths in a bundle are relative to the "
            "app's folder.",
        ),
        ("a\\b.py", "The name 'a\\\\b.py' contains '\\': use '/' between folders."),
        ("del\x7f.py", "The name 'del\\x7f.py' contains control characters: rename the file."),
        ("", "A member of the archive has no name: create the archive again."),
    ],
)
def test_a_refused_name_is_said_with_the_name(name, said):
    with pytest.raises(BundleError) as caught:
        bundles._bundle_path(name, DEFAULT_LIMITS)
    assert str(caught.value) == said


def test_spaces_and_characters_past_ascii_are_fine_in_names():
    name = "my data/résumé \x80.csv"
    assert bundles._bundle_path(name, DEFAULT_LIMITS) == name


def test_names_at_the_length_and_depth_limits_are_accepted():
    limits = BundleLimits(max_path_bytes=20, max_depth=3)
    assert bundles._bundle_path("a/b/" + "c" * 16, limits) == "a/b/" + "c" * 16  # 20 bytes
    assert bundles._bundle_path("a/b/é" + "c" * 14, limits)  # 20 bytes, 19 characters
    with pytest.raises(BundleError) as caught:
        bundles._bundle_path("a/b/é" + "c" * 15, limits)
    assert str(caught.value) == f"The name 'a/b/é{'c' * 15}' is too long: shorten the path."
    with pytest.raises(BundleError) as caught:
        bundles._bundle_path("a/b/c/d", limits)
    assert str(caught.value) == "The name 'a/b/c/d' is nested more than 3 folders deep."
    assert bundles._bundle_path("x" * 255, DEFAULT_LIMITS) == "x" * 255  # a file system's most
    with pytest.raises(BundleError):
        bundles._bundle_path("x" * 256, DEFAULT_LIMITS)


def test_names_are_shown_cut_at_80_characters():
    assert bundles._shown("x" * 78) == repr("x" * 78)  # 80 with its quotes
    assert bundles._shown("x" * 79) == "'" + "x" * 76 + "…"


@pytest.mark.parametrize(
    ("members", "said"),
    [
        (
            [("app.py", APP), ("app.py", b"again")],
            "The archive holds 'app.py' twice: keep one of them.",
        ),
        (
            [("app.py", APP), ("e\u0301.py", b"1"), ("\u00e9.py", b"2")],
            "The archive holds '\u00e9.py' twice (also as 'e\u0301.py'): keep one of them.",
        ),
    ],
)
def test_a_name_held_twice_is_said(store, members, said):
    assert refused(store, tar_of(*members)) == said


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (None, "The entry file must be a path in the bundle, such as app.py."),
        ("  ", "The entry file must be a path in the bundle, such as app.py."),
        (
            "run.sh",
            "The entry file 'run.sh' must be a Python file ending in '.py' inside the bundle.",
        ),
        (
            "../app.py",
            "The entry file is not a path inside the bundle. The name '../app.py' contains "
            "'..', which leads outside the bundle.",
        ),
    ],
)
def test_a_bad_entry_file_is_said(entry, said):
    with pytest.raises(BundleError) as caught:
        bundles.check_entry(entry)
    assert str(caught.value) == said


def test_an_upload_path_that_is_a_link_or_no_archive_is_said(store, tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "app")
    assert refused(store, tmp_path / "link") == (
        f"{str(tmp_path / 'link')!r} is a symbolic link: name the folder itself."
    )
    os.mkfifo(tmp_path / "pipe")
    assert refused(store, tmp_path / "pipe") == (
        f"{str(tmp_path / 'pipe')!r} is neither an archive nor a folder."
    )


# ---- the store's layout -------------------------------------------------------------------
def test_the_store_on_disk_keeps_blobs_and_staging_under_bundles(tmp_path):
    store = BundleStore.on_disk(tmp_path / "data")
    info = store.add(zip_of(("app.py", APP)))
    hex_digest = info.digest.removeprefix("sha256:")
    assert (tmp_path / "data/bundles/sha256" / hex_digest[:2] / f"{hex_digest}.tar.gz").is_file()
    assert store.staging == tmp_path / "data/bundles/tmp"


def test_an_upload_is_staged_only_in_the_stores_private_staging(store, monkeypatch):
    written = []
    real = bundles._create_private
    monkeypatch.setattr(bundles, "_create_private", lambda p: (written.append(p), real(p))[1])
    store.add(zip_of(("app.py", APP), ("data.csv", b"1,2")))
    assert len(written) == 3  # two files and the canonical archive
    assert all(p.parent.parent == store.staging for p in written)


def test_a_staging_folder_that_cannot_be_removed_fails_no_add(store, monkeypatch):
    real_rmtree = bundles.shutil.rmtree

    def rmtree(path, ignore_errors=False, **kwargs):
        if not ignore_errors:
            raise PermissionError(path)
        return real_rmtree(path, ignore_errors=ignore_errors, **kwargs)

    monkeypatch.setattr(bundles.shutil, "rmtree", rmtree)
    assert store.add(zip_of(("app.py", APP))).created


@pytest.mark.parametrize("key", ["Sha256/ab/x.tar.gz", "sha256/ab/x..tar.gz", "../x", "/x", ""])
def test_a_bad_blob_key_is_refused(tmp_path, key):
    with pytest.raises(ValueError) as caught:
        LocalBlobStore(tmp_path / "blobs").path(key)
    assert str(caught.value) == f"bad blob key {key!r}"


def test_folders_made_at_once_by_two_writers_are_both_fine(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def someone_else_first(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)  # another writer made it meanwhile
        return real_mkdir(self, *args, **kwargs)  # FileExistsError

    monkeypatch.setattr(Path, "mkdir", someone_else_first)
    assert bundles.private_makedirs(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir()


def test_a_nested_name_that_is_both_a_file_and_a_folder_is_said(store):
    upload = tar_of(("app.py", APP), ("pages/data", b"x"), ("pages/data/x.py", b"y"))
    assert refused(store, upload) == (
        "'pages/data' is both a file and a folder in the archive: rename one."
    )


def test_a_zip_flagged_utf8_with_other_bytes_is_said(store):
    upload = zip_of(("app.py", APP), ("é.txt", b"x"))  # flagged: the name is not ASCII
    upload = upload.replace("é.txt".encode(), b"\xff\xfe.txt")
    assert refused(store, upload) == (
        "A name in the archive is not valid UTF-8: rename the file with UTF-8 characters."
    )
