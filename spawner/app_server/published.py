"""Kubernetes: fetch, verify and extract the published version an app pod runs (#14).

An app pod shares no disk with the hub. When the spawner runs a published version it tells
the app server the bundle's digest (``STREAMLIT_HUB_BUNDLE_DIGEST``) and where its entry file
will be (``STREAMLIT_HUB_ENTRY``, under ``STREAMLIT_HUB_BUNDLE_DIR`` on the pod's scratch
volume). Before anything else the launcher:

1. fetches ``GET {JUPYTERHUB_API_URL}/streamlit/apps/{owner}/{app}/bundles/{digest}`` with
   the app server's own token (``spawner/bundle_api.py``: only this app's own server, its
   owner and admins may), streamed to a private file, at most ``MAX_BUNDLE_BYTES``;
2. extracts it with ``BundleStore.materialise``, which checks every member again and the
   digest of what it extracted: a bundle changed in transit or at rest never runs;
3. builds the bundle's ``requirements.txt``, if any, with the same ``EnvironmentStore`` as the
   one-machine hub, into a cache on the owner's home volume
   (``$HOME/.cache/streamlit-hub/environments``, shared by the owner's apps and kept across
   restarts), over this app environment (``sys.executable``), from the group's index;
   the launcher then runs again on that environment's Python.

A failure is one sentence (``PublishedError``) that the launcher prints as its
``CANNOT_START`` line: the owner reads it on the hub's start page.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from ..bundles import BundleError, BundleStore, LocalBlobStore, private_makedirs, remove_tree
from ..environments import EnvironmentBuildError, EnvironmentStore

MAX_BUNDLE_BYTES = 512 * 1024 * 1024
CHUNK = 256 * 1024


class PublishedError(Exception):
    """The published version cannot run; ``str()`` is the sentence for its owner."""


def fetch(api_url: str, token: str, owner: str, app: str, digest: str, out) -> int:
    url = (
        f"{api_url.rstrip('/')}/streamlit/apps/{quote(owner, safe='')}/"
        f"{quote(app, safe='')}/bundles/{quote(digest, safe=':')}"
    )
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            size = 0
            while chunk := answer.read(CHUNK):
                size += len(chunk)
                if size > MAX_BUNDLE_BYTES:
                    raise PublishedError("The version's bundle is larger than an app may run.")
                out.write(chunk)
            return size
    except urllib.error.HTTPError as e:
        raise PublishedError(
            f"The hub would not give this app its version's bundle ({e.code}): deploy it again."
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise PublishedError(f"The hub could not be reached for the app's code: {e}.") from None


def extract(blob: Path, digest: str, target: Path) -> Path:
    """``blob`` (the fetched archive) checked against ``digest`` and extracted to ``target``."""
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
    try:
        store = BundleStore(LocalBlobStore(private_makedirs(work / "blobs")), work / "staging")
        store.blobs.put(store.key(digest), blob)
        if target.exists():
            remove_tree(target)
        return store.materialise(digest, target)
    except BundleError as e:
        raise PublishedError(
            f"The app's code did not arrive intact ({e}): deploy it again."
        ) from None
    finally:
        remove_tree(work)


def environment_python(folder: Path, own, progress=print) -> Path | None:
    """The Python of the environment the bundle's ``requirements.txt`` needs (built now, or
    reused from the home volume's cache); None when it has none."""
    requirements = folder / "requirements.txt"
    if not requirements.is_file():
        return None
    cache = Path(os.environ.get("HOME") or "/tmp") / ".cache" / "streamlit-hub" / "environments"
    store = EnvironmentStore(
        cache,
        sys.executable,
        index_url=own.package_index or None,
        find_links=list(own.package_find_links),
        no_index=own.package_offline,
        build_timeout=own.build_timeout,
        link_mode="copy",  # uv's cache and the environments may be on different volumes
    )
    try:
        env = asyncio.run(
            store.ensure(
                requirements.read_text(encoding="utf-8"),
                progress=lambda _p, message: progress(f"streamlit-hub-app: {message}"),
            )
        )
    except EnvironmentBuildError as e:
        if e.log:
            print(e.log, file=sys.stderr)
        raise PublishedError(f"The app's environment could not be built: {e.message}") from None
    except UnicodeDecodeError:
        raise PublishedError("requirements.txt is not UTF-8 text.") from None
    return env.python


def prepare(settings, own) -> Path | None:
    """Fetch and extract the version, build its environment; return the Python to run the
    app server with (None: this one). ``own`` is the ``AppServerSettings``."""
    target = Path(own.bundle_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".bundle-", dir=target.parent)
    blob = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            fetch(
                settings.api_url,
                settings.api_token,
                settings.owner,
                settings.server_name,
                own.bundle_digest,
                out,
            )
        extract(blob, own.bundle_digest, target)
    finally:
        blob.unlink(missing_ok=True)
    return environment_python(target, own)
