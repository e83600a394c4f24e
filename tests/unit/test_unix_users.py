"""System account names for analysts' local apps (spawner/unix_users.py): the invariants."""

import re

from hypothesis import given
from hypothesis import strategies as st

from spawner.unix_users import MAX_NAME, account_name, blocked_for_others

DEBIAN_NAME = re.compile(r"[a-z_][a-z0-9_-]*\Z")


def test_plain_names_stay_readable():
    assert account_name("alice") == "sthub-alice"
    assert account_name("data-bob") == "sthub-data-bob"


def test_names_that_change_carry_a_hash_of_the_original():
    assert account_name("Alice") != account_name("alice")
    assert account_name("alice@example.com").startswith("sthub-alice-example-com-")
    assert account_name("alice.b") != account_name("alice-b")


@given(st.text(min_size=1, max_size=80))
def test_every_hub_user_name_gives_a_valid_system_name(name):
    got = account_name(name)
    assert DEBIAN_NAME.match(got) and len(got) <= MAX_NAME


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_two_hub_users_never_share_an_account(a, b):
    if a != b:
        assert account_name(a) != account_name(b)


def test_a_closed_folder_on_the_way_is_named(tmp_path):
    import os

    inner = tmp_path / "closed" / "bin"
    inner.mkdir(parents=True)
    (inner / "python").write_text("")
    os.chmod(inner / "python", 0o755)
    os.chmod(tmp_path / "closed", 0o700)
    assert blocked_for_others(str(inner / "python")) is not None
    os.chmod(tmp_path / "closed", 0o711)
    for p in [tmp_path, *tmp_path.parents]:
        if not p.stat().st_mode & 0o001:
            return  # pytest's own folder is private: the rest is covered above
    assert blocked_for_others(str(inner / "python")) is None


def test_prefix_and_length_limits_hold_for_long_and_odd_names():
    assert account_name("bob", prefix="app-") == "app-bob"
    long = "a" * 40
    got = account_name(long)
    assert len(got) == MAX_NAME and got.startswith("sthub-aaaa") and got != account_name("a" * 41)
    assert account_name("---").startswith("sthub-user-")  # nothing usable left: a stand-in


def _fake_useradd(monkeypatch, tmp_path, script: str):
    """Every command ensure_account runs becomes ``script`` (never the real useradd, whatever
    the code under test, or a mutant of it, asks for)."""
    import asyncio

    from spawner import unix_users

    fake = tmp_path / "useradd"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    real = asyncio.create_subprocess_exec

    async def run(program, *args, **kwargs):
        return await real(str(fake), *args, **kwargs)

    monkeypatch.setattr(unix_users.asyncio, "create_subprocess_exec", run)
    monkeypatch.setattr(unix_users.shutil, "which", lambda _: str(fake))


def test_a_failed_useradd_is_an_error_that_says_why(monkeypatch, tmp_path):
    import asyncio
    import uuid

    import pytest

    from spawner import unix_users

    _fake_useradd(monkeypatch, tmp_path, "echo 'useradd: cannot lock /etc/passwd' >&2\nexit 1\n")
    name = f"sthub-t{uuid.uuid4().hex[:10]}"
    with pytest.raises(unix_users.AccountError, match=f"{name}.*exited 1.*cannot lock"):
        asyncio.run(unix_users.ensure_account(name, "/nonexistent"))


def _nobody():
    import pwd

    from spawner.unix_users import Account

    entry = pwd.getpwnam("nobody")
    return Account("nobody", entry.pw_uid, entry.pw_gid)


def test_the_first_start_hands_the_home_over_and_closes_it(tmp_path):
    import os

    import pytest

    from spawner.unix_users import prepare_home

    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    home = tmp_path / "alice"
    (home / "apps" / "demo").mkdir(parents=True)
    (home / "apps" / "demo" / "app.py").write_text("x")
    (home / "link").symlink_to("/etc/passwd")
    nobody = _nobody()
    prepare_home(home, nobody)
    for p in (home, home / "apps", home / "apps" / "demo", home / "apps" / "demo" / "app.py"):
        assert (p.stat().st_uid, p.stat().st_gid) == (nobody.uid, nobody.gid), p
    assert (home / "link").lstat().st_uid == nobody.uid and os.stat("/etc/passwd").st_uid == 0
    assert home.stat().st_mode & 0o777 == 0o700
    # later starts leave what is inside alone (the account could have planted links by then)
    (home / "later.py").write_text("y")
    prepare_home(home, nobody)
    assert (home / "later.py").stat().st_uid == 0


