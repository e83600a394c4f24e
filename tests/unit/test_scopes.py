import pytest

from spawner.app_server.scopes import grants_access

REQUIRED = {"access:servers!server=alice/demo", "access:servers!user=alice"}


@pytest.mark.parametrize(
    "have",
    [
        {"access:servers"},
        {"access:servers!user=alice"},
        {"access:servers!server=alice/demo"},
        {"read:users:name!user=carol", "access:servers!server=alice/demo"},
    ],
)
def test_scopes_that_grant_access(have):
    assert grants_access(have, REQUIRED)


@pytest.mark.parametrize(
    "have",
    [
        set(),
        {"access:servers!server=alice/demo2"},
        {"access:servers!server=alice/dem"},
        {"access:servers!user=alicia"},
        {"access:servers!user=bob", "read:users"},
        {"access:servers!group=analysts"},  # not resolvable here; the hub resolves groups itself
        {"access:services"},
        {"admin:servers"},
        {"access:servers!server="},
    ],
)
def test_scopes_that_do_not(have):
    assert not grants_access(have, REQUIRED)


def test_server_scope_does_not_widen_to_the_user():
    assert not grants_access({"access:servers!server=alice/demo"}, {"access:servers!user=alice"})


# A user filter is a whole user name, never a prefix (issue 18, survivor 1): "ali" is not
# "alice", and "alice" is not "alice2".
@pytest.mark.parametrize(
    "have, required",
    [
        ({"access:servers!user=ali"}, REQUIRED),
        ({"access:servers!user=ali"}, {"access:servers!server=alice/demo"}),
        ({"access:servers!user=ali"}, {"access:servers!user=alice"}),
        ({"access:servers!user=alice"}, {"access:servers!server=alice2/demo"}),
        ({"access:servers!user=alice"}, {"access:servers!user=alice2"}),
        ({"access:servers!server=alice/dem"}, {"access:servers!server=alice/demo"}),
        ({"access:servers!server=alice/demo"}, {"access:servers!server=alice/demo2"}),
    ],
)
def test_a_filter_that_is_a_prefix_of_another_name_grants_nothing(have, required):
    assert not grants_access(have, required)


@pytest.mark.parametrize(
    "have, required, granted",
    [
        # a user filter covers that user's servers and the user itself
        ({"access:servers!user=alice"}, {"access:servers!server=alice/demo"}, True),
        ({"access:servers!user=alice"}, {"access:servers!user=alice"}, True),
        # the unfiltered scope covers any filter
        ({"access:servers"}, {"access:servers!server=bob/x"}, True),
        ({"access:servers"}, {"access:servers!user=bob"}, True),
        ({"access:servers"}, {"access:servers"}, True),
        # a filtered scope does not cover the unfiltered requirement
        ({"access:servers!user=alice"}, {"access:servers"}, False),
        ({"access:servers!server=alice/demo"}, {"access:servers"}, False),
        # a server filter only ever covers that server
        ({"access:servers!server=alice/demo"}, {"access:servers!server=alice/demo"}, True),
        ({"access:servers!server=alice/demo"}, {"access:servers!server=alice/other"}, False),
        # another scope's name with the same filter is not access
        ({"start:servers!server=alice/demo"}, {"access:servers!server=alice/demo"}, False),
        ({"access:servers!server=alice/demo"}, {"start:servers!server=alice/demo"}, False),
        ({"access:servers_x!server=alice/demo"}, {"access:servers!server=alice/demo"}, False),
        # malformed filters are ignored, on either side
        ({"access:servers!user="}, {"access:servers!user="}, False),
        ({"access:servers!user"}, {"access:servers!user=alice"}, False),
        (
            {"access:servers!server=alice/demo"},
            {"access:servers!group=a", "access:servers!user="},
            False,
        ),
        # an unresolvable requirement is skipped, the next one still counts
        (
            {"access:servers!user=alice"},
            ["access:servers!group=a", "access:servers!server=alice/demo"],
            True,
        ),
        ({"access:servers!user=alice"}, ["read:users", "access:servers!server=alice/demo"], True),
        # any one held scope is enough, in any order
        (
            ["access:servers!user=bob", "access:servers!server=alice/demo"],
            {"access:servers!server=alice/demo"},
            True,
        ),
        (
            ["access:servers!server=alice/demo", "access:servers!user=bob"],
            {"access:servers!server=alice/demo"},
            True,
        ),
        # nothing required: nothing granted
        ({"access:servers"}, set(), False),
    ],
)
def test_the_filter_rules_one_by_one(have, required, granted):
    assert grants_access(have, required) is granted


def test_start_scopes_follow_the_same_rule_by_name():
    assert grants_access(
        {"start:servers!server=alice/demo"}, {"start:servers!server=alice/demo"}, "start:servers"
    )
    assert grants_access(
        {"start:servers!user=alice"}, {"start:servers!server=alice/demo"}, "start:servers"
    )
    assert not grants_access(
        {"start:servers!user=ali"}, {"start:servers!server=alice/demo"}, "start:servers"
    )
    assert not grants_access(
        {"access:servers"}, {"start:servers!server=alice/demo"}, "start:servers"
    )


@pytest.mark.parametrize(
    "have, required, granted",
    [
        # a filter's value is everything after the first "=" (a server name may hold one)
        ({"access:servers!server=alice/a=b"}, {"access:servers!server=alice/a=b"}, True),
        ({"access:servers!server=alice/a=b"}, {"access:servers!server=alice/b"}, False),
        # a server's owner is what comes before the first "/"
        ({"access:servers!user=alice"}, {"access:servers!server=alice/x/y"}, True),
        ({"access:servers!user=alice/x"}, {"access:servers!server=alice/x/y"}, False),
        # a user filter is compared whole, "/" and all
        ({"access:servers!user=alice"}, {"access:servers!user=alice/x"}, False),
    ],
)
def test_odd_characters_in_filters(have, required, granted):
    assert grants_access(have, required) is granted
