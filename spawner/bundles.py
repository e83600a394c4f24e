"""Bundles: an app's files, checked, stored once by content and fetched back (issue #14).

A **bundle** is an app's folder: the entry file (``app.py`` by default), ``pages/``,
``requirements.txt``, data files. It arrives as a ``.zip`` or ``.tar.gz`` (``.tar``) upload, or
as a folder (a snapshot of a home folder, or a ``git archive`` of a resolved commit), and is
kept as one immutable blob named by its **digest**. Per-app versions that point at bundles
are ``spawner.versions``; nothing here knows about users or apps.

Invariants:

- **Refusal changes nothing.** ``BundleStore.add`` either returns a ``BundleInfo`` or raises a
  ``BundleError`` whose ``str`` is a sentence the sender can act on (``http_status``: what the
  REST layer answers, 400 or 413); a refusal leaves no file behind. Refused: archive bombs
  (``BundleLimits``: upload size, total uncompressed size, member count, compression ratio,
  overlapping zip members), names that are absolute, hold ``..``, ``\\``, control characters
  or are not UTF-8, symbolic and hard links, devices, FIFOs, sockets, sparse and encrypted
  members, two members with one name (also after Unicode NFC), a name that is both a file
  and a folder, and a bundle without its entry file.
- **The digest** is ``sha256:`` + the SHA-256 of a canonical listing (``listing``): one line
  per file, sorted by path, with the path, the executable bit and the file's own SHA-256.
  Archive format, member order, timestamps, owners, compression and empty folders do not
  change it; a byte of content, a name or an executable bit does.
- **Stored once.** A blob's key is its digest, so the same bundle added twice (as a zip, then
  as a tar.gz) is one blob; ``add`` says whether it was new (``BundleInfo.created``).
- **What is stored is canonical**: a gzip'd PAX tar of regular files only, sorted, mode
  ``644``/``755``, no times or owners. ``materialise`` and ``verify`` read it with an
  upload's name and type checks (``materialise`` without size limits: the blob is ours), and
  both check the digest.

Two conveniences on ``add`` (not on ``verify``, which takes content as it is): names in
``IGNORED_NAMES`` (``__MACOSX``, ``.DS_Store``, ``__pycache__``, ``.git``, …) are left out
wherever they appear, and an archive that holds one folder with the entry file inside
(``myapp/app.py``: a zipped folder, a GitHub download) is stored without that folder.

**Storage.** ``BundleStore`` writes through a ``BlobStore``: ``exists``, ``put`` (create if
absent), ``open``, ``delete``, ``keys``, ``modified``. ``LocalBlobStore`` is a private folder
(``<data>/bundles/sha256/ab/<hex>.tar.gz``; default, ``BundleStore.on_disk``). An object store
(S3, GCS) backs the same interface later: ``put`` is an upload with ``If-None-Match: *``
(content-addressed, so a lost race is harmless), ``open`` a streamed GET, ``modified`` the
object's time (``put`` of an existing key re-writes its metadata so the garbage collector's
grace period restarts), ``keys`` a prefix listing; a pod may then fetch a signed URL instead of
the hub's HTTP endpoint. Checking and staging an upload always happens in a local private
folder (``staging``) before anything reaches the blob store.

Everything this module creates is private (folders ``700``, files ``600``), except a
materialised folder, which is read-only (``500``/``400``, or ``555``/``444`` when it must be
readable by an app account).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import itertools
import lzma
import os
import re
import shutil
import stat
import struct
import sys
import tarfile
import tempfile
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Protocol

MiB = 2**20
_CHUNK = 1 << 16
_UNLIMITED = sys.maxsize

#: Left out of a bundle wherever they appear (a folder's whole subtree): OS and tool litter.
IGNORED_NAMES: frozenset[str] = frozenset(
    {"__MACOSX", ".DS_Store", "__pycache__", ".git", ".ipynb_checkpoints", ".venv"}
)
DEFAULT_ENTRY = "app.py"
_LISTING_HEADER = b"jupyterhub-streamlit bundle v1\n"
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


# ---- errors -------------------------------------------------------------------------------
class BundleError(ValueError):
    """A bundle is refused; ``str(e)`` says why and what to do. Nothing was stored."""

    http_status = 400


class BundleLimitError(BundleError):
    """A bundle is over a limit (size, file count, compression ratio)."""

    http_status = 413


class DigestMismatchError(BundleError):
    """Content does not match the digest it was fetched or stored under."""


class BundleNotFoundError(LookupError):
    """No bundle is stored under this digest."""

    http_status = 404


# ---- limits -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BundleLimits:
    """What a bundle may be; the group policy sets these per group (defaults: any group).

    ``max_ratio`` is uncompressed ÷ compressed size, checked for the whole archive and each zip
    member once more than ``ratio_floor_bytes`` are involved (a small, very compressible file
    is no bomb); ``None`` turns it off.
    """

    max_archive_bytes: int = 128 * MiB
    max_bundle_bytes: int = 256 * MiB
    max_files: int = 5000
    max_ratio: float | None = 100.0
    ratio_floor_bytes: int = 4 * MiB
    max_path_bytes: int = 1024
    max_depth: int = 32

    def __post_init__(self) -> None:
        for name in (
            "max_archive_bytes",
            "max_bundle_bytes",
            "max_files",
            "ratio_floor_bytes",
            "max_path_bytes",
            "max_depth",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BundleLimits.{name} must be a positive integer, not {value!r}")
        if self.max_ratio is not None and not self.max_ratio >= 1:
            raise ValueError(f"BundleLimits.max_ratio must be at least 1, not {self.max_ratio!r}")

    def for_stored(self) -> BundleLimits:
        """The limits for reading back a canonical blob made under these limits.

        Its archive may be larger than the upload was and compress better or worse, so the
        archive size follows the bundle size and the ratio is not checked.
        """
        overhead = (self.max_files + 16) * 4096
        return replace(self, max_archive_bytes=self.max_bundle_bytes + overhead, max_ratio=None)


DEFAULT_LIMITS = BundleLimits()
UNLIMITED = BundleLimits(
    max_archive_bytes=_UNLIMITED,
    max_bundle_bytes=_UNLIMITED,
    max_files=_UNLIMITED,
    max_ratio=None,
)


def _size(n: int) -> str:
    for unit, size in (("G", 2**30), ("M", MiB), ("K", 2**10)):
        if n >= size:
            value = n / size
            return (
                f"{value:.0f}{unit}" if value >= 10 or value == int(value) else f"{value:.1f}{unit}"
            )
    return f"{n} bytes"


def _too_big(limits: BundleLimits) -> BundleLimitError:
    return BundleLimitError(
        f"The bundle is too large: its files add up to more than {_size(limits.max_bundle_bytes)} "
        "uncompressed. Leave large data files out (read them from shared storage), or ask an "
        "admin for a larger limit."
    )


def _check_ratio(uncompressed: int, compressed: int, limits: BundleLimits, what: str) -> None:
    if limits.max_ratio is None or uncompressed <= limits.ratio_floor_bytes:
        return
    if uncompressed > limits.max_ratio * max(compressed, 1):
        raise BundleLimitError(
            f"{what} expands more than {limits.max_ratio:g} times its compressed size "
            f"({_size(compressed)} to {_size(uncompressed)}), like an archive bomb, so it "
            "was refused. Leave such a file out (generate it when the app starts) or ask "
            "an admin."
        )


# ---- the listing and the digest -----------------------------------------------------------
@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle: its path (``/``-separated, relative), executable bit, SHA-256."""

    path: str
    executable: bool
    sha256: str
    size: int


