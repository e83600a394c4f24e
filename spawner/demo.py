"""The embedded default's demo: users, groups, password and app (local mode only)."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

DEMO_USERS = ("alice", "bob", "carol", "admin")
DEMO_ADMINS = ("admin",)
DEMO_GROUPS = {
    "analysts": ["alice", "bob"],
    "data-scientists": ["bob"],
    "viewers": ["carol"],
}
DEMO_APP_OWNERS = ("alice", "bob")
DEMO_APP_NAME = "demo"


def demo_password(data_dir: Path) -> str:
    """A password generated once and kept in the data dir (when the settings name none)."""
    path = data_dir / "demo-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


def password_notice(data_dir: Path, password: str) -> str:
    """What ``make run`` prints about the generated password."""
    return (
        f"Demo users {', '.join(DEMO_USERS)} sign in with the password: {password}\n"
        f"  (kept in {data_dir / 'demo-password'}; set STREAMLIT_HUB_DEMO_PASSWORD to choose one)"
    )


def seed_demo_apps(homes_root: Path, source: Path) -> list[Path]:
    """Copy the demo app into apps/demo/ of each demo owner's home, unless it is there."""
    made = []
    for user in DEMO_APP_OWNERS:
        target = homes_root / user / "apps" / DEMO_APP_NAME
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            made.append(target)
    return made
