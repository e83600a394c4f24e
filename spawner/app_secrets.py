"""App secrets (#16 point 5): environment variables an app's owner sets for one app, whose
values nobody reads back. One store, on the hub's side, for both spawners.

- **Rules** (pure): a name is an environment variable name (``[A-Za-z_][A-Za-z0-9_]*``, at
  most ``MAX_NAME`` characters) that the platform does not set or read itself
  (``RESERVED_PREFIXES``, ``RESERVED_NAMES``: JupyterHub's and the app server's variables,
  Streamlit's configuration, Python's, the dynamic loader's, the ones JupyterHub and
  Kubernetes set); a value is non-empty text of at most ``MAX_VALUE_BYTES`` (UTF-8) with no
  NUL; an app has at most ``MAX_SECRETS`` secrets and ``MAX_TOTAL_BYTES`` in all (in local
  mode they travel with the app server's token through one pipe). A refusal is a sentence
  that never holds a value.
- **Store** (:class:`AppSecretStore`): one JSON file per app, ``<data_dir>/app-secrets/
  <owner>/<app>.json`` (folders 0700, files 0600, written whole and atomically), holding each
  secret's name, when it was set and by whom, and its value encrypted with Fernet. The key is
  JupyterHub's own (``CryptKeeper.keys``: ``JUPYTERHUB_CRYPT_KEY``, on Kubernetes the chart's
  generated key) when it is set, else one of the hub's own, ``app-secrets/hub.key`` (0600),
  made once. Each is stretched with HKDF for this use alone, so nothing encrypted here can be
  passed off as JupyterHub's auth state or the reverse. Decryption tries every key
  (MultiFernet), so setting ``JUPYTERHUB_CRYPT_KEY`` later keeps older secrets readable, and
  the next change to an app's secrets re-encrypts them all with the newest key. Each
  ciphertext names its owner, app and secret: a value moved into another app's file is
  refused, never delivered there.
- **Delivery** (``secrets_for_start``): what a starting app gets, read once per start; a
  secret the hub's keys cannot decrypt refuses the start. The local spawner sends them with
  the app server's token through its inherited pipe (``pipe_payload``; the app server puts
  them into its environment before Streamlit starts: ``app_server/settings.py``);
  streamlit-kube puts them in the app's credentials Secret and refers to them from the pod
  (``refer_to_secrets``). A change reaches an app at its next start.

The hub API and the home page's section are ``spawner/app_secrets_api.py``. Nothing here logs
a value, and no refusal holds one.

Limits, said plainly: one analyst's apps share one Unix account and home, so one can rewrite
another's code, which then runs with that app's secrets; and in the app server's first
milliseconds, before it is non-dumpable, a process of the same account racing for it could
take the pipe (as it could the token). When apps run as the hub's own user they can read the
store and the key: trusted apps only, as the hub says.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from .utc import iso_z

MAX_NAME = 128
MAX_VALUE_BYTES = 16 * 1024
MAX_SECRETS = 50
# names and values of one app together: with the token, well inside one pipe buffer (64 KiB)
MAX_TOTAL_BYTES = 48 * 1024
RESERVED_PREFIXES = (
    "JUPYTERHUB_",  # JupyterHub's, the app server's token and URLs
    "JUPYTER_",  # JUPYTER_IMAGE, JUPYTER_IMAGE_SPEC (KubeSpawner)
    "JPY_",
    "STREAMLIT_",  # STREAMLIT_HUB_* (the platform) and Streamlit's own configuration
    "PYTHON",  # PYTHONPATH, PYTHONHOME, PYTHONSTARTUP, PYTHON_GIL, ...
    "LD_",  # the dynamic loader (LD_PRELOAD, LD_LIBRARY_PATH)
    "KUBERNETES_",  # the service variables Kubernetes gives every pod
)
RESERVED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "PWD",
        "MEM_LIMIT",  # set by JupyterHub's spawners from the profile
        "MEM_GUARANTEE",
        "CPU_LIMIT",
        "CPU_GUARANTEE",
    }
)
FOLDER = "app-secrets"  # under the hub's data dir
KEY_FILE = "hub.key"
HKDF_INFO = b"jupyterhub-streamlit app secrets v1"
SECRET_KEY_PREFIX = "app-secret."  # their keys in the app's credentials Secret (Kubernetes)
PIPE_SEPARATOR = b"\0"  # token, then NAME=value items (the /proc/<pid>/environ format)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretError(ValueError):
    """Refused or unreadable: ``str(e)`` is a sentence for the owner, never holding a value;
    ``status`` the HTTP status the hub API answers with."""

    status = 400


class NoSuchSecret(SecretError):
    status = 404


class StoreError(SecretError):
    """The store itself cannot be used (a damaged file, an unusable key): an admin's matter."""

    status = 500


