import pytest

from spawner.app_server.scopes import grants_access

REQUIRED = {"access:servers!server=alice/demo", "access:servers!user=alice"}


@pytest.mark.parametrize("have", [
    {"access:servers"},
    {"access:servers!user=alice"},
    {"access:servers!server=alice/demo"},
    {"read:users:name!user=carol", "access:servers!server=alice/demo"},
])
def test_scopes_that_grant_access(have):
    assert grants_access(have, REQUIRED)


@pytest.mark.parametrize("have", [
    set(),
    {"access:servers!server=alice/demo2"},
    {"access:servers!server=alice/dem"},
    {"access:servers!user=alicia"},
    {"access:servers!user=bob", "read:users"},
    {"access:servers!group=analysts"},  # not resolvable here; the hub resolves groups itself
    {"access:services"},
    {"admin:servers"},
    {"access:servers!server="},
])
def test_scopes_that_do_not(have):
    assert not grants_access(have, REQUIRED)


def test_server_scope_does_not_widen_to_the_user():
    assert not grants_access({"access:servers!server=alice/demo"}, {"access:servers!user=alice"})
