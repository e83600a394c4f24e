"""App secrets (#16 point 5): the name and value rules, the store encrypted at rest with a
hub-held key, and the delivery to a starting app (the local pipe, the app server's reading
of it, the launcher making itself non-dumpable). spawner/app_secrets.py.

The pod: tests/unit/test_app_secrets_kube.py. The hub API, the page and the CLI on a real hub:
tests/integration/test_app_secrets.py (and _kube.py). Attacks: tests/security/test_app_secrets.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet, InvalidToken

from spawner import app_secrets
from spawner.app_secrets import (
    MAX_SECRETS,
    MAX_TOTAL_BYTES,
    MAX_VALUE_BYTES,
    AppSecretStore,
    NoSuchSecret,
    SecretError,
    name_problem,
    pipe_payload,
    value_problem,
    write_pipe,
)
from spawner.app_server.settings import SettingsError, read_pipe

VALUE = "pw-" + secrets.token_hex(16) + "\nsecond line, é ✓"
KEY = secrets.token_bytes(32)


@pytest.fixture
def store(tmp_path):
    return AppSecretStore(tmp_path / "app-secrets", crypt_keys=[])


def every_byte_on_disk(folder) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# ---- names and values ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["DB_PASSWORD", "_X", "a", "GIT_TOKEN2", "x" * 128, "Api_Key"])
def test_environment_variable_names_are_accepted(name):
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "needs a name"),
        (None, "needs a name"),
        ("2FA_CODE", "not an environment variable name"),
        ("DB-PASSWORD", "not an environment variable name"),
        ("DB PASSWORD", "not an environment variable name"),
        ("MOT_DE_PASSE_É", "not an environment variable name"),
        ("A=B", "not an environment variable name"),
        ("x" * 129, "too long"),
    ],
)
def test_other_names_are_refused_with_a_sentence(name, words):
    problem = name_problem(name)
    assert problem and words in problem and problem.endswith(".")


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "HOME",
        "USER",
        "path",
        "JUPYTERHUB_API_TOKEN",
        "JUPYTERHUB_API_URL",
        "JPY_API_TOKEN",
        "JUPYTER_IMAGE",
        "STREAMLIT_HUB_ENTRY",
        "STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "LD_PRELOAD",
        "MEM_LIMIT",
        "KUBERNETES_SERVICE_HOST",
    ],
)
def test_names_the_platform_sets_or_reads_are_reserved(name):
    problem = name_problem(name)
    assert problem and "reserved" in problem and "Choose another name" in problem


def test_a_refusal_quotes_a_name_only_as_printable_and_short():
    problem = name_problem("bad\x1b[31mname" + "x" * 200)
    assert "\x1b" not in problem and len(problem) < 200


@pytest.mark.parametrize(
    "value, words",
    [
        (None, "must be text"),
        (42, "must be text"),
        (["x"], "must be text"),
        ("", "needs a value"),
        ("a\0b", "NUL"),
        ("\ud800", "not valid text"),
        ("x" * (MAX_VALUE_BYTES + 1), f"at most {MAX_VALUE_BYTES} bytes"),
        ("é" * (MAX_VALUE_BYTES // 2 + 1), f"at most {MAX_VALUE_BYTES} bytes"),
    ],
)
def test_values_are_checked_without_being_quoted(value, words):
    problem = value_problem(value)
    assert problem and words in problem
    if isinstance(value, str) and len(value) > 3:
        assert value[:20] not in problem


def test_a_value_of_the_largest_size_with_newlines_and_any_text_is_accepted():
    assert value_problem("x" * MAX_VALUE_BYTES) is None
    assert value_problem(VALUE) is None


# ---- the store -------------------------------------------------------------------------------
def test_set_list_delete(store):
    info = store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    assert (info.name, info.set_by) == ("DB_PASSWORD", "alice") and info.set_at.endswith("Z")
    store.set("alice", "sales", "API_KEY", "k-1", by="admin")
    listed = store.list_secrets("alice", "sales")
    assert [(s.name, s.set_by) for s in listed] == [("API_KEY", "admin"), ("DB_PASSWORD", "alice")]
    assert VALUE not in json.dumps([s.to_json() for s in listed])
    assert set(listed[0].to_json()) == {"name", "set_at", "set_by"}
    assert store.values("alice", "sales") == {"API_KEY": "k-1", "DB_PASSWORD": VALUE}
    store.set("alice", "sales", "API_KEY", "k-2", by="alice")  # replaced
    assert store.values("alice", "sales")["API_KEY"] == "k-2"
    store.delete("alice", "sales", "API_KEY")
    assert [s.name for s in store.list_secrets("alice", "sales")] == ["DB_PASSWORD"]
    with pytest.raises(NoSuchSecret) as e:
        store.delete("alice", "sales", "API_KEY")
    assert e.value.status == 404
    # per app: another app and another owner see none of it
    assert store.values("alice", "costs") == {} and store.values("bob", "sales") == {}
    assert store.list_secrets("bob", "sales") == []


def test_the_value_is_encrypted_on_disk(store):
    store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    disk = every_byte_on_disk(store.folder)
    for form in (VALUE, VALUE.split("\n")[0], json.dumps(VALUE)[1:-1]):
        assert form.encode() not in disk
    assert base64.b64encode(VALUE.encode()) not in disk
    assert b"DB_PASSWORD" in disk  # names are not secret: the listing reads them unencrypted


def test_files_and_folders_are_private_to_the_hub(store):
    store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    for path in [store.folder, *store.folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert (store.folder / "hub.key").is_file()  # no JupyterHub key: the hub's own
    assert not list(store.folder.rglob(".tmp-*"))  # written atomically, nothing left over


def test_changes_are_dated(store):
    assert store.changed_at("alice", "sales") is None
    store.set("alice", "sales", "A", "1", by="alice")
    first = store.changed_at("alice", "sales")
    store.delete("alice", "sales", "A")
    deleted = store.changed_at("alice", "sales")  # none left, and when that happened
    assert store.list_secrets("alice", "sales") == [] and deleted > first
    store.set("alice", "sales", "A", "1", by="alice")
    store.set("alice", "sales", "B", "2", by="alice")
    later = store.changed_at("alice", "sales")
    store.delete("alice", "sales", "B")
    assert deleted < later < store.changed_at("alice", "sales")


def test_jupyterhubs_key_is_used_when_it_is_set_and_no_key_file_is_made(tmp_path):
    s = AppSecretStore(tmp_path / "s", crypt_keys=[KEY])
    s.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    assert not (tmp_path / "s" / "hub.key").exists()
    assert AppSecretStore(tmp_path / "s", crypt_keys=[KEY.hex()]).values("alice", "sales") == {
        "DB_PASSWORD": VALUE
    }
    # derived for this use: JupyterHub's key itself does not open it (nor the reverse)
    token = json.loads(s.path("alice", "sales").read_text())["secrets"]["DB_PASSWORD"]["value"]
    with pytest.raises(InvalidToken):
        Fernet(base64.urlsafe_b64encode(KEY)).decrypt(token.encode())


def test_jupyterhub_crypt_key_from_the_environment(tmp_path, monkeypatch):
    """The hub's store asks JupyterHub's CryptKeeper: JUPYTERHUB_CRYPT_KEY when not configured."""
    from jupyterhub.crypto import CryptKeeper

    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", KEY.hex())
    CryptKeeper.clear_instance()
    try:
        s = AppSecretStore(tmp_path / "s")
        s.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
        assert not (tmp_path / "s" / "hub.key").exists()
        explicit = AppSecretStore(tmp_path / "s", crypt_keys=[KEY])
        assert explicit.values("alice", "sales") == {"DB_PASSWORD": VALUE}
    finally:
        CryptKeeper.clear_instance()


def test_jupyterhub_crypt_keys_configured_win(tmp_path, monkeypatch):
    """c.CryptKeeper.keys (how the Zero to JupyterHub chart sets its key) is what is used."""
    from jupyterhub.crypto import CryptKeeper

    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    CryptKeeper.clear_instance()
    try:
        CryptKeeper.instance(keys=[KEY.hex()])
        AppSecretStore(tmp_path / "s").set("alice", "sales", "A", VALUE, by="alice")
        assert not (tmp_path / "s" / "hub.key").exists()
        assert AppSecretStore(tmp_path / "s", crypt_keys=[KEY]).values("alice", "sales") == {
            "A": VALUE
        }
    finally:
        CryptKeeper.clear_instance()


def test_a_crypt_key_set_later_keeps_older_secrets_and_the_next_change_rotates_them(tmp_path):
    folder = tmp_path / "s"
    AppSecretStore(folder, crypt_keys=[]).set("alice", "sales", "OLD", VALUE, by="alice")
    later = AppSecretStore(folder, crypt_keys=[KEY])
    assert later.values("alice", "sales") == {"OLD": VALUE}  # the hub's key file still opens it
    later.set("alice", "sales", "NEW", "n", by="alice")
    (folder / "hub.key").unlink()
    assert AppSecretStore(folder, crypt_keys=[KEY]).values("alice", "sales") == {
        "OLD": VALUE,
        "NEW": "n",
    }


def test_a_secret_no_key_opens_is_refused_by_name_never_by_value(tmp_path):
    folder = tmp_path / "s"
    AppSecretStore(folder, crypt_keys=[KEY]).set("alice", "sales", "DB_PASSWORD", VALUE, by="a")
    other = AppSecretStore(folder, crypt_keys=[secrets.token_bytes(32)])
    with pytest.raises(SecretError) as e:
        other.values("alice", "sales")
    assert "DB_PASSWORD" in str(e.value) and "set it again" in str(e.value)
    assert VALUE[:10] not in str(e.value) and e.value.__cause__ is None
    # listing and replacing still work, and fix it
    assert [s.name for s in other.list_secrets("alice", "sales")] == ["DB_PASSWORD"]
    other.set("alice", "sales", "DB_PASSWORD", "fixed", by="alice")
    assert other.values("alice", "sales") == {"DB_PASSWORD": "fixed"}


def test_a_ciphertext_moved_to_another_app_or_name_is_not_delivered(store):
    store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    store.set("bob", "costs", "DB_PASSWORD", "bobs", by="bob")
    stolen = json.loads(store.path("alice", "sales").read_text())["secrets"]["DB_PASSWORD"]
    doc = json.loads(store.path("bob", "costs").read_text())
    doc["secrets"]["DB_PASSWORD"] = stolen
    doc["secrets"]["OTHER"] = stolen
    store.path("bob", "costs").write_text(json.dumps(doc))
    with pytest.raises(SecretError, match="sealed for another app"):
        store.values("bob", "costs")


def test_the_number_and_total_size_of_an_apps_secrets_are_bounded(store):
    for i in range(MAX_SECRETS):
        store.set("alice", "many", f"S{i}", "v", by="alice")
    with pytest.raises(SecretError, match=f"has {MAX_SECRETS} secrets"):
        store.set("alice", "many", "ONE_MORE", "v", by="alice")
    store.set("alice", "many", "S0", "replacing one is fine", by="alice")
    big = "x" * MAX_VALUE_BYTES
    for i in range(MAX_TOTAL_BYTES // MAX_VALUE_BYTES - 1):
        store.set("alice", "big", f"B{i}", big, by="alice")
    with pytest.raises(SecretError, match=f"more than the {MAX_TOTAL_BYTES}"):
        store.set("alice", "big", "LAST", big, by="alice")
    assert "LAST" not in {s.name for s in store.list_secrets("alice", "big")}


def test_refused_names_and_values_change_nothing(store):
    for name, value in (("PATH", "x"), ("1X", "x"), ("OK", ""), ("OK", "a\0")):
        with pytest.raises(SecretError):
            store.set("alice", "sales", name, value, by="alice")
    assert store.list_secrets("alice", "sales") == [] and not store.folder.exists()


@pytest.mark.parametrize("owner", ["..", ".", "a/b", "hub.key", "x" * 255, "ünï@example.com"])
def test_any_owner_name_stays_inside_the_store(tmp_path, owner):
    s = AppSecretStore(tmp_path / "s", crypt_keys=[KEY])
    s.set(owner, "app", "A", "1", by=owner)
    path = s.path(owner, "app").resolve()
    assert (tmp_path / "s").resolve() in path.parents and len(path.name) < 255
    assert s.values(owner, "app") == {"A": "1"}
    assert s.values(owner + "x", "app") == {}


def test_delete_app_forgets_them_all(store):
    store.set("alice", "sales", "A", "1", by="alice")
    store.set("alice", "sales", "B", "2", by="alice")
    assert store.delete_app("alice", "sales") == 2
    assert store.list_secrets("alice", "sales") == [] and not store.path("alice", "sales").exists()
    assert store.delete_app("alice", "sales") == 0


def test_a_damaged_file_is_a_sentence(store):
    store.set("alice", "sales", "A", "1", by="alice")
    store.path("alice", "sales").write_text("{not json")
    with pytest.raises(SecretError, match="damaged") as e:
        store.list_secrets("alice", "sales")
    assert e.value.status == 500 and str(store.folder) not in str(e.value)


def test_an_unusable_key_file_is_a_sentence(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "hub.key").write_text("not a key")
    with pytest.raises(SecretError, match="is not a key") as e:
        AppSecretStore(tmp_path / "s", crypt_keys=[]).set("alice", "a", "A", VALUE, by="alice")
    assert e.value.status == 500


def test_the_store_shows_no_value_in_its_repr(store):
    store.set("alice", "sales", "A", VALUE, by="alice")
    assert repr(store) == f"AppSecretStore({str(store.folder)!r})"


# ---- a spawner's start -----------------------------------------------------------------------
class FakeSpawner:
    def __init__(self, user="alice", name="sales", asker_is_owner=True):
        self.user = SimpleNamespace(name=user)
        self.name = name
        self._log_name = f"{user}/{name}"
        self.log = SimpleNamespace(info=lambda *a: None, warning=lambda *a: None)
        self._other = not asker_is_owner

    def _asked_by_someone_else(self):
        return self._other

    def refuse(self, message, reason, status=400):
        from jupyterhub.spawner import SpawnException

        raise SpawnException(message, reason=reason, status_code=status)


@pytest.fixture
def hub_store(tmp_path):
    s = AppSecretStore(tmp_path / "s", crypt_keys=[KEY])
    app_secrets.use_store(s)
    yield s
    app_secrets.use_store(None)


def test_a_start_gets_its_apps_secrets_and_only_those(hub_store):
    hub_store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    hub_store.set("alice", "costs", "OTHER", "o", by="alice")
    assert app_secrets.secrets_for_start(FakeSpawner()) == {"DB_PASSWORD": VALUE}
    assert app_secrets.secrets_for_start(FakeSpawner(name="tiny")) == {}


def test_without_a_store_a_start_gets_none():
    app_secrets.use_store(None)
    assert app_secrets.secrets_for_start(FakeSpawner()) == {}


def test_an_unreadable_secret_refuses_the_start(hub_store, tmp_path):
    from jupyterhub.spawner import SpawnException

    hub_store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    app_secrets.use_store(AppSecretStore(tmp_path / "s", crypt_keys=[secrets.token_bytes(32)]))
    with pytest.raises(SpawnException) as e:
        app_secrets.secrets_for_start(FakeSpawner())
    assert e.value.status_code == 500 and "DB_PASSWORD" in e.value.message
    with pytest.raises(SpawnException) as e:
        app_secrets.secrets_for_start(FakeSpawner(asker_is_owner=False))
    assert "DB_PASSWORD" not in e.value.message and "alice has to set it again" in e.value.message


def test_deleting_the_app_deletes_its_secrets(hub_store):
    hub_store.set("alice", "sales", "DB_PASSWORD", VALUE, by="alice")
    app_secrets.forget_app(FakeSpawner())
    assert hub_store.list_secrets("alice", "sales") == []


# ---- the pipe --------------------------------------------------------------------------------
def through_a_pipe(payload: bytes):
    r, w = os.pipe()
    asyncio.run(write_pipe(w, payload))
    os.close(w)
    return read_pipe(r)


def test_the_token_alone_travels_as_before():
    assert pipe_payload("tok123", {}) == b"tok123"
    assert through_a_pipe(b"tok123") == ("tok123", {})


def test_secrets_travel_after_the_token_and_arrive_intact():
    values = {"DB_PASSWORD": VALUE, "EQ": "a=b=c", "SPACE": "  x  ", "NL": "\n"}
    assert through_a_pipe(pipe_payload("tok123", values)) == ("tok123", values)


def test_the_largest_set_of_secrets_fits_one_write():
    values = {f"S{i}": "é" * (MAX_VALUE_BYTES // 2 - 8) for i in range(2)}
    values["T"] = "x" * (MAX_TOTAL_BYTES - 2 * MAX_VALUE_BYTES)
    payload = pipe_payload("t" * 64, values)
    assert through_a_pipe(payload) == ("t" * 64, values)


def test_a_slow_reader_does_not_block_the_hub_and_a_missing_one_times_out():
    r, w = os.pipe()
    data = b"t" + b"\0X=" + b"y" * (4 * 1024 * 1024)  # more than a pipe may hold

    async def go():
        task = asyncio.ensure_future(write_pipe(w, data, timeout=0.3))
        await asyncio.sleep(0.05)  # the loop ran meanwhile: nothing blocked it
        assert not task.done()
        with pytest.raises(TimeoutError):
            await task

    asyncio.run(go())
    os.close(w)
    os.close(r)


@pytest.mark.parametrize("payload", [b"t\0NOEQUALS", b"t\0=v", b"t\x001X=v", b"\0X=v"])
def test_a_malformed_payload_is_refused_without_its_content(payload):
    with pytest.raises(SettingsError) as e:
        through_a_pipe(payload)
    assert str(e.value) in (
        "STREAMLIT_HUB_API_TOKEN_FD: an app secret came through malformed",
        "STREAMLIT_HUB_API_TOKEN_FD: the hub sent no token",
    )


def test_names_the_store_refuses_are_never_sent():
    with pytest.raises(SecretError):
        pipe_payload("t", {"PATH": "/evil"})


# ---- the launcher ----------------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_app_server_makes_itself_non_dumpable():
    code = (
        "import ctypes; from spawner.app_server.launcher import keep_memory_private;"
        "libc = ctypes.CDLL(None); before = libc.prctl(3, 0, 0, 0, 0);"
        "assert keep_memory_private(); print(before, libc.prctl(3, 0, 0, 0, 0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "0"]


@pytest.mark.parametrize("private", ["1", None])
def test_the_launcher_puts_the_secrets_into_its_environment(monkeypatch, tmp_path, private):
    """main(): non-dumpable first when asked (per-user accounts), then the pipe is read, and
    its secrets become os.environ entries before Streamlit (never logged)."""
    from spawner.app_server import launcher

    r, w = os.pipe()
    os.write(w, pipe_payload("tok-" + "0" * 32, {"DB_PASSWORD": VALUE}))
    os.close(w)
    env = {
        "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/sales/",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:servers!server=alice/sales"]',
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:1",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice-sales",
        "JUPYTERHUB_USER": "alice",
        "STREAMLIT_HUB_ENTRY": str(tmp_path / "missing.py"),
        "STREAMLIT_HUB_API_TOKEN_FD": str(r),
        **({"STREAMLIT_HUB_PRIVATE_MEMORY": private} if private else {}),
    }
    steps = []
    real_from_environ = launcher.from_environ

    def from_environ(*a, **kw):
        steps.append("pipe read")
        return real_from_environ(*a, **kw)

    # (pytest's own process stays dumpable)
    monkeypatch.setattr(launcher, "keep_memory_private", lambda: steps.append("private") or True)
    monkeypatch.setattr(launcher, "from_environ", from_environ)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    assert launcher.main([]) == 2  # stops at the missing entry file, after reading the pipe
    assert steps == (["private", "pipe read"] if private else ["pipe read"])
    assert os.environ["DB_PASSWORD"] == VALUE
    assert "STREAMLIT_HUB_API_TOKEN_FD" not in os.environ
    monkeypatch.delenv("DB_PASSWORD")
