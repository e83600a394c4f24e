"""``user_options`` of an app: parsed and checked before anything starts (pure).

The same parser serves the REST API body (``POST /hub/api/users/{u}/servers/{app}``) and the
options form, so both paths refuse the same things with the same words.

Fields:

- ``source``: where the app's code comes from: ``"home"`` (the analyst's home, default),
  ``"git"`` (``repo`` cloned at ``ref``, a full commit SHA, by an init container) or
  ``"image"`` (``image``, a prebuilt app image with a tag or digest). ``git`` and ``image``
  run on Kubernetes only, from the hosts and registries the group policy's ``sources`` allow
  (checked by the spawner: this module does not read the policy). ``"version"``: a published
  version of the app (``version``, e.g. ``"v3"``; default: the active one). An app with a
  published version runs it when the options name no ``source`` (``docs/publishing.md``).
- ``path``: the entry file: relative to the home (default ``apps/<app>/app.py``), to the
  repository's root (default ``app.py``) or to ``/app`` in the image (default ``app.py``).
- ``profile``: a machine-size slug; the group policy gives it meaning.
- ``workers``: how many Streamlit worker processes serve the app behind its one auth layer
  (default 1; a whole number, at most ``MAX_WORKERS``); the group policy's ``max_workers``
  bounds it, and on Kubernetes so does the profile's CPU limit (checked by the spawner).

``AppSource`` is what a spawner made of ``source``/``repo``/``ref``/``image`` once it checked
them against the policy: what the app server's pod is built from.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

KNOWN_FIELDS = ("source", "path", "profile", "repo", "ref", "image", "version", "workers")
SOURCES = ("home", "git", "image", "version")
_SHA = re.compile(r"[0-9a-f]{40}")
_VERSION = re.compile(r"v[1-9][0-9]{0,8}")
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:-]{0,254}(@sha256:[0-9a-f]{64})?")
MAX_OPTIONS_BYTES = 4096
MAX_PROFILE = 63
MAX_WORKERS = 64  # the app server's own bound (STREAMLIT_HUB_WORKERS)


class OptionsError(ValueError):
    """``user_options`` are unusable; ``str(e)`` is shown to the person who sent them."""


@dataclass(frozen=True)
class AppOptions:
    source: str = "home"
    path: str | None = None
    profile: str | None = None
    repo: str | None = None
    ref: str | None = None
    image: str | None = None
    version: str | None = None
    workers: int | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class AppSource:
    """Where a started app's code comes from, as the spawner admitted it.

    ``home``: the analyst's home (no other field). ``git``: ``repo`` cloned at ``ref`` (a full
    commit SHA) by an init container running ``git_image`` (the policy's
    ``sources.git_image``). ``image``: the prebuilt app image ``image``. ``version``: a
    published version, whose bundle ``digest`` the app server fetches from the hub.
    """

    kind: str = "home"
    repo: str | None = None
    ref: str | None = None
    git_image: str | None = None
    image: str | None = None
    digest: str | None = None  # version: the bundle the app server fetches

    def __post_init__(self):
        if self.kind not in SOURCES:
            raise ValueError(f"unknown app source {self.kind!r}")


def parse_user_options(raw: object) -> AppOptions:
    """Check ``raw`` (a JSON object) and return the app's options, or raise OptionsError."""
    if raw is None:
        return AppOptions()
    if not isinstance(raw, dict):
        raise OptionsError('Options must be a JSON object, e.g. {"path": "apps/demo/app.py"}.')
    try:
        size = len(json.dumps(raw, default=str))
    except (TypeError, ValueError):
        raise OptionsError("Options must be plain JSON values.") from None
    if size > MAX_OPTIONS_BYTES:
        raise OptionsError(f"Options are too large: at most {MAX_OPTIONS_BYTES} bytes.")
    unknown = sorted(str(k) for k in raw if k not in KNOWN_FIELDS)
    if unknown:
        raise OptionsError(
            f"Unknown option(s): {', '.join(repr(k[:40]) for k in unknown[:5])}. "
            f"Known options: {', '.join(KNOWN_FIELDS)}."
        )
    source = raw.get("source", "home")
    if source not in SOURCES:
        shown = source if isinstance(source, str) else type(source).__name__
        raise OptionsError(
            f"Unknown source {str(shown)[:40]!r}: this hub supports {', '.join(SOURCES)}."
        )
    path = raw.get("path")
    if path is not None and not isinstance(path, str):
        raise OptionsError("'path' must be a string, e.g. \"apps/demo/app.py\".")
    if path is not None and not path.strip():
        path = None
    profile = raw.get("profile")
    if profile is not None:
        if not isinstance(profile, str):
            raise OptionsError("'profile' must be a string naming a profile, e.g. \"small\".")
        profile = profile.strip() or None
        if profile is not None and len(profile) > MAX_PROFILE:
            raise OptionsError(f"'profile' is too long: at most {MAX_PROFILE} characters.")
    repo, ref, image = raw.get("repo"), raw.get("ref"), raw.get("image")
    version = raw.get("version")
    for name, value, owner in (
        ("repo", repo, "git"),
        ("ref", ref, "git"),
        ("image", image, "image"),
        ("version", version, "version"),
    ):
        if value is not None and source != owner:
            raise OptionsError(f"'{name}' applies to source \"{owner}\" only.")
        if value is not None and not isinstance(value, str):
            raise OptionsError(f"'{name}' must be a string.")
    if source == "git":
        repo = _git_repo(repo)
        if not isinstance(ref, str) or not _SHA.fullmatch(ref):
            raise OptionsError(
                "'ref' must pin a commit: its full 40-character SHA "
                "(e.g. from `git rev-parse HEAD`), not a branch."
            )
    if source == "image":
        image = _image_ref(image)
    if version is not None and not _VERSION.fullmatch(version):
        raise OptionsError("'version' names a published version, e.g. \"v3\".")
    if source == "version" and path is not None:
        raise OptionsError(
            "'path' does not apply to a published version: it has its own entry file."
        )
    return AppOptions(
        source=source,
        path=path,
        profile=profile,
        repo=repo,
        ref=ref,
        image=image,
        version=version,
        workers=_workers(raw.get("workers")),
    )


