"""``streamlit-kube``: each app is a pod, built by KubeSpawner with what differs from local.

On top of the shared mixin, this adds only:

- profiles as KubeSpawner's ``profile_list``, a callable built from the group policy (so the
  user's allowed profiles are re-read at every start), with the admitted profile selected;
- pods that meet the Kubernetes "restricted" Pod Security Standard: non-root uid/gid,
  no privilege escalation, every capability dropped, seccomp RuntimeDefault, read-only root
  filesystem with emptyDir scratch for /tmp;
- labels and annotations naming the owner, app and profile (KubeSpawner's safe slugs);
- one home PVC per user (not per app), mounted at ``home_mount``; deleting an app keeps it;
- app sources besides the home: ``git`` (an init container clones the repository at a pinned
  commit into an emptyDir at ``/app``; hosts from the policy's ``sources.git_hosts``) and
  ``image`` (a prebuilt app image; registries from ``sources.image_prefixes``);
- the app's secrets its owner set through the hub (``spawner/app_secrets.py``, read from the
  hub's store at each start, so a change needs a restart): in the app's credentials Secret
  (below) under keys ``app-secret.<NAME>``, each an env entry with ``secretKeyRef``. One
  Secret, not a second ``<pod>-secrets``: both hold what this one pod may read and live
  exactly as long, so one object is made before the pod and deleted at stop. A Secret made by
  hand, ``app-secrets-<owner>-<app>``, is still read (``envFrom``, if it exists); on a name
  both hold the hub's wins (``env`` beats ``envFrom``). No value is ever a literal in the pod;
- **no credential in the pod spec**: the app server's hub API token (JupyterHub hands it over
  in ``get_env()``) and any other credential-like literal in any container's env (by name, see
  ``CREDENTIAL_NAME``, or by value: the token) move into a per-app Secret
  (``<pod name>-credentials``, immutable) and the env refers to it (``secretKeyRef``). The
  Secret is created (or replaced) right before each attempt to create the pod, so a pod never
  waits for it, and deleted when the app stops (also when KubeSpawner stops a conflicting pod
  in between, or a start fails). It cannot be owned by the pod (ownerReferences need the pod's
  uid, so the Secret would have to be patched after the pod exists, and the chart's Role for
  the hub grants secrets get/list/watch/create/delete, not patch/update). One left behind by a
  hub that died mid-start holds a token the hub revokes when it stops that server. The
  deprecated ``JPY_API_TOKEN`` copy is not set at all. Its data is never logged;
- **data access from the group policy** (``policy.data_access``): existing PVCs granted to the
  user's groups mounted at their paths (read-only unless granted read-write), and the
  Kubernetes service account the groups grant (for Workload Identity on GKE, IRSA on EKS),
  with its token mounted only then; the pod is labelled ``streamlit-hub.io/service-account``
  so a network policy can let exactly those pods reach the cloud's identity endpoint. Groups
  that grant different service accounts refuse the start, naming them.

The pod is KubeSpawner's, built from this spawner's settings as configured (never changed
around the call); ``get_pod_manifest`` then makes the returned pod this app's: security
contexts, own volumes, the app's source and secrets, labels.

What this spawner owns over blanket configuration. The Zero to JupyterHub chart's hub
configuration (``files/hub/jupyterhub_config.py``) sets many KubeSpawner traits from its values
unconditionally, and configuration beats a subclass's ``@default``. Where that would undo what
an app pod is, the spawner's own settings win, in these documented ways:

- **command**: the app server runs ``app_command`` (``spawner/command.py``): a configured
  ``cmd`` (the chart sets ``singleuser.cmd``, ``jupyterhub-singleuser`` by default; our values
  say ``null``) is replaced, with a warning unless it is null or the same;
- **profiles**: with a group policy, ``profile_list`` is always the policy's (the chart sets
  ``singleuser.profileList``, ``[]`` by default); a non-empty configured list is ignored with
  a warning;
- **volumes**: the home PVC (``home``) and the ``/tmp`` emptyDir (``scratch``) are always in
  the pod, first; configured ``volumes``/``volume_mounts`` (the chart sets ``{}`` with
  ``storage.type: none``, or its own volumes; ``extra_pod_config`` volumes too) come after
  them, except ones reusing their names or mount paths, which are dropped with a warning;
- **resources**: a profile sets the pod's CPU and memory completely: what it leaves out is
  unset, not the configured default (the chart's ``singleuser.memory.guarantee`` is ``1G``).

- **security**: the restricted keys of the pod's and the app container's security contexts,
  built from ``uid``, ``gid`` and ``fs_gid`` (else ``gid``), always win over what is configured
  (``pod_security_context``, ``container_security_context``, ``allow_privilege_escalation``,
  ``extra_pod_config``, ``extra_container_config``); ``privileged`` is dropped; other keys
  configured (``supplementalGroups``, ``seLinuxOptions``, ...) are kept;
- **app secrets**: the ``envFrom`` of the app's Secret comes after any configured one;
- **service account** (with a group policy): ``serviceAccountName`` is the one the policy
  grants, or none (the namespace's ``default``), and ``automountServiceAccountToken`` is true
  only with a grant; a configured ``service_account`` (the chart's
  ``singleuser.serviceAccountName``), ``automount_service_account_token`` or the same keys in
  ``extra_pod_config`` are ignored, with a warning for the first two;
- **data volumes** (with a group policy): the granted PVCs are the pod's own too (after home
  and scratch), so a configured volume with their names or mount paths is dropped.

``uid``, ``gid`` and ``fs_gid`` default to the app image's user (1000) and are honoured when
configured. ``helm-values/`` leaves ``singleuser.uid``/``fsGid`` (and ``cmd``) null, so that the
chart's own defaults (1000 and 100) do not replace the spawner's:
``CHART_VALUES_LEFT_TO_THE_SPAWNER`` lists them and tests/unit/test_values_agree.py fails if the
values set one. Everything else the chart sets is honoured (image, pull policy, labels,
scheduler, priority class, start timeout): tests/unit/test_chart_hub_config.py checks that those
agree with the pod this spawner means.

Entry paths are checked for shape here (the home is on a volume the hub does not mount); the
app server refuses a missing file when it starts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import posixpath
import re
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

from jupyterhub.utils import exponential_backoff, maybe_future
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.models import (
    V1Container,
    V1EnvFromSource,
    V1EnvVarSource,
    V1ObjectMeta,
    V1Secret,
    V1SecretEnvSource,
    V1SecretKeySelector,
    V1Volume,
    V1VolumeMount,
)
from kubespawner import KubeSpawner
from kubespawner.slugs import safe_slug
from kubespawner.utils import get_k8s_model
from traitlets import Bool, Float, List, Unicode, default

from .app_secrets import refer_to_secrets, secrets_for_start
from .command import AppServerCommand
from .mixin import StreamlitSpawnerMixin
from .names import EntryPathError, default_entry, entry_path_shape_problem
from .options import AppSource
from .policy import (
    DataAccess,
    Sources,
    cached_policy,
    data_access,
    format_bytes,
    mount_path_problem,
)

LABEL_PREFIX = "streamlit-hub.io"
# A profile is the whole machine size: these are reset for every start with a profile.
RESOURCE_TRAITS = ("cpu_guarantee", "cpu_limit", "mem_guarantee", "mem_limit")
HOME_VOLUME, SCRATCH_VOLUME, SOURCE_VOLUME = "home", "scratch", "app-source"
# A published version's files, extracted by the app server (on the scratch volume at /tmp).
BUNDLE_DIR = "/tmp/streamlit-hub-bundle"
# Values of the chart (``singleuser.<key>``) that would set a trait whose value is this
# spawner's: the chart's hub configuration sets each one it finds not null, and configuration
# beats a subclass's @default, so helm-values/ leaves them null (tests/unit/test_values_agree.py).
CHART_VALUES_LEFT_TO_THE_SPAWNER = {"cmd": "cmd", "uid": "uid", "fsGid": "fs_gid"}
# An env variable whose name says it holds a credential: its literal value never stays in the
# pod spec (``move_credentials``). JUPYTERHUB_API_TOKEN is one; JUPYTERHUB_SSL_KEYFILE (a
# path) and JUPYTERHUB_CLIENT_ID (public) are not.
CREDENTIAL_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE|CREDENTIAL|CRYPT|API_?KEY|ACCESS_?KEY|(^|_)KEY$"
    r"|DB_URL|DATABASE_URL|DSN$",
    re.IGNORECASE,
)
# a URL with a user name and password (or token) in it: https://user:secret@host/...
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/@\s]+@", re.IGNORECASE)
CREDENTIALS_LABEL = f"{LABEL_PREFIX}/credentials"
SERVICE_ACCOUNT_LABEL = f"{LABEL_PREFIX}/service-account"
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def move_credentials(pod, secret_name: str, token: str = "") -> dict[str, str]:
    """Replace every credential in the env of the pod's containers (init, app, extra) by a
    ``secretKeyRef`` to ``secret_name``; return the Secret's data (key: value).

    A credential is a literal value whose variable's name says so (``CREDENTIAL_NAME``), that
    contains ``token``, or that is a URL with credentials in it (``URL_CREDENTIALS``). Env items may be models (what KubeSpawner builds) or dicts (what
    configuration such as ``extra_container_config`` or ``init_containers`` leaves)."""
    data: dict[str, str] = {}
    spec = pod.spec
    for c in [*(spec.init_containers or []), *(spec.containers or [])]:
        for e in (c.get("env") if isinstance(c, dict) else c.env) or []:
            name = e.get("name") if isinstance(e, dict) else e.name
            value = e.get("value") if isinstance(e, dict) else e.value
            if value is None or not isinstance(value, str):
                continue
            if not (
                CREDENTIAL_NAME.search(name or "")
                or (len(token) >= 8 and token in value)
                or URL_CREDENTIALS.search(value)
            ):
                continue
            key = (
                name if _SECRET_KEY.fullmatch(name or "") else re.sub(r"[^-._a-zA-Z0-9]", "_", name)
            )
            base, n = key, 2
            while key in data and data[key] != value:
                key, n = f"{base}-{n}", n + 1
            data[key] = value
            ref = {"name": secret_name, "key": key}
            if isinstance(e, dict):
                e.pop("value", None)
                e["valueFrom"] = {"secretKeyRef": ref}
            else:
                e.value = None
                e.value_from = V1EnvVarSource(secret_key_ref=V1SecretKeySelector(**ref))
    return data


def data_volume_name(claim: str) -> str:
    """The pod's name for a granted PVC: ``data-<claim>`` when that is a DNS label."""
    name = f"data-{claim}"
    if len(name) <= 63 and "." not in claim:
        return name
    digest = hashlib.sha256(claim.encode()).hexdigest()[:8]
    return f"data-{claim[:40].replace('.', '-').rstrip('-')}-{digest}"