def _shown(name: object) -> str:
    """A name as a refusal may quote it: printable, at most 40 characters."""
    text = "".join(c if c.isprintable() else "?" for c in str(name))
    return text if len(text) <= 40 else text[:40] + "…"


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a secret, or None."""
    if not isinstance(name, str) or not name:
        return "A secret needs a name, e.g. DB_PASSWORD."
    shown = _shown(name)
    if len(name) > MAX_NAME:
        return f"The secret name “{shown}” is too long: at most {MAX_NAME} characters."
    if not _NAME.fullmatch(name):
        return (
            f"“{shown}” is not an environment variable name: use letters, digits and _, "
            "not starting with a digit (e.g. DB_PASSWORD)."
        )
    upper = name.upper()
    if upper in RESERVED_NAMES or upper.startswith(RESERVED_PREFIXES):
        return (
            f"{name} is reserved: the hub, the app server, Streamlit or Python set or read "
            "it. Choose another name."
        )
    return None


def value_problem(value: object) -> str | None:
    """Why ``value`` cannot be a secret's value, or None (never quoting it)."""
    if not isinstance(value, str):
        return 'The value must be text: send {"value": "..."}.'
    if not value:
        return "A secret needs a value; to remove one, delete it."
    if "\0" in value:
        return "The value holds a NUL character, which no environment variable can hold."
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "The value is not valid text (it holds an unpaired surrogate)."
    if size > MAX_VALUE_BYTES:
        return f"The value is {size} bytes long; a secret holds at most {MAX_VALUE_BYTES} bytes."
    return None


@dataclass(frozen=True)
class SecretInfo:
    """What anyone is ever shown of a secret: its name, when it was set and by whom."""

    name: str
    set_at: str  # UTC, ISO 8601 with Z
    set_by: str

    def to_json(self) -> dict:
        return {"name": self.name, "set_at": self.set_at, "set_by": self.set_by}


def _raw_key(key: str | bytes) -> bytes:
    """32 bytes from a key as JupyterHub takes it: raw, base64 (44 characters) or hex (64)."""
    if isinstance(key, str):
        key = key.encode("ascii")
    if len(key) == 44:
        with contextlib.suppress(binascii.Error, ValueError):
            key = base64.urlsafe_b64decode(key)
    elif len(key) == 64:
        with contextlib.suppress(binascii.Error, ValueError):
            key = binascii.a2b_hex(key)
    if len(key) != 32:
        raise ValueError("an encryption key must be 32 bytes, hex or base64-encoded")
    return key


def _derived(raw: bytes):
    """A Fernet key for app secrets alone, from one of JupyterHub's keys (HKDF-SHA256)."""
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(raw)
    return Fernet(base64.urlsafe_b64encode(key))


def jupyterhub_keys() -> list[bytes]:
    """JupyterHub's encryption keys: ``c.CryptKeeper.keys`` as the running hub has them, else
    ``JUPYTERHUB_CRYPT_KEY`` (;-separated, the first encrypts); [] when there are none."""
    try:
        from jupyterhub.crypto import CryptKeeper
    except ImportError:  # pragma: no cover - the hub always has it
        return []
    return list(CryptKeeper.instance().keys)


def _part(text: str) -> str:
    """``text`` as one path component: reversible, never ``.`` or ``..``, never too long."""
    part = quote(text, safe="").replace(".", "%2E").replace("~", "%7E")
    if len(part) > 150:
        part = part[:100] + "-" + hashlib.sha256(text.encode()).hexdigest()[:32]
    return part