def _workers(value) -> int | None:
    """``workers``: a whole number from 1 to ``MAX_WORKERS`` (the form posts it as text)."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,3}", value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise OptionsError(
            f"'workers' must be a whole number from 1 to {MAX_WORKERS}, e.g. 2 "
            "(Streamlit processes serving the app)."
        )
    return value


def _git_repo(repo) -> str:
    if not repo:
        raise OptionsError(
            'Source "git" needs \'repo\', e.g. "https://github.com/example/sales-app.git".'
        )
    if len(repo) > 500:
        raise OptionsError("'repo' is too long: at most 500 characters.")
    parts = urlsplit(repo)
    if parts.scheme != "https" or not parts.hostname:
        raise OptionsError("'repo' must be an https:// URL of a git repository.")
    if parts.username or parts.password:
        raise OptionsError("'repo' must not contain credentials: never put a token in a URL.")
    if parts.query or parts.fragment:
        raise OptionsError("'repo' must be a plain repository URL (no ?query or #fragment).")
    return repo


def _image_ref(image) -> str:
    if not image:
        raise OptionsError(
            'Source "image" needs \'image\', e.g. "ghcr.io/example/apps/alice-sales:1a2b3c".'
        )
    name = image.split("@", 1)[0]
    if not _IMAGE.fullmatch(image) or (":" not in name.rsplit("/", 1)[-1] and "@" not in image):
        raise OptionsError(
            "'image' must be an image reference with a tag or a digest, "
            'e.g. "ghcr.io/example/apps/alice-sales:1a2b3c".'
        )
    if name.endswith(":latest"):
        raise OptionsError(
            "'image' must pin a version: use a tag other than 'latest', or a digest."
        )
    return image


def options_from_form_data(form: dict[str, list]) -> dict:
    """The options form posts lists of strings; keep the first value of known fields only."""
    out = {}
    for key in KNOWN_FIELDS:
        values = form.get(key) or []
        if values:
            value = values[0]
            if isinstance(value, bytes):
                value = value.decode("utf8", "replace")
            if value != "":
                out[key] = value
    return out
