"""The group policy: who may start which apps, on which machine sizes, how many (pure).

Invariants:

- ``load_policy`` either returns a fully checked ``Policy`` or raises ``PolicyError`` naming
  the file, the key and what is wrong. Nothing downstream re-checks the file's shape.
- Every decision is a pure function of (policy, the user's groups, the user's servers, the
  request): no I/O, no hub objects, so every start path asks the same question the same way.
- Combining groups is **most permissive per field**: the union of profiles; the largest
  count or total (``null``, no limit, beats any number); a flag is true if any group grants it;
  the longest idle timeout and link lifetime. So joining a group never takes anything away.
  The default profile is that of the first group, in file order, the user belongs to.
- ``defaults`` is the floor every signed-in user gets, combined with their groups by the
  same rule (so a user in no listed group gets exactly ``defaults``), except CPU/memory
  totals, which come from the user's groups alone. The default
  ``defaults`` is view-only: no profiles, no apps.
- Data access (``volumes``, ``service_account``; Kubernetes only) is granted per group and
  combined by its own rule (``data_access``): the volumes are the union of the user's groups'
  (and ``defaults``') volumes, read-write where any of them grants write; a service account
  only when they grant exactly one (one name, whoever grants it), else the start is refused
  with the groups and accounts named. One mount path holds one claim across the whole file
  (checked at load). This is the one place where joining a group can take something away (a
  second, different service account), and the refusal says so.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml

# ---- units --------------------------------------------------------------------------------
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.IGNORECASE)
_UNIT = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(value) -> int:
    """'512M', '2G', '16Gi', 1024 -> bytes (1024-based, as KubeSpawner's ByteSpecification)."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 512M or 2G")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return int(value)
    m = _BYTES.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size like 512M or 2G")
    unit = (m.group(2) or "")[:1].lower()
    return int(float(m.group(1)) * _UNIT[unit])


def format_bytes(n: int) -> str:
    for unit, size in (("T", 2**40), ("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


# ---- the policy ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    cpu_guarantee: float | None = None
    cpu_limit: float | None = None
    mem_guarantee: int | None = None
    mem_limit: int | None = None
    gpu: int = 0
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple = ()
    image: str | None = None


@dataclass(frozen=True)
class VolumeGrant:
    """An existing PersistentVolumeClaim (in the hub's namespace) mounted into a group's apps."""

    claim: str
    mount_path: str
    read_only: bool = True


@dataclass(frozen=True)
class Rule:
    """What one group (or the defaults) grants."""

    profiles: tuple[str, ...] = ()
    default_profile: str | None = None
    max_running_apps: int = 0
    max_workers: int = 1  # Streamlit worker processes per app (the ``workers`` option)
    max_apps: int = 0
    max_total_cpu: float | None = None  # None: no limit
    max_total_memory: int | None = None
    idle_timeout: int | None = None  # seconds; None: the hub's default
    may_share: bool = True
    may_share_links: bool = False
    max_link_days: float = 1.0
    # data access (Kubernetes only): PVCs to mount, the Kubernetes service account apps run as
    volumes: tuple[VolumeGrant, ...] = ()
    service_account: str | None = None
    # publishing (docs/publishing.md); None: the hub's defaults
    may_publish: bool = True
    max_upload_size: int | None = None
    max_bundle_size: int | None = None
    max_environment_size: int | None = None
    package_index: str | None = None
    build_timeout: int | None = None


@dataclass(frozen=True)
class Sources:
    """Where apps' code may come from besides the analyst's home: git hosts (deploys from git,
    both modes; ``git`` apps on Kubernetes) and image registries (Kubernetes)."""

    git_hosts: tuple[str, ...] = ()  # e.g. github.com: git deploys and `git` apps use these only
    image_prefixes: tuple[str, ...] = ()  # e.g. ghcr.io/example/apps/: `image` apps
    git_image: str = "alpine/git:2.47.2"  # the init container that clones


@dataclass(frozen=True)
class Policy:
    profiles: dict[str, Profile]
    groups: dict[str, Rule]  # in file order
    defaults: Rule
    source: str = "<policy>"
    sources: Sources = field(default_factory=Sources)


class PolicyError(ValueError):
    """The policy file is wrong; the message names the file, the key and the problem."""


PROFILE_KEYS = {
    "display_name",
    "cpu_guarantee",
    "cpu_limit",
    "mem_guarantee",
    "mem_limit",
    "gpu",
    "node_selector",
    "tolerations",
    "image",
}
RULE_KEYS = {
    "profiles",
    "default_profile",
    "max_running_apps",
    "max_workers",
    "max_apps",
    "max_total_cpu",
    "max_total_memory",
    "idle_timeout",
    "may_share",
    "may_share_links",
    "max_link_days",
    "volumes",
    "service_account",
    "may_publish",
    "max_upload_size",
    "max_bundle_size",
    "max_environment_size",
    "package_index",
    "build_timeout",
}
VOLUME_KEYS = {"claim", "mount_path", "read_only"}
_SLUG = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, problem: str):
        raise PolicyError(f"{self.source}: {key}: {problem}")

    def mapping(self, value, key) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def unknown(self, d: dict, allowed: set, key: str):
        extra = sorted(str(k) for k in d if k not in allowed)
        if extra:
            self.fail(f"{key}.{extra[0]}", f"unknown key (known: {', '.join(sorted(allowed))})")

    def number(self, d, name, key, *, integer=False, allow_none=True, default=None, minimum=0):
        value = d.get(name, default)
        if value is None:
            if not allow_none:
                self.fail(f"{key}.{name}", "is required")
            return None
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            self.fail(
                f"{key}.{name}",
                f"expected {'a whole number' if integer else 'a number'}, got {value!r}",
            )
        if value < minimum:
            self.fail(f"{key}.{name}", f"must be at least {minimum}, got {value!r}")
        return value

    def size(self, d, name, key):
        value = d.get(name)
        if value is None:
            return None
        try:
            return parse_bytes(value)
        except ValueError as e:
            self.fail(f"{key}.{name}", str(e))

    def flag(self, d, name, key, default):
        value = d.get(name, default)
        if not isinstance(value, bool):
            self.fail(f"{key}.{name}", f"expected true or false, got {value!r}")
        return value


def _profile(ck: _Checker, slug, raw) -> Profile:
    key = f"profiles.{slug}"
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        ck.fail(
            key,
            "a profile slug is 1-63 of a-z, 0-9, '-', starting and ending with a letter or digit",
        )
    raw = ck.mapping(raw, key)
    ck.unknown(raw, PROFILE_KEYS, key)
    name = raw.get("display_name", slug)
    if not isinstance(name, str) or not name.strip():
        ck.fail(f"{key}.display_name", "expected a non-empty string")
    p = Profile(
        slug=slug,
        display_name=name,
        cpu_guarantee=ck.number(raw, "cpu_guarantee", key),
        cpu_limit=ck.number(raw, "cpu_limit", key),
        mem_guarantee=ck.size(raw, "mem_guarantee", key),
        mem_limit=ck.size(raw, "mem_limit", key),
        gpu=ck.number(raw, "gpu", key, integer=True, default=0),
        node_selector=dict(ck.mapping(raw.get("node_selector"), f"{key}.node_selector")),
        tolerations=tuple(raw.get("tolerations") or ()),
        image=raw.get("image"),
    )
    for low, high in (("cpu_guarantee", "cpu_limit"), ("mem_guarantee", "mem_limit")):
        a, b = getattr(p, low), getattr(p, high)
        if a is not None and b is not None and a > b:
            ck.fail(f"{key}.{low}", f"is larger than {high}")
    if p.image is not None and (not isinstance(p.image, str) or not p.image.strip()):
        ck.fail(f"{key}.image", "expected an image name")
    if not isinstance(raw.get("tolerations") or [], list):
        ck.fail(f"{key}.tolerations", "expected a list")
    return p


def _rule(ck: _Checker, key: str, raw, profiles: dict) -> Rule:
    raw = ck.mapping(raw, key)
    ck.unknown(raw, RULE_KEYS, key)
    names = raw.get("profiles", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        ck.fail(f"{key}.profiles", "expected a list of profile slugs")
    for n in names:
        if n not in profiles:
            ck.fail(
                f"{key}.profiles", f"no profile {n!r} (defined: {', '.join(profiles) or 'none'})"
            )
    default = raw.get("default_profile")
    if default is not None and default not in names:
        ck.fail(f"{key}.default_profile", f"{default!r} is not in this group's profiles {names}")
    running = ck.number(raw, "max_running_apps", key, integer=True, default=0)
    kept = ck.number(raw, "max_apps", key, integer=True, default=0)
    if kept and running > kept:
        ck.fail(f"{key}.max_running_apps", f"is larger than max_apps ({kept})")
    return Rule(
        profiles=tuple(names),
        default_profile=default or (names[0] if names else None),
        max_running_apps=running,
        max_workers=ck.number(raw, "max_workers", key, integer=True, default=1, minimum=1),
        max_apps=kept,
        max_total_cpu=ck.number(raw, "max_total_cpu", key),
        max_total_memory=ck.size(raw, "max_total_memory", key),
        idle_timeout=ck.number(raw, "idle_timeout", key, integer=True, minimum=30),
        may_share=ck.flag(raw, "may_share", key, True),
        may_share_links=ck.flag(raw, "may_share_links", key, False),
        max_link_days=ck.number(raw, "max_link_days", key, default=1.0, minimum=0.01),
        volumes=_volumes(ck, key, raw.get("volumes")),
        service_account=_service_account(ck, key, raw.get("service_account")),
        may_publish=ck.flag(raw, "may_publish", key, True),
        max_upload_size=ck.size(raw, "max_upload_size", key),
        max_bundle_size=ck.size(raw, "max_bundle_size", key),
        max_environment_size=ck.size(raw, "max_environment_size", key),
        package_index=_package_index(ck, key, raw.get("package_index")),
        build_timeout=ck.number(raw, "build_timeout", key, integer=True, minimum=10),
    )


def _package_index(ck: _Checker, key: str, value) -> str | None:
    """A package index URL (``https://``, or ``http://`` on loopback); None: the hub's."""
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or not parts.hostname
        or parts.scheme not in ("http", "https")
        or (parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"))
    ):
        ck.fail(
            f"{key}.package_index",
            "expected the index's https:// URL, e.g. https://pypi.example.com/simple",
        )
    return value


# ---- data access (Kubernetes only) ----------------------------------------------------------
# A PVC name (a DNS subdomain) and a service account name (kept to a DNS label's 63 characters,
# so it can be a label value on the pod: network policies select on it).
_CLAIM = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
_SERVICE_ACCOUNT = re.compile(r"[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?")
_MOUNT_PATH = re.compile(r"/[A-Za-z0-9._/-]{1,250}")
# Where an app pod's own volumes are (the home at its default mount, scratch, a git source):
# a granted volume may be neither at, under nor above one of them.
APP_POD_PATHS = ("/home/analyst", "/tmp", "/app")
# The image's system folders and the service-account token's folder: never under a grant.
SYSTEM_PATHS = (
    *("/bin", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys", "/usr"),
    "/var/run",  # /var/run/secrets/kubernetes.io/serviceaccount: the account's token
)


def paths_overlap(a: str, b: str) -> bool:
    """Is one of two absolute normalised paths the other, or inside it?"""
    a, b = a.rstrip("/") or "/", b.rstrip("/") or "/"
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def mount_path_problem(path: str, own_paths=APP_POD_PATHS) -> str | None:
    """Why ``path`` cannot be where a granted volume is mounted (None: it can)."""
    if not isinstance(path, str) or not _MOUNT_PATH.fullmatch(path):
        return "expected an absolute path like /data/sales (letters, digits, . _ - /)"
    if posixpath.normpath(path) != path or path == "/" or "/." in path:
        return f"{path!r} is not a plain normalised path (no trailing /, //, . or ..)"
    for own in own_paths:
        if paths_overlap(path, own):
            return f"{path} overlaps {own}, where the app pod has its own volume"
    for system in SYSTEM_PATHS:
        if path == system or path.startswith(system + "/"):
            return f"{path} is inside {system}, a system folder of the image"
    return None


def _volumes(ck: _Checker, key: str, raw) -> tuple[VolumeGrant, ...]:
    if raw is None:
        return ()
    example = "[{claim: sales-data, mount_path: /data/sales, read_only: true}]"
    if not isinstance(raw, list):
        ck.fail(f"{key}.volumes", f"expected a list, e.g. {example}")
    out: list[VolumeGrant] = []
    for i, item in enumerate(raw):
        here = f"{key}.volumes[{i}]"
        if not isinstance(item, dict):
            ck.fail(here, f"expected a mapping, e.g. {example[1:-1]}")
        ck.unknown(item, VOLUME_KEYS, here)
        claim = item.get("claim")
        if claim is None:
            ck.fail(f"{here}.claim", "is required: the name of an existing PersistentVolumeClaim")
        if not isinstance(claim, str) or not _CLAIM.fullmatch(claim):
            ck.fail(
                f"{here}.claim",
                f"{claim!r} is not a PersistentVolumeClaim name (a-z, 0-9, '-', '.')",
            )
        path = item.get("mount_path")
        if path is None:
            ck.fail(f"{here}.mount_path", "is required, e.g. /data/sales")
        problem = mount_path_problem(path)
        if problem:
            ck.fail(f"{here}.mount_path", problem)
        for j, other in enumerate(out):
            if paths_overlap(path, other.mount_path):
                ck.fail(
                    f"{here}.mount_path",
                    f"{path} overlaps {other.mount_path} ({key}.volumes[{j}])",
                )
        out.append(VolumeGrant(claim, path, ck.flag(item, "read_only", here, True)))
    return tuple(out)


def _service_account(ck: _Checker, key: str, raw) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not _SERVICE_ACCOUNT.fullmatch(raw):
        ck.fail(
            f"{key}.service_account",
            f"{raw!r} is not a Kubernetes service account name (1-63 of a-z, 0-9, '-', '.')",
        )
    return raw


def _check_mount_paths_agree(ck: _Checker, rules: list[tuple[str, Rule]]) -> None:
    """One mount path, one claim, in every group: so a user's union is well defined."""
    seen: dict[str, tuple[str, VolumeGrant]] = {}
    for key, rule in rules:
        for i, v in enumerate(rule.volumes):
            for path, (other_key, other) in seen.items():
                if path == v.mount_path and other.claim == v.claim:
                    continue
                if paths_overlap(path, v.mount_path):
                    ck.fail(
                        f"{key}.volumes[{i}].mount_path",
                        f"{v.mount_path} (claim {v.claim}) overlaps {path}, where {other_key} "
                        f"mounts claim {other.claim}: a user in both would get both; one "
                        "mount path holds one claim across the policy",
                    )
            seen.setdefault(v.mount_path, (key, v))


def parse_policy(data, source: str = "<policy>") -> Policy:
    ck = _Checker(source)
    data = ck.mapping(data, "(top level)")
    ck.unknown(data, {"profiles", "groups", "defaults", "sources"}, "(top level)")
    profiles = {}
    for slug, raw in ck.mapping(data.get("profiles"), "profiles").items():
        profiles[slug] = _profile(ck, slug, raw)
    groups = {}
    for name, raw in ck.mapping(data.get("groups"), "groups").items():
        if not isinstance(name, str) or not name:
            ck.fail(f"groups.{name}", "a group name must be a non-empty string")
        groups[name] = _rule(ck, f"groups.{name}", raw, profiles)
    defaults = _rule(ck, "defaults", data.get("defaults"), profiles)
    _check_mount_paths_agree(
        ck, [*((f"groups.{g}", r) for g, r in groups.items()), ("defaults", defaults)]
    )
    return Policy(
        profiles=profiles,
        groups=groups,
        defaults=defaults,
        source=source,
        sources=_sources(ck, data.get("sources")),
    )


_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[0-9]{1,5})?")
_IMAGE_PREFIX = re.compile(r"[a-z0-9][a-z0-9._:/-]{0,254}/")


def _sources(ck: _Checker, raw) -> Sources:
    raw = ck.mapping(raw, "sources")
    ck.unknown(raw, {"git_hosts", "image_prefixes", "git_image"}, "sources")

    def strings(name, pattern, example):
        values = raw.get(name) or []
        if not isinstance(values, list):
            ck.fail(f"sources.{name}", f"expected a list, e.g. [{example}]")
        for v in values:
            if not isinstance(v, str) or not pattern.fullmatch(v):
                ck.fail(f"sources.{name}", f"{v!r} is not like {example}")
        return tuple(values)

    git_image = raw.get("git_image", Sources.git_image)
    if (
        not isinstance(git_image, str)
        or not git_image.strip()
        or ":" not in git_image.rsplit("/", 1)[-1]
    ):
        ck.fail("sources.git_image", f"expected an image with a tag, e.g. {Sources.git_image}")
    return Sources(
        git_hosts=strings("git_hosts", _HOST, "github.com"),
        image_prefixes=strings("image_prefixes", _IMAGE_PREFIX, "ghcr.io/example/apps/"),
        git_image=git_image,
    )


def load_policy(path: str | os.PathLike) -> Policy:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise PolicyError(f"{p}: cannot read the policy file: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"{p}: not valid YAML: {e}") from None
    return parse_policy(data, str(p))


_cache: dict[str, tuple[float, Policy]] = {}
_cache_lock = threading.Lock()


def group_names(user) -> list[str]:
    """A hub user's group names, in the order JupyterHub gives them."""
    return [g.name for g in user.groups]


@dataclass(frozen=True)
class PolicyFile:
    """The group policy the hub was configured with: one object, made once by the hub's
    configuration and handed to every hub-side consumer (the quota API and line, the
    named-server limit, the share-link rules). ``current`` is the policy now: the file is
    re-read when it changes (a stat per call), so an edited ConfigMap applies without a
    restart. The spawners get the path (``policy_file``), as traitlets configuration."""

    path: str

    @property
    def current(self) -> Policy:
        return cached_policy(self.path)


def cached_policy(path: str) -> Policy:
    """The policy at ``path``, re-read when the file changes (checked on each call: a stat)."""
    mtime = os.stat(path).st_mtime
    with _cache_lock:
        hit = _cache.get(path)
        if hit and hit[0] == mtime:
            return hit[1]
    policy = load_policy(path)
    with _cache_lock:
        _cache[path] = (mtime, policy)
    return policy


# ---- decisions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """A user's effective rule, and which of their groups it came from."""

    rule: Rule
    groups: tuple[str, ...]  # the policy groups the user is in, in file order


def _most(values, none_wins: bool):
    values = list(values)
    if none_wins and any(v is None for v in values):
        return None
    values = [v for v in values if v is not None]
    return max(values) if values else None


def combine(rules: list[Rule]) -> Rule:
    """Most permissive per field; the first rule's default profile."""
    if not rules:
        raise ValueError("no rules to combine")
    profiles: list[str] = []
    for r in rules:
        profiles += [p for p in r.profiles if p not in profiles]
    default = next((r.default_profile for r in rules if r.default_profile), None)
    return Rule(
        profiles=tuple(profiles),
        default_profile=default,
        max_running_apps=max(r.max_running_apps for r in rules),
        max_workers=max(r.max_workers for r in rules),
        max_apps=max(r.max_apps for r in rules),
        max_total_cpu=_most((r.max_total_cpu for r in rules), none_wins=True),
        max_total_memory=_most((r.max_total_memory for r in rules), none_wins=True),
        idle_timeout=_most((r.idle_timeout for r in rules), none_wins=False),
        may_share=any(r.may_share for r in rules),
        may_share_links=any(r.may_share_links for r in rules),
        max_link_days=max(r.max_link_days for r in rules),
        volumes=_union_of_volumes(rules),
        # one account only if exactly one is granted (data_access refuses the start otherwise)
        service_account=(lambda names: names[0] if len(names) == 1 else None)(
            list(dict.fromkeys(r.service_account for r in rules if r.service_account))
        ),
        may_publish=any(r.may_publish for r in rules),
        # publishing: the largest a rule sets (unset: the hub's default, not "no limit")
        **{name: _most((getattr(r, name) for r in rules), none_wins=False) for name in _PUBLISH},
        # an index is no "more" than another: the first group's (file order) that names one
        package_index=next((r.package_index for r in rules if r.package_index), None),
    )


_PUBLISH = ("max_upload_size", "max_bundle_size", "max_environment_size", "build_timeout")


def _union_of_volumes(rules: list[Rule]) -> tuple[VolumeGrant, ...]:
    """Every volume of every rule, once per (claim, mount path); read-write if any grants it."""
    out: dict[tuple[str, str], VolumeGrant] = {}
    for r in rules:
        for v in r.volumes:
            key = (v.claim, v.mount_path)
            if key in out:
                v = replace(v, read_only=out[key].read_only and v.read_only)
            out[key] = v
    return tuple(out.values())


@dataclass(frozen=True)
class DataAccess:
    """What a user's apps may reach beyond their home (Kubernetes only)."""

    volumes: tuple[VolumeGrant, ...] = ()
    service_account: str | None = None
    problem: str = ""  # not empty: an app of this user must not start; says why


def data_access(policy: Policy, user_groups) -> DataAccess:
    """The volumes and service account the user's apps get: the union of the volumes their
    groups and ``defaults`` grant; the service account only when they grant exactly one."""
    mine = set(user_groups)
    granting = [(g, r) for g, r in policy.groups.items() if g in mine]
    granting.append(("defaults", policy.defaults))
    by_account: dict[str, list[str]] = {}
    for name, rule in granting:
        if rule.service_account:
            by_account.setdefault(rule.service_account, []).append(name)
    volumes = _union_of_volumes([r for _, r in granting])
    if len(by_account) > 1:
        who = "; ".join(f"{', '.join(g)}: {sa}" for sa, g in by_account.items())
        return DataAccess(
            volumes,
            None,
            f"Your groups grant different service accounts for apps ({who}), and an app "
            "runs as one. Ask an admin to give you one: one group of yours, or the same "
            "account in each (the group policy's service_account).",
        )
    return DataAccess(volumes, next(iter(by_account), None))


def kubernetes_only_grants(policy: Policy) -> list[str]:
    """Where the policy grants data access (volumes, service accounts): what the local
    spawner, which runs apps as local processes, does not apply."""
    out = []
    for key, rule in [
        *((f"groups.{g}", r) for g, r in policy.groups.items()),
        ("defaults", policy.defaults),
    ]:
        if rule.volumes:
            out.append(f"{key}.volumes")
        if rule.service_account:
            out.append(f"{key}.service_account")
    return out


def limits_for(policy: Policy, user_groups) -> Limits:
    mine = set(user_groups)
    names = tuple(g for g in policy.groups if g in mine)
    if not names:
        return Limits(policy.defaults, ())
    rules = [policy.groups[g] for g in names]
    # Groups first, so the first group's default profile wins; defaults are the floor.
    # CPU/memory totals come from the groups alone: an unset total in `defaults` means
    # "nothing to start", not "no limit".
    # So do the publishing limits a group sets (``defaults`` only fill in what none sets).
    floor = combine([*rules, policy.defaults])
    groups_only = combine(rules)
    published = {
        name: getattr(groups_only, name)
        if getattr(groups_only, name) is not None
        else getattr(policy.defaults, name)
        for name in (*_PUBLISH, "package_index")
    }
    return Limits(
        replace(
            floor,
            max_total_cpu=groups_only.max_total_cpu,
            max_total_memory=groups_only.max_total_memory,
            **published,
        ),
        names,
    )


@dataclass(frozen=True)
class RunningApp:
    name: str
    profile: str | None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    profile: Profile | None = None
    code: str = "ok"  # machine-readable: ok, no_apps, profile, workers, running, cpu, memory


def _who(limits: Limits) -> str:
    if not limits.groups:
        return "Users in no app-building group"
    if len(limits.groups) == 1:
        return limits.groups[0]
    return "Members of " + ", ".join(limits.groups)


def decide_start(
    policy: Policy,
    user_groups,
    running: list[RunningApp],
    requested_profile: str | None,
    app: str = "",
    owner: str = "",
    name_running: bool = True,
    workers: int = 1,
) -> Decision:
    """May one more app start now? ``running`` is the user's other admitted apps.

    ``owner``: the app's owner, when someone else asks for the start (an admin in the admin
    panel, a viewer waking a shared app): the reason then speaks of the owner instead of
    "you". ``name_running=False`` (a viewer) counts the owner's running apps instead of
    naming them. ``workers``: the Streamlit worker processes asked for (``max_workers``)."""
    limits = limits_for(policy, user_groups)
    rule = limits.rule
    who = _who(limits)
    if not rule.profiles or rule.max_running_apps <= 0:
        return Decision(
            False,
            f"{who} may open apps shared with them but not start apps. "
            + (
                f"{owner} would have to be in an analysts group."
                if owner
                else "Ask an admin to add you to an analysts group."
            ),
            code="no_apps",
        )
    slug = requested_profile or rule.default_profile
    if slug not in rule.profiles:
        known = policy.profiles.get(slug)
        shown = f"'{known.display_name}'" if known else f"{slug!r}"
        return Decision(
            False,
            f"{who} may use the profiles {', '.join(rule.profiles)}; {shown} is not one of them.",
            code="profile",
        )
    profile = policy.profiles[slug]
    if workers > rule.max_workers:
        n = rule.max_workers
        return Decision(
            False,
            f"{who} may run {n} worker{'s' if n != 1 else ''} per app; "
            f"{app or 'this app'} asked for {workers}. Ask for fewer workers, or ask an admin "
            "to raise max_workers.",
            code="workers",
        )
    if len(running) >= rule.max_running_apps:
        names = ", ".join(sorted(a.name for a in running))
        if not owner:
            now = f"you are running {names}. Stop one to start another."
        else:
            now = f"{owner} is running {names if name_running else len(running)} already."
        return Decision(
            False,
            f"{who} may run {rule.max_running_apps} "
            f"app{'s' if rule.max_running_apps != 1 else ''} at once; {now}",
            code="running",
        )
    used = [policy.profiles[a.profile] for a in running if a.profile in policy.profiles]
    if rule.max_total_cpu is not None and profile.cpu_limit is not None:
        total = sum(p.cpu_limit or 0 for p in used) + profile.cpu_limit
        if total > rule.max_total_cpu:
            return Decision(
                False,
                f"{who} may use {rule.max_total_cpu:g} CPUs across running apps; "
                f"starting {app or 'this app'} on {slug} would make {total:g}. "
                "Stop an app or pick a smaller profile.",
                code="cpu",
            )
    if rule.max_total_memory is not None and profile.mem_limit is not None:
        total = sum(p.mem_limit or 0 for p in used) + profile.mem_limit
        if total > rule.max_total_memory:
            return Decision(
                False,
                f"{who} may use {format_bytes(rule.max_total_memory)} of memory "
                f"across running apps; starting {app or 'this app'} on {slug} "
                f"would make {format_bytes(total)}. Stop an app or pick a "
                "smaller profile.",
                code="memory",
            )
    return Decision(True, f"{app or 'The app'} may start on {profile.display_name}.", profile)


def quota_summary(policy: Policy, user_groups, running: list[RunningApp], kept: int) -> dict:
    """The current user's effective limits and usage, as the quota endpoint returns it."""
    limits = limits_for(policy, user_groups)
    rule = limits.rule
    return {
        "groups": list(limits.groups),
        "profiles": [
            {"slug": s, "display_name": policy.profiles[s].display_name} for s in rule.profiles
        ],
        "default_profile": rule.default_profile,
        "max_running_apps": rule.max_running_apps,
        "running_apps": sorted(a.name for a in running),
        "max_apps": rule.max_apps,
        "apps": kept,
        "max_total_cpu": rule.max_total_cpu,
        "max_total_memory": rule.max_total_memory,
        "idle_timeout": rule.idle_timeout,
        "may_share": rule.may_share,
        "may_share_links": rule.may_share_links,
        "max_link_days": rule.max_link_days,
        "may_start_apps": bool(rule.profiles) and rule.max_running_apps > 0,
    }


def size_name(display_name: str) -> str:
    """A size's short name: its display name up to a colon ("Small: 1 CPU, 2 GB" -> "Small")."""
    return display_name.split(":", 1)[0].strip() or display_name


def summary_line(summary: dict) -> str:
    """The home page's line: "1 of 3 apps running; sizes: Small, Medium" (display names)."""
    if not summary["may_start_apps"]:
        return "You can open apps shared with you; you cannot start apps."
    sizes = ", ".join(size_name(p["display_name"]) for p in summary["profiles"])
    return (
        f"{len(summary['running_apps'])} of {summary['max_running_apps']} apps running; "
        f"sizes: {sizes}"
    )


# ---- CLI ----------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m spawner.policy",
        description="Check a group policy file, or ask it for a decision.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate the file; with --groups, decide one start")
    check.add_argument("policy")
    check.add_argument("--groups", default=None, help="comma-separated hub groups of the user")
    check.add_argument("--running", type=int, default=0, help="how many apps the user runs now")
    check.add_argument(
        "--running-profile",
        default=None,
        help="profile of those running apps (default: the user's default)",
    )
    check.add_argument("--profile", default=None, help="profile requested for the new app")
    args = ap.parse_args(argv)
    try:
        policy = load_policy(args.policy)
    except PolicyError as e:
        print(f"invalid: {e}", file=sys.stderr)
        return 2
    if args.groups is None:
        print(f"ok: {args.policy}: {len(policy.profiles)} profiles, {len(policy.groups)} groups")
        grants = kubernetes_only_grants(policy)
        if grants:
            print(f"note: {', '.join(grants)}: {KUBERNETES_ONLY}")
        return 0
    groups = [g for g in args.groups.split(",") if g]
    rule = limits_for(policy, groups).rule
    rp = args.running_profile or rule.default_profile
    running = [RunningApp(f"app{i + 1}", rp) for i in range(args.running)]
    d = decide_start(policy, groups, running, args.profile)
    access = data_access(policy, groups)
    if d.allowed and access.problem:
        print(f"refused: {access.problem}")
        return 1
    print(f"{'allowed' if d.allowed else 'refused'}: {d.reason}")
    if d.allowed and (access.volumes or access.service_account):
        print(f"data access ({KUBERNETES_ONLY}): {describe_data_access(access)}")
    return 0 if d.allowed else 1


KUBERNETES_ONLY = "Kubernetes only; the local spawner does not apply it"


def describe_data_access(access: DataAccess) -> str:
    parts = [
        f"{v.claim} at {v.mount_path} ({'read-only' if v.read_only else 'read-write'})"
        for v in access.volumes
    ]
    if access.service_account:
        parts.append(f"service account {access.service_account}")
    return "; ".join(parts) or "none"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