def test_a_private_dir_and_what_is_in_it_belong_to_the_account(tmp_path):
    import os

    import pytest

    from spawner.unix_users import prepare_private_dir, traversable

    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    spool = tmp_path / "logs" / "alice" / "audit-spool" / "demo"
    spool.mkdir(parents=True)
    (spool / "left-by-root.jsonl").write_text("{}")
    nobody = _nobody()
    prepare_private_dir(spool, nobody)
    assert spool.stat().st_uid == nobody.uid and spool.stat().st_mode & 0o777 == 0o700
    assert (spool / "left-by-root.jsonl").stat().st_uid == nobody.uid
    traversable(tmp_path / "logs")
    assert (tmp_path / "logs").stat().st_mode & 0o777 == 0o711


def test_a_name_that_fits_exactly_is_kept_as_it_is():
    assert account_name("a" * 26) == "sthub-" + "a" * 26  # 32 characters: no hash needed
    assert len(account_name("a" * 27)) == MAX_NAME and "-" in account_name("a" * 27)[6:]


def test_a_shortened_name_never_ends_in_a_dash_before_its_hash():
    got = account_name("abcdefghijklmnop-qrstuvwxyz-and-more")  # cut right after a dash
    assert "--" not in got and got.startswith("sthub-abcdefghijklmnop-")


def test_an_existing_account_runs_no_useradd(monkeypatch, tmp_path):
    import asyncio

    from spawner import unix_users

    ran = tmp_path / "ran"
    _fake_useradd(monkeypatch, tmp_path, f"touch {ran}\nexit 1\n")
    assert asyncio.run(unix_users.ensure_account("root", "/root")).uid == 0
    assert not ran.exists()


def test_the_first_closed_folder_is_the_one_named():
    import os
    import shutil
    import tempfile
    from pathlib import Path

    top = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp itself lets everyone pass
    try:
        os.chmod(top, 0o711)
        (top / "a" / "b").mkdir(parents=True)
        target = top / "a" / "b" / "python"
        target.write_text("")
        os.chmod(target, 0o755)
        os.chmod(top / "a", 0o755)
        os.chmod(top / "a" / "b", 0o755)
        assert blocked_for_others(str(target)) is None
        os.chmod(top / "a", 0o750)  # readable by its group only, closed to others
        assert blocked_for_others(str(target)) == str(top / "a")
        os.chmod(top / "a", 0o751)
        os.chmod(target, 0o750)
        assert blocked_for_others(str(target)) == str(target)
        assert blocked_for_others(str(top / "missing")) == str(top / "missing")
    finally:
        shutil.rmtree(top)


def test_homes_and_spools_are_made_with_their_missing_parents(tmp_path):
    import os

    import pytest

    from spawner.unix_users import prepare_home, prepare_private_dir

    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    nobody = _nobody()
    prepare_home(tmp_path / "homes" / "x" / "alice", nobody)
    prepare_private_dir(tmp_path / "logs" / "alice" / "audit-spool" / "demo", nobody)
    assert (tmp_path / "homes" / "x" / "alice").stat().st_uid == nobody.uid
    assert (tmp_path / "logs" / "alice" / "audit-spool" / "demo").stat().st_uid == nobody.uid


def test_useradd_is_asked_for_a_system_account_with_no_shell_and_no_home(monkeypatch, tmp_path):
    import asyncio
    import uuid

    import pytest

    from spawner import unix_users

    argv = tmp_path / "argv"
    _fake_useradd(monkeypatch, tmp_path, f'printf "%s\\n" "$@" > {argv}\nexit 0\n')
    name = f"sthub-t{uuid.uuid4().hex[:10]}"
    with pytest.raises(unix_users.AccountError, match=f"could not create the system user '{name}'"):
        asyncio.run(unix_users.ensure_account(name, "/srv/homes/x"))  # (the fake made none)
    assert argv.read_text().splitlines() == [
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/srv/homes/x",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "streamlit-hub app account",
        name,
    ]


def test_lookup_gives_the_whole_account():
    from spawner.unix_users import Account, lookup

    assert lookup("root") == Account("root", 0, 0)
    assert lookup("sthub-no-such-account-here") is None


def test_an_account_made_by_useradd_is_returned(monkeypatch, tmp_path):
    import asyncio

    from spawner import unix_users

    made = unix_users.Account("sthub-new", 4242, 4343)
    answers = iter([None, made])  # missing before useradd, there after it
    monkeypatch.setattr(unix_users, "lookup", lambda name: next(answers))
    _fake_useradd(monkeypatch, tmp_path, "exit 0\n")
    assert asyncio.run(unix_users.ensure_account("sthub-new", "/srv/homes/new")) == made


def test_traversable_makes_missing_folders(tmp_path):
    from spawner.unix_users import traversable

    traversable(tmp_path / "logs" / "alice" / "audit-spool")
    assert (tmp_path / "logs" / "alice" / "audit-spool").stat().st_mode & 0o777 == 0o711