def listing(files: Iterable[BundleFile]) -> bytes:
    """The canonical listing the digest is taken over: a header, then one line per file.

    ``x <sha256> <path>`` or ``- <sha256> <path>``, sorted by path. Paths hold no control
    characters (refused on the way in), so a line ends only at its newline.
    """
    lines = [
        f"{'x' if f.executable else '-'} {f.sha256} {f.path}\n".encode()
        for f in sorted(files, key=lambda f: f.path)
    ]
    return _LISTING_HEADER + b"".join(lines)


def digest_of(files: Iterable[BundleFile]) -> str:
    """``sha256:<hex>`` of the canonical listing of ``files``."""
    return "sha256:" + hashlib.sha256(listing(files)).hexdigest()


def parse_digest(digest: object) -> str:
    """The hex part of a ``sha256:<64 hex>`` digest, or ``BundleError``."""
    m = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if not m:
        raise BundleError(f"{_shown(digest)} is not a bundle digest (sha256: and 64 hex digits).")
    return m.group(1)


# ---- names --------------------------------------------------------------------------------
def _shown(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "…"


def _bundle_path(raw: str, limits: BundleLimits) -> str | None:
    """A member's path in the bundle (``a/b.py``); None for the bundle's own folder (``./``)."""
    shown = _shown(raw)
    if not raw:
        raise BundleError("A member of the archive has no name: create the archive again.")
    try:
        encoded = raw.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes: bytes that are not UTF-8
        raise BundleError(
            f"The name {shown} is not valid UTF-8: rename the file with UTF-8 characters."
        ) from None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise BundleError(f"The name {shown} contains control characters: rename the file.")
    if "\\" in raw:
        raise BundleError(f"The name {shown} contains '\\': use '/' between folders.")
    if raw.startswith("/"):
        raise BundleError(
            f"The name {shown} is an absolute path: paths in a bundle are relative to the "
            "app's folder."
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BundleError(f"The name {shown} contains '..', which leads outside the bundle.")
    if not parts:
        return None
    if len(encoded) > limits.max_path_bytes or any(len(p.encode()) > 255 for p in parts):
        raise BundleError(f"The name {shown} is too long: shorten the path.")
    if len(parts) > limits.max_depth:
        raise BundleError(f"The name {shown} is nested more than {limits.max_depth} folders deep.")
    return "/".join(parts)


def check_entry(entry: object) -> str:
    """The entry file as a normalised path in the bundle, or ``BundleError`` saying why not."""
    if not isinstance(entry, str) or not entry.strip():
        raise BundleError("The entry file must be a path in the bundle, such as app.py.")
    try:
        path = _bundle_path(entry, DEFAULT_LIMITS)
    except BundleError as e:
        raise BundleError(f"The entry file is not a path inside the bundle. {e}") from None
    if path is None or not path.endswith(".py"):
        raise BundleError(
            f"The entry file {_shown(entry)} must be a Python file ending in '.py' inside "
            "the bundle."
        )
    return path


# ---- members: one shape for zip, tar and folder -------------------------------------------
@dataclass
class _Member:
    name: str  # as in the archive, decoded
    kind: str  # file, dir, symlink, hardlink, device, fifo, socket, sparse, other
    executable: bool
    size: int  # as declared
    open: Callable[[], BinaryIO] | None = None  # files only; valid until the next member


_KIND_PROBLEM = {
    "symlink": "is a symbolic link",
    "hardlink": "is a hard link",
    "device": "is a device file",
    "fifo": "is a FIFO (named pipe)",
    "socket": "is a socket",
    "sparse": "is a sparse file",
    "other": "is not a regular file or folder",
}


def _kind_of_mode(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "other"


# Where each file's bytes go while it is read: a writable file, or None to only hash them.
Sink = Callable[[int, str], contextlib.AbstractContextManager[BinaryIO | None]]


def _discard(_index: int, _path: str) -> contextlib.AbstractContextManager[BinaryIO | None]:
    return contextlib.nullcontext(None)


def _collect(
    members: Iterable[_Member], limits: BundleLimits, sink: Sink, ignore: Collection[str]
) -> list[BundleFile]:
    """Check every member, stream each file into ``sink``; the bundle's files, sorted."""
    ignore = frozenset(ignore)
    files: list[BundleFile] = []
    seen: dict[str, str] = {}  # NFC form -> path
    folders: set[str] = set()
    total = count = 0
    for member in members:
        count += 1
        if count > limits.max_files:
            raise BundleLimitError(
                f"The bundle has more than {limits.max_files} files and folders: leave some "
                "out, or ask an admin for a larger limit."
            )
        path = _bundle_path(member.name, limits)
        if path is None or not ignore.isdisjoint(path.split("/")):
            continue
        if member.kind == "dir":
            folders.add(path)
            continue
        if member.kind != "file" or member.open is None:
            problem = _KIND_PROBLEM.get(member.kind, _KIND_PROBLEM["other"])
            raise BundleError(
                f"{_shown(path)} {problem}: a bundle holds only regular files and folders "
                "(put a copy of the file itself in the archive)."
            )
        key = unicodedata.normalize("NFC", path)
        if key in seen:
            raise BundleError(
                f"The archive holds {_shown(path)} twice"
                + ("" if seen[key] == path else f" (also as {_shown(seen[key])})")
                + ": keep one of them."
            )
        seen[key] = path
        if total + member.size > limits.max_bundle_bytes:
            raise _too_big(limits)
        digest = hashlib.sha256()
        size = 0
        with member.open() as src, sink(len(files), path) as dst:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if total + size > limits.max_bundle_bytes:
                    raise _too_big(limits)
                digest.update(chunk)
                if dst is not None:
                    dst.write(chunk)
        total += size
        files.append(BundleFile(path, member.executable, digest.hexdigest(), size))
    for f in files:
        parts = f.path.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    for f in files:
        if f.path in folders:
            raise BundleError(
                f"{_shown(f.path)} is both a file and a folder in the archive: rename one."
            )
    return sorted(files, key=lambda f: f.path)


# ---- zip ----------------------------------------------------------------------------------
_ZIP_UTF8 = 0x800
_ZIP_ENCRYPTED = 0x1


def _zip_raw_name(info: zipfile.ZipInfo) -> bytes:
    encoding = "utf-8" if info.flag_bits & _ZIP_UTF8 else "cp437"
    return info.orig_filename.encode(encoding)


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The member's name as UTF-8, whether or not the archive flagged it so.

    zipfile decodes unflagged names as cp437, but most tools (macOS, Info-ZIP) write UTF-8
    without the flag: the cp437 text is turned back into its bytes and read as UTF-8.
    """
    name = info.orig_filename
    if "\x00" in name:  # zipfile cuts ``filename`` at a NUL; the original keeps it
        raise BundleError(f"The name {_shown(name)} contains a NUL character: rename the file.")
    if info.flag_bits & _ZIP_UTF8:
        return name
    raw = name.encode("cp437")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(
            f"The name {_shown(raw)} is not valid UTF-8: rename the file with UTF-8 characters."
        ) from None


def _zip_kind(info: zipfile.ZipInfo, name: str) -> tuple[str, bool]:
    mode = info.external_attr >> 16 if info.create_system == 3 else 0  # 3: Unix attributes
    kind = _kind_of_mode(mode) if stat.S_IFMT(mode) else "file"
    if name.endswith("/") and kind in ("file", "dir"):
        kind = "dir"
    return kind, bool(mode & 0o111)


def _check_zip_overlap(infos: list[zipfile.ZipInfo]) -> None:
    """Refuse members whose data overlap (one compressed stream named many times: a bomb).

    Hand-written: Python 3.11's zipfile does not check this. Each local header is at least
    30 bytes plus its name, so this lower bound never flags a well-formed archive.
    """
    spans = sorted(
        (i.header_offset, i.header_offset + 30 + len(_zip_raw_name(i)) + i.compress_size)
        for i in infos
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise BundleLimitError(
                "The archive's members overlap, as in a zip bomb, so it was refused: create "
                "the archive again with an ordinary zip tool."
            )


def _zip_members(raw: BinaryIO, size: int, limits: BundleLimits) -> Iterator[_Member]:
    try:
        archive = zipfile.ZipFile(raw)
    except UnicodeDecodeError:  # flagged UTF-8, but not
        raise BundleError(
            "A name in the archive is not valid UTF-8: rename the file with UTF-8 characters."
        ) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_files:
            raise BundleLimitError(
                f"The bundle has more than {limits.max_files} files and folders: leave some "
                "out, or ask an admin for a larger limit."
            )
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_bundle_bytes:
            raise _too_big(limits)
        _check_ratio(declared, size, limits, "The archive")
        _check_zip_overlap(infos)
        for info in infos:
            name = _zip_name(info)
            kind, executable = _zip_kind(info, name)
            if kind == "file":
                if info.flag_bits & _ZIP_ENCRYPTED:
                    raise BundleError(
                        f"{_shown(name)} is encrypted: upload an archive without a password."
                    )
                _check_ratio(info.file_size, info.compress_size, limits, _shown(name))
            opener = (lambda info=info: archive.open(info)) if kind == "file" else None
            yield _Member(name, kind, executable, info.file_size, opener)


# ---- tar ----------------------------------------------------------------------------------
class _LimitedReader(io.RawIOBase):
    """A read-only stream that raises once more than ``limit`` bytes came out of it.

    Hand-written: tarfile reads a PAX or GNU long-name header whole into memory, whatever
    size the header claims, and gzip has no output limit; this bounds both (and the ratio)
    before any member is seen.
    """

    def __init__(self, inner: BinaryIO, limit: int, limits: BundleLimits, archive_size: int):
        self.inner = inner
        self.limit = limit
        self.limits = limits
        self.archive_size = archive_size
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise _too_big(self.limits)
        _check_ratio(self.count, self.archive_size, self.limits, "The archive")
        buffer[: len(data)] = data
        return len(data)


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isreg():
        return "sparse" if info.issparse() else "file"
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "fifo"
    return "other"


def _tar_members(
    raw: BinaryIO, size: int, limits: BundleLimits, compressed: bool
) -> Iterator[_Member]:
    # Members are read, not extracted: tarfile's extraction filters (3.12's "data") still
    # allow links inside the destination and set no size limits; a bundle has neither.
    stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
    budget = limits.max_bundle_bytes + (limits.max_files + 16) * 4096  # + headers
    limited = io.BufferedReader(_LimitedReader(stream, budget, limits, size), _CHUNK)
    with tarfile.open(
        fileobj=limited, mode="r|", encoding="utf-8", errors="surrogateescape"
    ) as archive:
        for info in archive:
            kind = _tar_kind(info)
            opener = None
            if kind == "file":
                opener = lambda info=info: archive.extractfile(info)  # noqa: E731
            yield _Member(info.name, kind, bool(info.mode & 0o111), info.size, opener)


# ---- folders ------------------------------------------------------------------------------
def _open_in(dir_fd: int, name: str, shown: str) -> BinaryIO:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise BundleError(f"{shown} changed while it was read: try again.")
    return os.fdopen(fd, "rb")


def _folder_members(dir_fd: int, ignore: Collection[str], prefix: str = "") -> Iterator[_Member]:
    """A folder's entries, walked by file descriptor.

    Hand-written: os.walk and os.fwalk follow or silently skip symbolic links, and a path-
    based walk can be led elsewhere by a folder swapped for a link while it runs; here every
    step is opened relative to its parent with O_NOFOLLOW, and links are reported (refused).
    """
    with os.scandir(dir_fd) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        if name in ignore:
            continue
        rel = prefix + name
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        kind = _kind_of_mode(st.st_mode)
        if kind == "file" and st.st_nlink != 1:
            kind = "hardlink"
        if kind == "dir":
            yield _Member(rel, "dir", False, 0)  # checked (depth, count) before we descend
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                yield from _folder_members(child, ignore, rel + "/")
            finally:
                os.close(child)
        else:
            opener = (
                (lambda n=name, r=rel: _open_in(dir_fd, n, _shown(r))) if kind == "file" else None
            )
            yield _Member(rel, kind, bool(st.st_mode & 0o111), st.st_size, opener)


# ---- reading any input --------------------------------------------------------------------
BundleInput = bytes | bytearray | memoryview | str | os.PathLike
_DAMAGED = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # zip: an unsupported compression method or feature
    UnicodeDecodeError,
    struct.error,
    ValueError,  # zipfile and tarfile raise it for some corrupt fields
    OverflowError,
)


def _archive_members(raw: BinaryIO, size: int, limits: BundleLimits) -> Iterator[_Member]:
    if size > limits.max_archive_bytes:
        raise BundleLimitError(
            f"The archive is {_size(size)}; uploads are limited to "
            f"{_size(limits.max_archive_bytes)}. Leave large data files out, or ask an admin."
        )
    head = raw.read(512)
    raw.seek(0)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_members(raw, size, limits)
    if head[:2] == b"\x1f\x8b":
        return _tar_members(raw, size, limits, compressed=True)
    if head[257:262] == b"ustar":
        return _tar_members(raw, size, limits, compressed=False)
    raise BundleError(
        "The upload is not a .zip or .tar.gz archive: upload the app's folder as one."
    )


def _read(
    upload: BundleInput, limits: BundleLimits, sink: Sink, ignore: Collection[str]
) -> list[BundleFile]:
    """Check ``upload`` (archive bytes, an archive's path, or a folder) and read its files."""
    if isinstance(upload, (bytes, bytearray, memoryview)):
        data = bytes(upload)
        return _read_archive(io.BytesIO(data), len(data), limits, sink, ignore)
    path = os.fspath(upload)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if os.path.islink(path):
            raise BundleError(f"{_shown(path)} is a symbolic link: name the folder itself.") from e
        raise
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, fd)
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return _collect(_folder_members(fd, ignore), limits, sink, ignore)
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{_shown(path)} is neither an archive nor a folder.")
        raw = stack.enter_context(os.fdopen(os.dup(fd), "rb"))
        return _read_archive(raw, st.st_size, limits, sink, ignore)


def _read_archive(
    raw: BinaryIO, size: int, limits: BundleLimits, sink: Sink, ignore: Collection[str]
) -> list[BundleFile]:
    try:
        return _collect(_archive_members(raw, size, limits), limits, sink, ignore)
    except BundleError:
        raise
    except _DAMAGED as e:
        raise BundleError(
            f"The archive is damaged or incomplete ({type(e).__name__}: {e}): create it again "
            "and upload it."
        ) from None


def read_listing(
    upload: BundleInput,
    *,
    limits: BundleLimits = DEFAULT_LIMITS,
    ignore: Collection[str] = frozenset(),
) -> list[BundleFile]:
    """The files of an archive or folder, checked like an upload, without storing anything."""
    return _read(upload, limits, _discard, ignore)


def verify(path_or_bytes: BundleInput, digest: str, *, limits: BundleLimits | None = None) -> None:
    """Check that an archive (bytes or a path) or a folder holds exactly the bundle ``digest``.

    For the app's pod, which fetches the canonical archive over HTTP. Nothing is left out
    or renamed (no ``IGNORED_NAMES``, no top folder): content is taken as it is. ``limits``:
    by default those of a canonical blob made under ``DEFAULT_LIMITS``; pass the group's
    ``limits.for_stored()`` when they are larger. Raises ``DigestMismatchError`` or another
    ``BundleError``.
    """
    parse_digest(digest)
    files = _read(path_or_bytes, limits or DEFAULT_LIMITS.for_stored(), _discard, ())
    found = digest_of(files)
    if found != digest:
        raise DigestMismatchError(
            f"The bundle does not match its digest (expected {digest}, found {found}): "
            "fetch it again."
        )


# ---- private files ------------------------------------------------------------------------
def private_makedirs(path: str | os.PathLike) -> Path:
    """``mkdir -p`` where each folder created is ``700`` (os.makedirs leaves parents to umask)."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
    return path


def _create_private(path: Path) -> BinaryIO:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    return os.fdopen(os.open(path, flags, 0o600), "wb")


def remove_tree(path: str | os.PathLike) -> None:
    """Remove a materialised (read-only) folder: make its folders writable, then delete."""
    path = Path(path)
    if not path.exists():
        return
    for root, _dirs, _files in os.walk(path):
        os.chmod(root, 0o700)
    shutil.rmtree(path)


# ---- blob stores --------------------------------------------------------------------------
class BlobStore(Protocol):
    """Immutable blobs by key (``sha256/ab/<hex>.tar.gz``): a folder, or an object store."""

    def exists(self, key: str) -> bool: ...

    def put(self, key: str, file: Path) -> bool:
        """Store ``file`` under ``key`` unless present (then refresh ``modified``); True if new."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The blob for reading; ``FileNotFoundError`` if absent."""
        ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> bool: ...

    def keys(self, prefix: str) -> Iterator[str]: ...

    def modified(self, key: str) -> float:
        """When the blob was last stored (a Unix time)."""
        ...


_KEY = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*")


class LocalBlobStore:
    """Blobs as files under a private folder; ``put`` hard-links, so it is create-if-absent."""

    def __init__(self, root: str | os.PathLike):
        self.root = private_makedirs(root)

    def path(self, key: str) -> Path:
        """The blob's file (to send it with sendfile); checks the key's shape."""
        if not _KEY.fullmatch(key) or ".." in key:
            raise ValueError(f"bad blob key {key!r}")
        return self.root / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def put(self, key: str, file: Path) -> bool:
        final = self.path(key)
        private_makedirs(final.parent)
        for _ in range(3):
            try:
                os.link(file, final)  # atomic: exactly one of two racing puts creates it
                return True
            except FileExistsError:
                try:
                    os.utime(final)  # the garbage collector's grace period restarts
                    return False
                except FileNotFoundError:
                    continue  # collected between the two calls: link again
        raise OSError(f"could not store blob {key}")

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def size(self, key: str) -> int:
        return self.path(key).stat().st_size

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def keys(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix)
        if base.is_dir():
            for file in sorted(base.rglob("*")):
                if file.is_file() and not file.name.startswith("."):
                    yield file.relative_to(self.root).as_posix()

    def modified(self, key: str) -> float:
        return self.path(key).stat().st_mtime


# ---- the bundle store ---------------------------------------------------------------------
@dataclass(frozen=True)
class BundleInfo:
    """What ``BundleStore.add`` stored: the digest, the checked entry file, the files."""

    digest: str
    entry: str
    size: int  # bytes, uncompressed: the sum of the files' sizes
    files: tuple[BundleFile, ...]
    created: bool  # False when the same bundle was already stored

    @property
    def file_count(self) -> int:
        return len(self.files)


def _strip_top_folder(files: list[BundleFile], entry: str) -> list[BundleFile]:
    """Without the archive's one top folder when the entry file is inside it, not at the top."""
    paths = {f.path for f in files}
    if entry in paths or not files or not all("/" in p for p in paths):
        return files
    tops = {p.split("/", 1)[0] for p in paths}
    if len(tops) != 1 or f"{next(iter(tops))}/{entry}" not in paths:
        return files
    return [replace(f, path=f.path.split("/", 1)[1]) for f in files]


def _missing_entry(entry: str, files: list[BundleFile]) -> BundleError:
    scripts = [f.path for f in files if f.path.endswith(".py")]
    found = (
        " Python files in it: " + ", ".join(scripts[:5]) + (", …" if len(scripts) > 5 else "") + "."
        if scripts
        else " It holds no Python file."
    )
    return BundleError(
        f"The bundle has no {entry}: put the app's Streamlit script there, or name the entry "
        f"file when you upload.{found}"
    )


class BundleStore:
    """Bundles by digest: add (check and store), open, list, materialise, delete, collect."""

    def __init__(self, blobs: BlobStore, staging: str | os.PathLike):
        self.blobs = blobs
        self.staging = private_makedirs(staging)

    @classmethod
    def on_disk(cls, data_dir: str | os.PathLike) -> BundleStore:
        """The default: ``<data>/bundles/sha256/…`` and ``<data>/bundles/tmp`` for staging."""
        root = private_makedirs(Path(data_dir) / "bundles")
        return cls(LocalBlobStore(root), root / "tmp")

    @staticmethod
    def key(digest: str) -> str:
        hex_digest = parse_digest(digest)
        return f"sha256/{hex_digest[:2]}/{hex_digest}.tar.gz"

    def add(
        self,
        upload: BundleInput,
        *,
        entry: str | None = None,
        limits: BundleLimits = DEFAULT_LIMITS,
    ) -> BundleInfo:
        """Check ``upload`` (archive bytes, an archive's path, or a folder) and store it once.

        ``entry``: the app's entry file in the bundle (default ``app.py``). Raises
        ``BundleError`` (``BundleLimitError`` for limits) and then leaves nothing behind.
        """
        entry = check_entry(DEFAULT_ENTRY if entry is None else entry)
        stage = Path(tempfile.mkdtemp(prefix="add-", dir=self.staging))
        try:
            staged: dict[str, Path] = {}

            def sink(index: int, path: str) -> contextlib.AbstractContextManager[BinaryIO]:
                staged[path] = stage / str(index)  # by number: no name ever reaches the disk
                return _create_private(staged[path])

            files = _read(upload, limits, sink, IGNORED_NAMES)
            stripped = _strip_top_folder(files, entry)
            if entry not in {f.path for f in stripped}:
                raise _missing_entry(entry, files)
            sources = [staged[f.path] for f in files]  # same order: replace() keeps it
            digest = digest_of(stripped)
            blob = stage / "bundle.tar.gz"
            with _create_private(blob) as out:
                _write_canonical(zip(stripped, sources, strict=True), out)
            created = self.blobs.put(self.key(digest), blob)
            return BundleInfo(digest, entry, sum(f.size for f in files), tuple(stripped), created)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def has(self, digest: str) -> bool:
        return self.blobs.exists(self.key(digest))

    def open(self, digest: str) -> BinaryIO:
        """The canonical archive (``.tar.gz``), e.g. to send to a pod."""
        try:
            return self.blobs.open(self.key(digest))
        except FileNotFoundError:
            raise BundleNotFoundError(f"No bundle {digest} is stored.") from None

    def listing(self, digest: str) -> list[BundleFile]:
        """The stored bundle's files, read back and checked against the digest."""
        return self._read_blob(digest, _discard)

    def materialise(
        self,
        digest: str,
        target: str | os.PathLike,
        *,
        readable_by_others: bool = False,
        limits: BundleLimits | None = None,
    ) -> Path:
        """Extract the bundle, read-only, into the new folder ``target`` (its parent exists).

        Written beside ``target``, checked against the digest, then renamed into place, so
        ``target`` appears whole or not at all. Folders ``500`` and files ``400`` (``500``
        executable), or ``555``/``444``/``555`` with ``readable_by_others`` (an app account
        reads it). ``remove_tree`` removes it.
        """
        target = Path(target)
        if os.path.lexists(target):
            raise FileExistsError(f"{target} exists")
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:

            @contextlib.contextmanager
            def sink(_index: int, path: str) -> Iterator[BinaryIO]:
                file = work / path
                file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                with _create_private(file) as out:
                    yield out

            files = self._read_blob(digest, sink, limits)
            folder_mode, file_mode = (0o555, 0o444) if readable_by_others else (0o500, 0o400)
            for f in files:
                os.chmod(work / f.path, file_mode | (0o111 & folder_mode if f.executable else 0))
            for root, _dirs, _files in os.walk(work, topdown=False):
                os.chmod(root, folder_mode)
            os.rename(work, target)
            return target
        except BaseException:
            remove_tree(work)
            raise

    def _read_blob(
        self, digest: str, sink: Sink, limits: BundleLimits | None = None
    ) -> list[BundleFile]:
        with self.open(digest) as raw:
            size = self.blobs.size(self.key(digest))
            files = _read_archive(raw, size, limits or UNLIMITED, sink, ())
        if digest_of(files) != digest:
            raise DigestMismatchError(f"The stored bundle {digest} is damaged: upload it again.")
        return files

    def digests(self) -> Iterator[str]:
        for key in self.blobs.keys("sha256"):
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".tar.gz"):
                yield "sha256:" + name.removesuffix(".tar.gz")

    def delete(self, digest: str) -> bool:
        """Remove a bundle (the caller knows no version points at it); True if it was there."""
        return self.blobs.delete(self.key(digest))

    def collect_garbage(
        self,
        referenced: Collection[str],
        *,
        grace_seconds: float = 3600.0,
        now: float | None = None,
    ) -> list[str]:
        """Delete bundles not in ``referenced`` and not stored in the last ``grace_seconds``.

        The grace period covers an ``add`` whose version is not recorded yet (re-adding a
        stored bundle restarts it). Also removes staging folders a crash left behind.
        """
        now = time.time() if now is None else now
        removed = []
        for digest in list(self.digests()):
            key = self.key(digest)
            if digest in referenced or now - self.blobs.modified(key) < grace_seconds:
                continue
            if self.blobs.delete(key):
                removed.append(digest)
        for leftover in self.staging.iterdir():
            if now - leftover.lstat().st_mtime >= grace_seconds:
                shutil.rmtree(leftover, ignore_errors=True)
        return removed


def _write_canonical(files: Iterable[tuple[BundleFile, Path]], out: BinaryIO) -> None:
    """A gzip'd PAX tar of regular files only: sorted, 644/755, no times or owners."""
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for f, source in sorted(files, key=lambda pair: pair[0].path):
            info = tarfile.TarInfo(f.path)
            info.size = f.size
            info.mode = 0o755 if f.executable else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(source, "rb") as src:
                tar.addfile(info, src)