class AppSecretStore:
    """Each app's secrets, encrypted at rest in ``folder`` (see the module docstring).

    ``crypt_keys``: JupyterHub's keys; None (the hub) asks ``jupyterhub_keys()`` at first use,
    when the hub's configuration is loaded. Methods are synchronous and quick, so on the
    hub's one event loop no two changes to an app's file interleave.
    """

    def __init__(self, folder: str | os.PathLike, crypt_keys: Iterable | None = None):
        self.folder = Path(folder)
        self._crypt_keys = None if crypt_keys is None else list(crypt_keys)
        self._fernet = None

    def __repr__(self) -> str:
        return f"AppSecretStore({str(self.folder)!r})"

    # ---- keys ------------------------------------------------------------------------------
    def _private_folder(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)

    def _own_key(self, create: bool) -> bytes | None:
        path = self.folder / KEY_FILE
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            if not create:
                return None
        from cryptography.fernet import Fernet

        self._private_folder(self.folder)
        key = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\n")
            f.flush()
            os.fsync(f.fileno())
        return key

    def keys(self):
        """The MultiFernet: JupyterHub's keys (derived) first, then the hub's own key file
        (made only when JupyterHub has no key)."""
        if self._fernet is None:
            from cryptography.fernet import Fernet, MultiFernet

            raw = self._crypt_keys if self._crypt_keys is not None else jupyterhub_keys()
            fernets = [_derived(_raw_key(k)) for k in raw]
            own = self._own_key(create=not fernets)
            if own is not None:
                try:
                    fernets.append(Fernet(own))
                except ValueError:
                    raise StoreError(
                        f"The hub's key for app secrets ({KEY_FILE} in app-secrets/ in the "
                        "hub's data dir) is not a key: ask an admin to restore it."
                    ) from None
            self._fernet = MultiFernet(fernets)
        return self._fernet

    def _seal(self, owner: str, app: str, name: str, value: str) -> str:
        plain = json.dumps({"o": owner, "a": app, "n": name, "v": value}, ensure_ascii=False)
        return self.keys().encrypt(plain.encode("utf-8")).decode("ascii")

    def _unseal(self, owner: str, app: str, name: str, token: object) -> str:
        from cryptography.fernet import InvalidToken

        try:
            sealed = json.loads(self.keys().decrypt(str(token).encode("ascii")))
        except (InvalidToken, ValueError, TypeError):
            raise SecretError(
                f"The secret {name} of {owner}/{app} cannot be decrypted with the hub's keys "
                "(was JUPYTERHUB_CRYPT_KEY or app-secrets/hub.key changed?): set it again."
            ) from None
        if not isinstance(sealed, dict) or (sealed.get("o"), sealed.get("a"), sealed.get("n")) != (
            owner,
            app,
            name,
        ):
            raise SecretError(
                f"The secret {name} stored for {owner}/{app} was sealed for another app or "
                "name, so it is not used: set it again."
            )
        return sealed["v"]

    # ---- files -----------------------------------------------------------------------------
    def path(self, owner: str, app: str) -> Path:
        return self.folder / _part(owner) / f"{_part(app)}.json"

    def _load(self, owner: str, app: str) -> dict:
        try:
            doc = json.loads(self.path(owner, app).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"secrets": {}}
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("secrets"), dict):
            raise StoreError(
                f"The secrets file of {owner}/{app} is damaged: ask an admin to look at it "
                "(app-secrets/ in the hub's data dir)."
            )
        return doc

    def _save(self, owner: str, app: str, doc: dict) -> None:
        """Write the app's file whole (kept with no secrets left: it dates the last change)."""
        path = self.path(owner, app)
        self._private_folder(self.folder)
        self._private_folder(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")  # 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _rotated(self, doc: dict) -> None:
        """Re-encrypt every value with the newest key (one that no key opens stays as it is)."""
        from cryptography.fernet import InvalidToken

        for record in doc["secrets"].values():
            with contextlib.suppress(InvalidToken, ValueError, TypeError, AttributeError):
                record["value"] = self.keys().rotate(record["value"].encode("ascii")).decode()

    # ---- what the API and the spawners use ---------------------------------------------------
    def list_secrets(self, owner: str, app: str) -> list[SecretInfo]:
        secrets = self._load(owner, app)["secrets"]
        return [
            SecretInfo(name, str(r.get("set_at", "")), str(r.get("set_by", "")))
            for name, r in sorted(secrets.items())
        ]

    def changed_at(self, owner: str, app: str) -> datetime | None:
        """When the app's secrets last changed (a set or a delete), or None."""
        try:
            doc = self._load(owner, app)
        except SecretError:
            return None
        try:
            return datetime.fromisoformat(doc["changed_at"].replace("Z", "+00:00")).astimezone(UTC)
        except (KeyError, AttributeError, ValueError):
            return None

    def set(self, owner: str, app: str, name: str, value: str, by: str) -> SecretInfo:
        """Set (or replace) one secret; raises ``SecretError`` with the reason."""
        problem = name_problem(name) or value_problem(value)
        if problem:
            raise SecretError(problem)
        doc = self._load(owner, app)
        secrets = doc["secrets"]
        if name not in secrets and len(secrets) >= MAX_SECRETS:
            raise SecretError(
                f"{owner}/{app} has {len(secrets)} secrets, the most an app may have: "
                "delete one first."
            )
        size = len(value.encode("utf-8"))
        total = (
            size
            + len(name)
            + 2
            + sum(int(r.get("size", 0)) + len(n) + 2 for n, r in secrets.items() if n != name)
        )
        if total > MAX_TOTAL_BYTES:
            raise SecretError(
                f"The secrets of {owner}/{app} would take {total} bytes, more than the "
                f"{MAX_TOTAL_BYTES} an app may have: delete or shorten some first."
            )
        now = iso_z()
        secrets[name] = {
            "set_at": now,
            "set_by": by,
            "size": size,
            "value": self._seal(owner, app, name, value),
        }
        doc.update(version=1, owner=owner, app=app, changed_at=now)
        self._rotated(doc)
        self._save(owner, app, doc)
        return SecretInfo(name, now, by)

    def delete(self, owner: str, app: str, name: str) -> None:
        doc = self._load(owner, app)
        if name not in doc["secrets"]:
            raise NoSuchSecret(f"{owner}/{app} has no secret {_shown(name)}.")
        del doc["secrets"][name]
        doc.update(version=1, owner=owner, app=app, changed_at=iso_z())
        self._rotated(doc)
        self._save(owner, app, doc)

    def delete_app(self, owner: str, app: str) -> int:
        """Forget every secret of an app (it is being deleted); how many there were."""
        try:
            count = len(self._load(owner, app)["secrets"])
        except SecretError:
            count = 0
        path = self.path(owner, app)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # (only when empty)
        return count

    def values(self, owner: str, app: str) -> dict[str, str]:
        """Every secret of the app, decrypted, for its start (``SecretError`` if one cannot be)."""
        return {
            name: self._unseal(owner, app, name, record.get("value"))
            for name, record in sorted(self._load(owner, app)["secrets"].items())
        }


# ---- the hub's store ------------------------------------------------------------------------
_store: AppSecretStore | None = None


def store() -> AppSecretStore | None:
    """The hub's store (``spawner/app_secrets_api.py: configure_app_secrets``), or None."""
    return _store


def use_store(new: AppSecretStore | None) -> None:
    global _store
    _store = new


def secrets_for_start(spawner) -> dict[str, str]:
    """The app's secrets for the start under way (name: value), read once; {} without a
    store. One that cannot be read refuses the start (``spawner.refuse``), naming it to the
    owner; a viewer waking the app is told only that it cannot start."""
    s = store()
    if s is None:
        return {}
    try:
        return s.values(spawner.user.name, spawner.name or "")
    except SecretError as e:
        asked_by_other = getattr(spawner, "_asked_by_someone_else", lambda: False)()
        message = (
            f"The app {spawner.name} cannot start: one of its secrets is unreadable; "
            f"{spawner.user.name} has to set it again."
            if asked_by_other
            else str(e)
        )
        spawner.refuse(message, reason="app_secrets", status=500)
        raise  # (refuse raises)


def forget_app(spawner) -> None:
    """The app's named server is being deleted: its secrets go with it (never raises)."""
    s = store()
    if s is None:
        return
    try:
        count = s.delete_app(spawner.user.name, spawner.name or "")
    except OSError as e:
        spawner.log.warning("Could not delete the secrets of %s: %s", spawner._log_name, e)
        return
    if count:
        spawner.log.info("Deleted the %d secret(s) of %s", count, spawner._log_name)


# ---- delivery -------------------------------------------------------------------------------
def pipe_payload(token: str, values: Mapping[str, str]) -> bytes:
    """What the local spawner writes to the app server's pipe: the token, then each secret as
    ``NAME=value``, NUL-separated (no secrets: the token alone, as before). Read by
    ``spawner.app_server.settings.read_pipe``."""
    items = [token.encode("ascii")]
    for name, value in values.items():
        problem = name_problem(name) or value_problem(value)
        if problem:  # (the store refuses these; never send what the reader would refuse)
            raise SecretError(problem)
        items.append(name.encode("ascii") + b"=" + value.encode("utf-8"))
    return PIPE_SEPARATOR.join(items)


async def write_pipe(fd: int, data: bytes, timeout: float = 10.0) -> None:
    """Write all of ``data`` to the pipe ``fd`` without blocking the hub: the pipe is grown to
    hold it where Linux allows, else it is written as the reader takes it, for at most
    ``timeout`` seconds (``TimeoutError``)."""
    import fcntl

    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, max(len(data), 4096))
    os.set_blocking(fd, False)
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError("the app server did not read its start-up data") from None
            await asyncio.sleep(0.01)


def _env_name(entry) -> str | None:
    return entry.get("name") if isinstance(entry, dict) else getattr(entry, "name", None)


def refer_to_secrets(container, secret_name: str, values: Mapping[str, str]) -> dict[str, str]:
    """Kubernetes: give ``container`` the app's secrets as env entries that refer to
    ``secret_name`` (``secretKeyRef``, keys ``app-secret.<NAME>``; no value in the pod spec)
    and return the Secret's data for them. An env entry of the same name the configuration
    put there is dropped: the owner's secret is what the app gets."""
    if not values:
        return {}
    from kubernetes_asyncio.client.models import V1EnvVar, V1EnvVarSource, V1SecretKeySelector

    env = [e for e in (container.env or []) if _env_name(e) not in values]
    data = {}
    for name in sorted(values):
        key = SECRET_KEY_PREFIX + name
        data[key] = values[name]
        ref = V1SecretKeySelector(name=secret_name, key=key)
        env.append(V1EnvVar(name=name, value_from=V1EnvVarSource(secret_key_ref=ref)))
    container.env = env
    return data