def profile_overrides(profile) -> dict:
    """KubeSpawner attributes for one policy profile (pure)."""
    o: dict = {}
    if profile.cpu_guarantee is not None:
        o["cpu_guarantee"] = float(profile.cpu_guarantee)
    if profile.cpu_limit is not None:
        o["cpu_limit"] = float(profile.cpu_limit)
    if profile.mem_guarantee is not None:
        o["mem_guarantee"] = format_bytes(profile.mem_guarantee)
    if profile.mem_limit is not None:
        o["mem_limit"] = format_bytes(profile.mem_limit)
    if profile.gpu:
        o["extra_resource_limits"] = {"nvidia.com/gpu": str(profile.gpu)}
    if profile.node_selector:
        o["node_selector"] = dict(profile.node_selector)
    if profile.tolerations:
        o["tolerations"] = list(profile.tolerations)
    if profile.image:
        o["image"] = profile.image
    return o


def restricted_pod_security_context(uid: int, gid: int) -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_security_context(uid: int, gid: int) -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


class StreamlitKubeSpawner(AppServerCommand, StreamlitSpawnerMixin, KubeSpawner):
    home_mount = Unicode(
        "/home/analyst", config=True, help="Where the user's home PVC is mounted in app pods."
    )
    # A published version's environment is built in its pod (app_server/published.py); the
    # hub configuration passes its settings on (StreamlitHub.package_* / build_timeout).
    package_index = Unicode(
        "", config=True, help="The package index app pods build environments from; empty: PyPI."
    )
    package_find_links = List(
        Unicode(), config=True, help="Wheel folders or URLs app pods' builds may also use."
    )
    package_offline = Bool(
        False, config=True, help="App pods build from package_find_links only, never an index."
    )
    build_timeout = Float(600.0, config=True, help="Seconds an app pod's build may take.")

    @default("app_command")
    def _default_app_command(self):
        return ["python", "-m", "spawner.app_server"]  # the app image's Python

    # ---- profiles from the policy ---------------------------------------------------------
    @default("profile_list")
    def _default_profile_list(self):
        return self._policy_profile_list

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        configured = self.profile_list
        if (
            self.policy_file
            and getattr(configured, "__func__", None)
            is not StreamlitKubeSpawner._policy_profile_list
        ):
            # Configuration (the chart's singleuser.profileList) beat the @default above.
            if configured:
                self.log.warning(
                    "KubeSpawner.profile_list is configured but ignored: profiles "
                    "come from the group policy (%s)",
                    self.policy_file,
                )
            self.profile_list = self._policy_profile_list
        if self.policy_file:
            for trait in ("service_account", "automount_service_account_token"):
                if getattr(self, trait) is not None:
                    self.log.warning(
                        "KubeSpawner.%s is configured but ignored: app pods get the "
                        "service account the group policy grants their owner's groups (%s)",
                        trait,
                        self.policy_file,
                    )

    def _policy_profile_list(self, spawner=None) -> list[dict]:
        """KubeSpawner's profile_list: the options form's choices (``profile_choices``: the
        profiles this user may use, default first), each with its KubeSpawner overrides."""
        if not self.policy_file:
            return []
        choices = self.profile_choices()
        profiles = cached_policy(self.policy_file).profiles
        return [
            {
                "slug": slug,
                "display_name": display_name,
                "default": i == 0,
                # unset in the profile = unset in the pod, whatever else configured a default
                "kubespawner_override": {
                    **dict.fromkeys(RESOURCE_TRAITS),
                    **profile_overrides(profiles[slug]),
                },
            }
            for i, (slug, display_name) in enumerate(choices)
            if slug in profiles  # (the file may have changed in between)
        ]

    async def load_user_options(self):
        # The policy admitted a profile (mixin.admit); KubeSpawner re-reads the callable
        # profile_list, checks that profile is still in it, and applies its overrides.
        if self.app_profile:
            self.user_options = {**(self.user_options or {}), "profile": self.app_profile}
        self.app_data_access = self.resolve_data_access()
        await super().load_user_options()

    # ---- data access from the group policy ---------------------------------------------------
    app_data_access: DataAccess = DataAccess()  # this start's, set by load_user_options

    def resolve_data_access(self) -> DataAccess:
        """The volumes and service account the group policy grants this user's apps; refuses
        the start when the user's groups grant different service accounts, or a volume where
        the pod has its own (a configured ``home_mount``)."""
        if not self.policy_file:
            return DataAccess()
        from .policy import group_names

        access = data_access(cached_policy(self.policy_file), group_names(self.user))
        if access.problem:
            self.refuse(access.problem, reason="quota_data_access", status=403)
        for v in access.volumes:
            problem = mount_path_problem(v.mount_path, (self.home_mount, "/tmp", "/app"))
            if problem:
                self.refuse(
                    f"The group policy mounts the volume {v.claim} at {v.mount_path}, which "
                    f"cannot be: {problem}. Ask an admin to move it (volumes.mount_path).",
                    reason="data_access",
                    status=500,
                )
        return access

    # ---- what differs from a local process ------------------------------------------------
    def workers_bound(self, profile):
        """A pod's workers share its CPU limit: at most one per whole CPU (1 when unset)."""
        cpus = profile.cpu_limit if profile is not None else self.cpu_limit
        most = max(1, int(cpus)) if cpus else 1
        where = f"the profile {profile.slug!r}" if profile is not None else "this hub's app pods"
        cpu = f"{cpus:g} CPU{'s' if cpus != 1 else ''}" if cpus else "no CPU limit"
        return most, f"{where} has {cpu}, so at most {most} worker{'s' if most != 1 else ''}"

    def app_homes(self):
        return []  # the home is on a PVC the hub does not mount: the form offers a path field

    # ---- progress: our steps with the pod's own events in between --------------------------
    async def progress(self):
        """The start's steps (validate, start, wait for the app) and, while the pod comes up,
        its Kubernetes events as KubeSpawner reports them (scheduled, pulling, pulled,
        started). Pod events sit between our 30 % and 60 % and the bar never moves back."""
        queue: asyncio.Queue = asyncio.Queue()
        done = object()

        async def pump(gen, pod_events: bool):
            try:
                async for event in gen:
                    await queue.put((pod_events, event))
            finally:
                await queue.put((pod_events, done))

        tasks = [
            asyncio.ensure_future(pump(StreamlitSpawnerMixin.progress(self), False)),
            asyncio.ensure_future(pump(KubeSpawner.progress(self), True)),
        ]
        finished, shown = 0, 0
        try:
            while finished < len(tasks):
                pod_events, event = await queue.get()
                if event is done:
                    finished += 1
                    continue
                out = {"message": event.get("message", "")}
                if "progress" in event:
                    value = event["progress"]
                    if pod_events:  # KubeSpawner's 0-90 % scale, squeezed into 30-60 %
                        value = 30 + int(value * 30 / 90)
                    shown = max(shown, int(value))
                    out["progress"] = shown
                yield out
        finally:
            for t in tasks:
                t.cancel()

    # ---- where the app's code comes from ----------------------------------------------------
    app_source: AppSource = AppSource()  # this start's, set by resolve_app_entry

    def _sources(self) -> Sources:
        return cached_policy(self.policy_file).sources if self.policy_file else Sources()

    def resolve_app_entry(self, options):
        self.app_source = AppSource()
        self.app_version = None
        if options.source == "version":
            return self._published_entry(options)
        default = default_entry(self.name) if options.source == "home" else "app.py"
        path = options.path or default
        problem = entry_path_shape_problem(path)
        if problem:
            raise EntryPathError(problem)
        if options.source == "home":
            return posixpath.join(self.home_mount, path)
        sources = self._sources()
        if options.source == "git":
            host = urlsplit(options.repo).netloc.lower()
            if host not in sources.git_hosts:
                allowed = ", ".join(sources.git_hosts) or "none"
                self.refuse(
                    f"Apps may not be cloned from {host}: the group policy allows git "
                    f"hosts {allowed}. Ask an admin to add it to sources.git_hosts.",
                    reason="source",
                    status=403,
                )
            self.app_source = AppSource(
                "git", repo=options.repo, ref=options.ref, git_image=sources.git_image
            )
        else:
            if not any(options.image.startswith(p) for p in sources.image_prefixes):
                allowed = ", ".join(sources.image_prefixes) or "none"
                self.refuse(
                    f"The image {options.image} is not from a registry the group policy "
                    f"allows ({allowed}). Ask an admin to add it to sources.image_prefixes.",
                    reason="source",
                    status=403,
                )
            self.app_source = AppSource("image", image=options.image)
        return posixpath.join("/app", path)

    def _published_entry(self, options) -> str:
        """A published version: the app server fetches its bundle from the hub and extracts
        it into ``BUNDLE_DIR`` on the scratch volume (``app_server/published.py``)."""
        from .publishing import check_run
        from .versions import VersionError

        if not self.publish_dir:
            raise EntryPathError('This hub has publishing turned off: use source "home".')
        try:
            version = check_run(self.publish_dir, self.user.name, self.name, options.version)
        except VersionError as e:
            raise EntryPathError(str(e)) from None
        self.app_source = AppSource("version", digest=version.digest)
        self.app_version = version.id
        return posixpath.join(BUNDLE_DIR, version.entry)

    def _published_env(self) -> dict[str, str]:
        """What the app server needs to fetch the bundle and build its environment; the
        index is the owner's groups' (``package_index``), else the hub's."""
        from .policy import group_names, limits_for
        from .publishing import PublishLimits

        env = {
            "STREAMLIT_HUB_BUNDLE_DIGEST": self.app_source.digest or "",
            "STREAMLIT_HUB_BUNDLE_DIR": BUNDLE_DIR,
            "STREAMLIT_HUB_BUILD_TIMEOUT": str(self.build_timeout),
        }
        index = self.package_index
        if self.policy_file:
            rule = limits_for(cached_policy(self.policy_file), group_names(self.user)).rule
            limits = PublishLimits.of(rule)
            index = limits.package_index or index
            if limits.build_timeout:
                env["STREAMLIT_HUB_BUILD_TIMEOUT"] = str(limits.build_timeout)
        if index:
            env["STREAMLIT_HUB_PACKAGE_INDEX"] = index  # credentials in it: moved to the Secret
        if self.package_find_links:
            env["STREAMLIT_HUB_FIND_LINKS"] = ",".join(self.package_find_links)
        if self.package_offline:
            env["STREAMLIT_HUB_PACKAGE_OFFLINE"] = "true"
        return env

    def app_secret_name(self) -> str:
        """The Secret whose keys become the app's environment (optional: it may not exist)."""
        return f"app-secrets-{safe_slug(self.user.name)}-{safe_slug(self.name or 'default')}"[:253]

    def git_clone_container(self, source: AppSource, uid, gid) -> V1Container:
        """The init container that clones a ``git`` source's pinned commit into ``/app``."""
        return get_k8s_model(
            V1Container,
            {
                "name": "git-clone",
                "image": source.git_image,
                # repo and ref come in through the environment, never into the shell text
                "command": [
                    "sh",
                    "-c",
                    'git clone --quiet --no-checkout -- "$REPO" /app/src '
                    '&& git -C /app/src checkout --quiet --detach "$REF" '
                    "&& cp -a /app/src/. /app/ && rm -rf /app/src /app/.git",
                ],
                "env": [
                    {"name": "REPO", "value": source.repo},
                    {"name": "REF", "value": source.ref},
                    {"name": "HOME", "value": "/tmp"},
                ],
                "securityContext": restricted_container_security_context(uid, gid),
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "1", "memory": "512Mi"},
                },
                "volumeMounts": [
                    {"name": SOURCE_VOLUME, "mountPath": "/app"},
                    {"name": SCRATCH_VOLUME, "mountPath": "/tmp"},
                ],
            },
        )

    # ---- identity and security ---------------------------------------------------------------
    @default("uid")
    def _default_uid(self):
        return 1000

    @default("gid")
    def _default_gid(self):
        return 1000

    @default("fs_gid")
    def _default_fs_gid(self):
        return 1000

    async def _resolved(self, trait: str):
        """``uid``, ``gid`` or ``fs_gid`` as KubeSpawner resolves them (each may be a callable)."""
        value = getattr(self, trait)
        return await maybe_future(value(self)) if callable(value) else value

    @default("pvc_name_template")
    def _default_pvc_name_template(self):
        return "home-{username}"  # one home per user, shared by all their apps

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    @default("storage_capacity")
    def _default_storage_capacity(self):
        return "10Gi"

    # ``volumes`` / ``volume_mounts`` (KubeSpawner's, default empty) are only what is
    # configured in addition: the pod's own two are always there (see the module docstring).
    def own_volumes(self) -> list[dict]:
        claims: dict[str, bool] = {}  # claim -> read-only everywhere it is mounted
        for v in self.app_data_access.volumes:
            claims[v.claim] = claims.get(v.claim, True) and v.read_only
        return [
            {"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
            {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}},
            *(
                {
                    "name": data_volume_name(claim),
                    "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only},
                }
                for claim, read_only in claims.items()
            ),
        ]

    def own_volume_mounts(self) -> list[dict]:
        return [
            {"name": HOME_VOLUME, "mountPath": self.home_mount},
            {"name": SCRATCH_VOLUME, "mountPath": "/tmp"},
            *(
                {
                    "name": data_volume_name(v.claim),
                    "mountPath": v.mount_path,
                    "readOnly": v.read_only,
                }
                for v in self.app_data_access.volumes
            ),
        ]

    def pod_volumes(self, volumes: list, mounts: list) -> tuple[list, list]:
        """The pod's volumes and the app container's mounts: the spawner's own first, then
        ``volumes``/``mounts`` (those KubeSpawner put in the pod: configured ones, expanded)
        that do not take their names or mount paths (dropped, with a warning)."""

        def field(obj, key, attr):  # a kubernetes model object, or a dict (extra_pod_config)
            return obj.get(key) if isinstance(obj, dict) else getattr(obj, attr, None)

        own = [get_k8s_model(V1Volume, v) for v in self._expand_all(self.own_volumes())]
        own_mounts = [
            get_k8s_model(V1VolumeMount, m) for m in self._expand_all(self.own_volume_mounts())
        ]
        names = {v.name for v in own}
        paths = {m.mount_path.rstrip("/") for m in own_mounts}
        out, out_mounts = list(own), list(own_mounts)
        for v in volumes:
            if field(v, "name", "name") in names:
                self.log.warning(
                    "volume %r is configured but the pod has its own: ignored",
                    field(v, "name", "name"),
                )
            else:
                out.append(v)
        for m in mounts:
            name, path = field(m, "name", "name"), field(m, "mountPath", "mount_path") or ""
            if name in names or path.rstrip("/") in paths:
                self.log.warning(
                    "volume mount %r at %s is configured but the pod has its own there: ignored",
                    name,
                    path,
                )
            else:
                out_mounts.append(m)
        return out, out_mounts

    def get_env(self):
        env = super().get_env()
        # JupyterHub's deprecated second copy of the API token (for singleuser servers older
        # than 0.7.2): the app server reads JUPYTERHUB_API_TOKEN only, from the Secret.
        env.pop("JPY_API_TOKEN", None)
        env["HOME"] = self.home_mount
        if self.app_source.kind == "image":  # KubeSpawner names self.image
            env["JUPYTER_IMAGE"] = env["JUPYTER_IMAGE_SPEC"] = self.app_source.image
        if self.app_source.kind == "version":
            env.update(self._published_env())
        return env

    async def get_pod_manifest(self):
        """KubeSpawner's pod for this spawner as configured, made this app's pod."""
        pod = await super().get_pod_manifest()
        uid, gid, fs_gid = [await self._resolved(t) for t in ("uid", "gid", "fs_gid")]
        spec, main = pod.spec, pod.spec.containers[0]  # extra_containers come after it

        spec.security_context = {
            **(spec.security_context or {}),
            **restricted_pod_security_context(uid, gid),
            **({"fsGroup": fs_gid} if isinstance(fs_gid, int) else {}),
        }
        main.security_context = {
            k: v
            for k, v in {
                **(main.security_context or {}),
                **restricted_container_security_context(uid, gid),
            }.items()
            if k != "privileged"
        }

        volumes, mounts = self.pod_volumes(spec.volumes or [], main.volume_mounts or [])
        source = self.app_source
        if source.kind == "image":
            main.image = source.image
        elif source.kind == "git":
            volumes.append(
                get_k8s_model(V1Volume, {"name": SOURCE_VOLUME, "emptyDir": {"sizeLimit": "2Gi"}})
            )
            mounts.append(V1VolumeMount(name=SOURCE_VOLUME, mount_path="/app", read_only=True))
            spec.init_containers = [
                *(spec.init_containers or []),
                self.git_clone_container(source, uid, gid),
            ]
        spec.volumes, main.volume_mounts = volumes, mounts
        main.env_from = [
            *(main.env_from or []),
            V1EnvFromSource(
                secret_ref=V1SecretEnvSource(name=self.app_secret_name(), optional=True)
            ),
        ]

        labels = {
            f"{LABEL_PREFIX}/owner": safe_slug(self.user.name),
            f"{LABEL_PREFIX}/app": safe_slug(self.name or "default"),
        }
        if self.app_profile:
            labels[f"{LABEL_PREFIX}/profile"] = safe_slug(self.app_profile)
        if self.policy_file:  # the identity is the policy's: see the module docstring
            account = self.app_data_access.service_account
            spec.service_account_name = account  # None: the namespace's default account
            spec.service_account = None  # (deprecated alias, e.g. from extra_pod_config)
            spec.automount_service_account_token = bool(account)
            if account:
                labels[SERVICE_ACCOUNT_LABEL] = account
        pod.metadata.labels.update(labels)
        pod.metadata.annotations = {
            **(pod.metadata.annotations or {}),
            f"{LABEL_PREFIX}/owner": self.user.name,
            f"{LABEL_PREFIX}/app": self.name,
            f"{LABEL_PREFIX}/profile": self.app_profile or "",
            f"{LABEL_PREFIX}/source": source.kind,
        }
        # the owner's app secrets (spawner/app_secrets.py): in the same Secret, by reference
        app_secrets = refer_to_secrets(
            main, self.credentials_secret_name(), secrets_for_start(self)
        )
        self._app_credentials = {
            **move_credentials(pod, self.credentials_secret_name(), self.api_token or ""),
            **app_secrets,
        }
        return pod

    # ---- the per-app Secret that holds the pod's credentials ---------------------------------
    # this start's (set by get_pod_manifest and each attempt to create the pod; never mutated)
    _app_credentials: Mapping[str, str] = MappingProxyType({})

    def credentials_secret_name(self) -> str:
        return f"{self.pod_name}-credentials"

    def credentials_secret_manifest(self) -> V1Secret:
        labels = {
            **self._build_common_labels({}),
            "hub.jupyter.org/servername": safe_slug(self.name or "default"),
            f"{LABEL_PREFIX}/owner": safe_slug(self.user.name),
            f"{LABEL_PREFIX}/app": safe_slug(self.name or "default"),
            CREDENTIALS_LABEL: "app-server",
        }
        return V1Secret(
            api_version="v1",
            kind="Secret",
            metadata=V1ObjectMeta(
                name=self.credentials_secret_name(),
                labels=labels,
                annotations={f"{LABEL_PREFIX}/pod": self.pod_name},
            ),
            type="Opaque",
            immutable=True,
            data={
                k: base64.b64encode(v.encode()).decode() for k, v in self._app_credentials.items()
            },
        )

    async def make_credentials_secret(self) -> None:
        """Create the Secret the pod's env refers to, replacing one left from an earlier start
        (it would hold an old token). Errors name the Secret, never its data."""
        name = self.credentials_secret_name()
        manifest = self.credentials_secret_manifest()

        async def create():
            try:
                await asyncio.wait_for(
                    self.api.create_namespaced_secret(self.namespace, manifest),
                    self.k8s_api_request_timeout,
                )
                return True
            except TimeoutError:
                return False
            except ApiException as e:
                if e.status == 409:  # an earlier start's: replace it
                    self.log.info("Replacing Secret %s/%s", self.namespace, name)
                    await self.delete_credentials_secret()
                    return False
                raise RuntimeError(  # no chained ApiException: it carries the request
                    f"Could not create the Secret {self.namespace}/{name} for the app's "
                    f"credentials: {e.status} {e.reason} (the hub's service account needs "
                    "create and delete on secrets)"
                ) from None

        self.log.info("Creating Secret %s/%s (the app's credentials)", self.namespace, name)
        await exponential_backoff(
            create,
            f"Could not create Secret {self.namespace}/{name}",
            timeout=self.k8s_api_request_retry_timeout,
        )

    async def delete_credentials_secret(self) -> None:
        """Delete the app's credentials Secret (gone already: nothing to do). Never raises: a
        stop goes on (the hub revokes the token it holds anyway); a failure is logged."""
        name = self.credentials_secret_name()

        async def delete():
            try:
                await asyncio.wait_for(
                    self.api.delete_namespaced_secret(name, self.namespace),
                    self.k8s_api_request_timeout,
                )
                self.log.info("Deleted Secret %s/%s", self.namespace, name)
            except TimeoutError:
                return False
            except ApiException as e:
                if e.status != 404:
                    self.log.warning(
                        "Could not delete Secret %s/%s: %s %s",
                        self.namespace,
                        name,
                        e.status,
                        e.reason,
                    )
            return True

        try:
            await exponential_backoff(
                delete,
                f"Could not delete Secret {self.namespace}/{name}",
                timeout=self.k8s_api_request_retry_timeout,
            )
        except Exception as e:  # (a timeout, the API out of reach)
            self.log.warning("Could not delete Secret %s/%s: %r", self.namespace, name, e)

    async def _make_create_pod_request(self, pod, request_timeout):
        # KubeSpawner 7.1 calls this for each attempt to create the pod (after its
        # modify_pod_hook), and calls stop() in between when a pod of that name is in the way:
        # so the Secret is made here, right before each attempt, from everything the pod
        # about to be created would otherwise carry as a literal.
        self._app_credentials = {
            **self._app_credentials,
            **move_credentials(pod, self.credentials_secret_name(), self.api_token or ""),
        }
        await self.make_credentials_secret()
        return await super()._make_create_pod_request(pod, request_timeout)

    async def stop(self, now=False):
        try:
            return await super().stop(now=now)
        finally:
            await self.delete_credentials_secret()
