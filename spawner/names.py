"""App names and entry paths: pure validation shared by every spawner.

Invariants:

- ``app_name_problem(name)`` is ``None`` exactly when JupyterHub 6 would accept ``name`` as a
  new named server (``jupyterhub.slugs.is_valid_safe_slug``); otherwise it is a sentence a
  person can act on. A test holds the two to agreement on arbitrary strings.
- ``resolve_entry(home, path)`` returns a path that is a regular ``.py`` file *inside* ``home``
  after every symlink is resolved, or raises ``EntryPathError`` with the reason. It never
  touches anything outside ``home`` beyond ``stat``/``realpath``. A missing file is a
  ``MissingEntryError`` (a kind of ``EntryPathError``), so a caller can say where the code goes.
- ``no_code_message(app, entry, shown)`` is the one sentence every start path uses for an app
  with no code of its own: where to put it, with the path shown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

MAX_APP_NAME = 30
MAX_ENTRY_PATH = 255
_SLUG = re.compile(r"[a-z0-9-]+")


def app_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid app name, or None if it is."""
    if not isinstance(name, str) or not name:
        return "An app name is required."
    shown = name if len(name) <= 40 else name[:40] + "…"
    if len(name) > MAX_APP_NAME:
        return f"App name {shown!r} is too long: at most {MAX_APP_NAME} characters."
    if not _SLUG.fullmatch(name):
        return f"App name {shown!r} may contain only lowercase letters a-z, digits and '-'."
    if not name[0].isalpha():
        return f"App name {shown!r} must start with a letter."
    if name.endswith("-"):
        return f"App name {shown!r} must end with a letter or a digit."
    if "--" in name:
        return f"App name {shown!r} must not contain '--'."
    return None


def default_entry(app_name: str) -> str:
    """The entry file used when ``user_options`` names none: ``apps/<app>/app.py``."""
    return f"apps/{app_name}/app.py"


class EntryPathError(ValueError):
    """The entry path is unsafe or missing; ``str(e)`` is shown to the analyst."""


class MissingEntryError(EntryPathError):
    """No file at the (safe) entry path; ``path`` as given, ``where`` its full path."""

    def __init__(self, message: str, path: str, where: str):
        super().__init__(message)
        self.path = path
        self.where = where


def no_code_message(app_name: str, entry: str, where: str | None = None) -> str:
    """What a start of an app without code of its own is refused with: where the code goes.

    ``entry`` is relative to the analyst's home (``apps/<app>/app.py``); ``where`` is its full
    path when the hub can see the home (local mode), else None.
    """
    place = f"{entry} in your home" + (f" ({where})" if where else "")
    return (
        f"The app {app_name} has no code yet: put its Streamlit script in {place}, "
        "then start it again."
    )


def entry_path_shape_problem(path: object) -> str | None:
    """Why ``path`` can never be a safe entry path (without looking at any file), or None."""
    if not isinstance(path, str) or not path.strip():
        return "The app's entry file must be a non-empty path relative to your home."
    if len(path) > MAX_ENTRY_PATH:
        return f"The entry path is too long: at most {MAX_ENTRY_PATH} characters."
    if "\x00" in path or any(ord(ch) < 32 for ch in path):
        return "The entry path contains control characters."
    if "\\" in path:
        return "Use '/' in the entry path, not '\\'."
    pure = PurePosixPath(path)
    if pure.is_absolute():
        return f"The entry path {path!r} must be relative to your home, not absolute."
    if ".." in pure.parts:
        return f"The entry path {path!r} must not contain '..'."
    if pure.suffix != ".py":
        return f"The entry path {path!r} must name a Python file ending in '.py'."
    return None


def resolve_entry(home: str | os.PathLike, path: object) -> Path:
    """Resolve ``path`` (relative to ``home``) to the app's entry file, or refuse it."""
    problem = entry_path_shape_problem(path)
    if problem:
        raise EntryPathError(problem)
    assert isinstance(path, str)
    home_real = Path(os.path.realpath(home))
    candidate = Path(os.path.realpath(home_real / path))
    if candidate != home_real and home_real not in candidate.parents:
        raise EntryPathError(
            f"The entry path {path!r} leads outside your home (through a symlink)."
        )
    if not candidate.exists():
        where = str(home_real / path)
        raise MissingEntryError(f"No file {path} in your home ({where}).", path, where)
    if not candidate.is_file():
        raise EntryPathError(f"The entry path {path!r} is not a regular file.")
    return candidate


def list_apps(home: str | os.PathLike) -> list[str]:
    """App names found as ``apps/<name>/app.py`` in ``home``, valid names only, sorted."""
    apps_dir = Path(home) / "apps"
    if not apps_dir.is_dir():
        return []
    found = []
    for child in apps_dir.iterdir():
        if app_name_problem(child.name) is None and (child / "app.py").is_file():
            found.append(child.name)
    return sorted(found)
