"""The share dialog's name suggestions (spawner/share_names.py), on JupyterHub's own database
tables; tests/browser/test_home_viewer_and_share.py asks a real hub through the dialog."""

import pytest
from jupyterhub import orm

from spawner.share_names import candidates, pick


@pytest.fixture
def db():
    session = orm.new_session_factory("sqlite://")()
    for name in ("alice", "Albert", "bob", "carol", "al_x", "alfa%"):
        session.add(orm.User(name=name))
    for name in ("analysts", "viewers", "data-scientists"):
        session.add(orm.Group(name=name))
    session.commit()
    yield session
    session.close()


def names(rows):
    return [r.name for r in rows]


def test_every_user_in_order_of_any_case_without_a_prefix(db):
    assert names(candidates(db, "user", "")) == ["al_x", "Albert", "alfa%", "alice", "bob", "carol"]


def test_a_prefix_matches_the_start_in_any_case(db):
    assert names(candidates(db, "user", "AL")) == ["al_x", "Albert", "alfa%", "alice"]
    assert names(candidates(db, "user", "b")) == ["bob"]
    assert names(candidates(db, "user", "ice")) == []


def test_like_wildcards_in_a_prefix_are_plain_characters(db):
    assert names(candidates(db, "user", "al_")) == ["al_x"]
    assert names(candidates(db, "user", "alf%")) == []
    assert names(candidates(db, "user", "alfa%")) == ["alfa%"]


def test_groups_are_their_own_list(db):
    assert names(candidates(db, "group", "")) == ["analysts", "data-scientists", "viewers"]
    assert names(candidates(db, "group", "v")) == ["viewers"]


class Row:
    def __init__(self, name):
        self.name = name


ROWS = [Row(n) for n in ("admin", "alice", "bob", "carol", "dave")]


def test_only_names_the_asker_may_read_and_never_the_excluded():
    readable = {"alice", "bob", "dave"}
    got = pick(ROWS, lambda r: r.name in readable, exclude={"alice"})
    assert got == (["bob", "dave"], False)


def test_at_most_limit_names_and_whether_more_follow():
    assert pick(ROWS, lambda r: True, limit=2) == (["admin", "alice"], True)
    assert pick(ROWS, lambda r: True, limit=5) == ([r.name for r in ROWS], False)
    # one more readable after the limit counts; unreadable ones do not
    assert pick(ROWS, lambda r: r.name != "carol" and r.name != "dave", limit=3) == (
        ["admin", "alice", "bob"],
        False,
    )
