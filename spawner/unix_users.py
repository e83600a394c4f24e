"""One system account per analyst for local apps: names, creation, and the private data dir.

When the hub runs as root (a service, CI), every analyst's apps run as a system user of their
own, so app code cannot read the hub's database, cookie secret, audit store, other analysts'
homes and logs, or the environment of the hub's processes (``/proc/<pid>/environ`` is readable
only by the process's own user).

Invariants:

- ``account_name`` is a valid Debian user name (``[a-z_][a-z0-9_-]*``, at most 32 characters)
  for any hub user name, and two hub users never share one: a name that had to be changed or
  shortened carries a hash of the original.
- Accounts are system accounts with no login shell, no password and no home created by
  ``useradd``; the hub owns the home's creation (mode 700, owned by the account).
- ``ensure_account`` is idempotent and safe under concurrent starts of one analyst's apps.

``useradd`` (Debian's passwd package) is used rather than editing ``/etc/passwd``: it takes the
system's locks and picks a free system UID.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

MAX_NAME = 32
_UNSAFE = re.compile(r"[^a-z0-9_-]+")
NOLOGIN = "/usr/sbin/nologin"


class AccountError(RuntimeError):
    """The system account for an analyst could not be made; the message says why."""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


def account_name(user: str, prefix: str = "sthub-") -> str:
    """The system account name for hub user ``user`` (see the invariants above)."""
    safe = _UNSAFE.sub("-", user.lower()).strip("-") or "user"
    name = prefix + safe
    if safe == user and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(user.encode("utf-8")).hexdigest()[:8]
    room = MAX_NAME - len(prefix) - len(digest) - 1
    return f"{prefix}{safe[:room].rstrip('-')}-{digest}"


def lookup(name: str) -> Account | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


async def ensure_account(name: str, home: str) -> Account:
    """The account ``name``, created as a system user (no shell, no password) if missing."""
    found = lookup(name)
    if found is not None:
        return found
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = await asyncio.create_subprocess_exec(
        useradd,
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        home,
        "--shell",
        NOLOGIN,
        "--comment",
        "streamlit-hub app account",
        name,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    found = lookup(name)  # another start of the same analyst's app may have made it first
    if found is None:
        raise AccountError(
            f"could not create the system user {name!r} for local apps "
            f"(useradd exited {proc.returncode}: {err.decode(errors='replace').strip()})"
        )
    return found


def prepare_home(home: Path, account: Account) -> None:
    """The home exists, belongs to ``account`` and is private to it (mode 700).

    On the first start for an account (the home is not yet its own), what the hub put there
    (the seeded demo) is handed over too; the account could never have written into the
    home before, so nothing in it can be a link planted to redirect this.
    """
    home.mkdir(parents=True, exist_ok=True)
    if home.stat().st_uid != account.uid:
        for root, dirs, files in os.walk(home):
            for entry in dirs + files:
                os.lchown(os.path.join(root, entry), account.uid, account.gid)
        os.chown(home, account.uid, account.gid)
    os.chmod(home, 0o700)


def prepare_private_dir(path: Path, account: Account) -> None:
    """A directory only ``account`` can use (its audit spool), under root-owned parents."""
    path.mkdir(parents=True, exist_ok=True)
    os.lchown(path, account.uid, account.gid)
    os.chmod(path, 0o700)
    for entry in os.scandir(path):
        os.lchown(entry.path, account.uid, account.gid)


def traversable(path: Path) -> None:
    """``path`` (a folder of root's) may be passed through, not listed, by app accounts."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o711)


def blocked_for_others(path: str) -> str | None:
    """The first folder or file on the way to ``path`` that an unprivileged account cannot
    pass (a folder without ``o+x``, or ``path`` itself without ``o+x``), or None."""
    seen = []
    for candidate in (Path(path).absolute(), Path(os.path.realpath(path))):
        seen.extend([*reversed(candidate.parents), candidate])
    for p in seen:
        try:
            mode = p.stat().st_mode
        except OSError:
            return str(p)
        if not mode & 0o001:
            return str(p)
    return None
