"""System account names for analysts' local apps (spawner/unix_users.py): the invariants."""

import re

from hypothesis import given, strategies as st

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
