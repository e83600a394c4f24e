"""``user_options`` of an app: parsed and checked before anything starts (pure).

The same parser serves the REST API body (``POST /hub/api/users/{u}/servers/{app}``) and the
options form, so both paths refuse the same things with the same words.

Fields:

- ``source``: where the app's code comes from. ``"home"`` (the analyst's home) today;
  ``"git"`` and ``"image"`` arrive with the Kubernetes spawner.
- ``path``: the entry file relative to the home; default ``apps/<app>/app.py``.
- ``profile``: a machine-size slug; the group policy gives it meaning.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

KNOWN_FIELDS = ("source", "path", "profile")
SOURCES = ("home",)
MAX_OPTIONS_BYTES = 4096
MAX_PROFILE = 63


class OptionsError(ValueError):
    """``user_options`` are unusable; ``str(e)`` is shown to the person who sent them."""


@dataclass(frozen=True)
class AppOptions:
    source: str = "home"
    path: str | None = None
    profile: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def parse_user_options(raw: object) -> AppOptions:
    """Check ``raw`` (a JSON object) and return the app's options, or raise OptionsError."""
    if raw is None:
        return AppOptions()
    if not isinstance(raw, dict):
        raise OptionsError("Options must be a JSON object, e.g. {\"path\": \"apps/demo/app.py\"}.")
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
    return AppOptions(source=source, path=path, profile=profile)


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
