"""The group policy, each rule and message one by one (issue 18: mutation testing of the
policy). The file's shape, decisions and their properties are in test_policy.py."""

import pytest

from spawner.policy import (
    Policy,
    PolicyError,
    Profile,
    Rule,
    RunningApp,
    Sources,
    combine,
    decide_start,
    format_bytes,
    limits_for,
    parse_bytes,
    parse_policy,
    quota_summary,
    summary_line,
)
from tests.unit.test_policy import BASE


@pytest.fixture
def policy():
    return parse_policy(BASE, "test.yaml")


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, 0),
        (1.9, 1),
        ("0", 0),
        ("1", 1),
        ("1B", 1),
        ("1K", 2**10),
        ("1k", 2**10),
        ("1Ki", 2**10),
        ("1KB", 2**10),
        ("1KiB", 2**10),
        ("3M", 3 * 2**20),
        ("2Mi", 2 * 2**20),
        ("1G", 2**30),
        ("1T", 2**40),
        ("2Ti", 2 * 2**40),
        (" 4 G ", 4 * 2**30),
        ("0.5G", 2**29),
        ("10b", 10),
    ],
)
def test_sizes_in_every_unit(value, expected):
    assert parse_bytes(value) == expected


@pytest.mark.parametrize(
    "value, words",
    [
        (True, "expected a size like 512M or 2G"),
        (False, "expected a size like 512M or 2G"),
        (-1, "must not be negative"),
        (-0.5, "must not be negative"),
        ("lots", "'lots' is not a size like 512M or 2G"),
        ("2P", "is not a size"),
        ("-2G", "is not a size"),
        ("G", "is not a size"),
        ("", "is not a size"),
        ("1.G", "is not a size"),
    ],
)
def test_sizes_that_are_refused(value, words):
    with pytest.raises(ValueError) as e:
        parse_bytes(value)
    assert words in str(e.value)


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0"),
        (1, "1"),
        (1023, "1023"),
        (2**10, "1K"),
        (1536, "1536"),
        (2**20, "1M"),
        (3 * 2**20, "3M"),
        (2**30, "1G"),
        (2**30 + 2**20, "1025M"),
        (2**40, "1T"),
        (5 * 2**40, "5T"),
        (2**40 + 2**10, "1073741825K"),
    ],
)
def test_format_bytes_picks_the_largest_exact_unit(n, text):
    assert format_bytes(n) == text


def _policy(**over):
    data = {
        "profiles": {"small": {"display_name": "Small", "cpu_limit": 1, "mem_limit": "2G"}},
        "groups": {},
        "defaults": {"profiles": []},
    }
    for k, v in over.items():
        data[k] = v
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        ("not a mapping", "p.yaml: (top level): expected a mapping, got str"),
        (_policy(profiles={"small": "x"}), "p.yaml: profiles.small: expected a mapping, got str"),
        (
            _policy(profiles={"small": {"display_name": ""}}),
            "p.yaml: profiles.small.display_name: expected a non-empty string",
        ),
        (
            _policy(profiles={"small": {"display_name": "  "}}),
            "p.yaml: profiles.small.display_name: expected a non-empty string",
        ),
        (
            _policy(profiles={"small": {"display_name": 3}}),
            "p.yaml: profiles.small.display_name: expected a non-empty string",
        ),
        (
            _policy(profiles={"small": {"cpu_limit": "1"}}),
            "p.yaml: profiles.small.cpu_limit: expected a number, got '1'",
        ),
        (
            _policy(profiles={"small": {"cpu_limit": True}}),
            "p.yaml: profiles.small.cpu_limit: expected a number, got True",
        ),
        (
            _policy(profiles={"small": {"cpu_limit": -1}}),
            "p.yaml: profiles.small.cpu_limit: must be at least 0, got -1",
        ),
        (
            _policy(profiles={"small": {"gpu": 1.5}}),
            "p.yaml: profiles.small.gpu: expected a whole number, got 1.5",
        ),
        (
            _policy(profiles={"small": {"cpu_guarantee": 2, "cpu_limit": 1}}),
            "p.yaml: profiles.small.cpu_guarantee: is larger than cpu_limit",
        ),
        (
            _policy(profiles={"small": {"image": " "}}),
            "p.yaml: profiles.small.image: expected an image name",
        ),
        (
            _policy(profiles={"small": {"image": 5}}),
            "p.yaml: profiles.small.image: expected an image name",
        ),
        (
            _policy(profiles={"small": {"tolerations": {"key": "x"}}}),
            "p.yaml: profiles.small.tolerations: expected a list",
        ),
        (
            _policy(profiles={"small": {"node_selector": ["x"]}}),
            "p.yaml: profiles.small.node_selector: expected a mapping, got list",
        ),
        (
            _policy(profiles={"-small": {}}),
            "p.yaml: profiles.-small: a profile slug is 1-63 of a-z, 0-9, '-', starting and ending with a letter or digit",
        ),
        (_policy(profiles={"s" * 64: {}}), f"p.yaml: profiles.{'s' * 64}: a profile slug"),
        (
            _policy(profiles={"small": {"colour": 1}}),
            "p.yaml: profiles.small.colour: unknown key (known: cpu_guarantee, cpu_limit, display_name, gpu, image, mem_guarantee, mem_limit, node_selector, tolerations)",
        ),
        (_policy(groups={"": {}}), "p.yaml: groups.: a group name must be a non-empty string"),
        (
            _policy(groups={"g": {"profiles": "small"}}),
            "p.yaml: groups.g.profiles: expected a list of profile slugs",
        ),
        (
            _policy(groups={"g": {"profiles": [1]}}),
            "p.yaml: groups.g.profiles: expected a list of profile slugs",
        ),
        (
            _policy(groups={"g": {"profiles": ["huge"]}}),
            "p.yaml: groups.g.profiles: no profile 'huge' (defined: small)",
        ),
        (
            _policy(profiles={}, groups={"g": {"profiles": ["huge"]}}),
            "p.yaml: groups.g.profiles: no profile 'huge' (defined: none)",
        ),
        (
            _policy(groups={"g": {"profiles": ["small"], "default_profile": "x"}}),
            "p.yaml: groups.g.default_profile: 'x' is not in this group's profiles ['small']",
        ),
        (
            _policy(groups={"g": {"max_apps": 1, "max_running_apps": 2}}),
            "p.yaml: groups.g.max_running_apps: is larger than max_apps (1)",
        ),
        (
            _policy(groups={"g": {"idle_timeout": 29}}),
            "p.yaml: groups.g.idle_timeout: must be at least 30, got 29",
        ),
        (
            _policy(groups={"g": {"may_share_links": "yes"}}),
            "p.yaml: groups.g.may_share_links: expected true or false, got 'yes'",
        ),
        (
            _policy(groups={"g": {"max_total_memory": "much"}}),
            "p.yaml: groups.g.max_total_memory: 'much' is not a size like 512M or 2G",
        ),
        (
            _policy(defaults={"max_apps": -1}),
            "p.yaml: defaults.max_apps: must be at least 0, got -1",
        ),
        (
            _policy(sources={"git_image": ""}),
            "p.yaml: sources.git_image: expected an image with a tag, e.g. alpine/git:2.47.2",
        ),
        (
            _policy(sources={"git_image": 3}),
            "p.yaml: sources.git_image: expected an image with a tag",
        ),
        (
            _policy(sources={"git_image": "registry:5000/git"}),
            "p.yaml: sources.git_image: expected an image with a tag",
        ),
        (
            _policy(sources={"git_hosts": [5]}),
            "p.yaml: sources.git_hosts: 5 is not like github.com",
        ),
        (
            _policy(sources={"image_prefixes": "ghcr.io/x/"}),
            "p.yaml: sources.image_prefixes: expected a list, e.g. [ghcr.io/example/apps/]",
        ),
        (_policy(sources=["x"]), "p.yaml: sources: expected a mapping, got list"),
    ],
)
def test_every_file_problem_has_its_exact_message(data, message):
    with pytest.raises(PolicyError) as e:
        parse_policy(data, "p.yaml")
    assert str(e.value).startswith(message)


def test_limits_at_their_boundaries_are_accepted():
    p = parse_policy(
        _policy(
            profiles={
                "small": {
                    "cpu_guarantee": 1,
                    "cpu_limit": 1,
                    "mem_guarantee": "1G",
                    "mem_limit": "1G",
                    "gpu": 0,
                    "tolerations": [],
                    "node_selector": {"a": "b"},
                    "image": "x:1",
                },
                "s" * 63: {},
                "a": {},
            },
            groups={
                "g": {
                    "profiles": ["small"],
                    "max_apps": 2,
                    "max_running_apps": 2,
                    "idle_timeout": 30,
                },
                "h": {"max_running_apps": 3},
            },  # no max_apps: no cap on running apps either
            sources={
                "git_image": "registry:5000/git:1",
                "git_hosts": ["github.com", "git.example:8443"],
                "image_prefixes": ["ghcr.io/example/apps/"],
            },
        ),
        "p.yaml",
    )
    small = p.profiles["small"]
    assert (small.cpu_guarantee, small.mem_guarantee, small.node_selector, small.image) == (
        1,
        2**30,
        {"a": "b"},
        "x:1",
    )
    assert p.profiles["s" * 63].display_name == "s" * 63  # the slug, when no display name
    g = p.groups["g"]
    assert (g.max_apps, g.max_running_apps, g.idle_timeout, g.default_profile) == (
        2,
        2,
        30,
        "small",
    )
    assert p.groups["h"].default_profile is None and p.groups["h"].max_running_apps == 3
    assert p.sources == Sources(
        ("github.com", "git.example:8443"), ("ghcr.io/example/apps/",), "registry:5000/git:1"
    )
    assert p.source == "p.yaml"


def test_rule_defaults_when_a_group_says_nothing():
    r = parse_policy(_policy(groups={"g": None}), "p.yaml").groups["g"]
    assert r == Rule(
        profiles=(),
        default_profile=None,
        max_running_apps=0,
        max_apps=0,
        max_total_cpu=None,
        max_total_memory=None,
        idle_timeout=None,
        may_share=True,
        may_share_links=False,
        max_link_days=1.0,
    )
    assert parse_policy({}, "p.yaml") == Policy({}, {}, Rule(), "p.yaml", Sources())


def test_profile_fields_are_read_from_the_file():
    p = parse_policy(
        _policy(
            profiles={
                "gpu": {
                    "display_name": "GPU",
                    "cpu_guarantee": 1.5,
                    "cpu_limit": 4,
                    "mem_guarantee": "2G",
                    "mem_limit": "16G",
                    "gpu": 2,
                    "node_selector": {"pool": "gpu"},
                    "tolerations": [{"key": "k"}],
                    "image": "img:1",
                }
            }
        ),
        "p.yaml",
    ).profiles["gpu"]
    assert p == Profile(
        "gpu", "GPU", 1.5, 4, 2 * 2**30, 16 * 2**30, 2, {"pool": "gpu"}, ({"key": "k"},), "img:1"
    )


def test_combine_takes_the_most_permissive_value_of_each_field():
    a = Rule(
        profiles=("small",),
        default_profile=None,
        max_running_apps=1,
        max_apps=9,
        max_total_cpu=4,
        max_total_memory=None,
        idle_timeout=600,
        may_share=False,
        may_share_links=True,
        max_link_days=2,
    )
    b = Rule(
        profiles=("large", "small"),
        default_profile="large",
        max_running_apps=3,
        max_apps=2,
        max_total_cpu=8,
        max_total_memory=2**30,
        idle_timeout=None,
        may_share=True,
        may_share_links=False,
        max_link_days=1,
    )
    assert combine([a, b]) == Rule(
        profiles=("small", "large"),
        default_profile="large",
        max_running_apps=3,
        max_apps=9,
        max_total_cpu=8,
        max_total_memory=None,
        idle_timeout=600,
        may_share=True,
        may_share_links=True,
        max_link_days=2,
    )
    both_none = combine([Rule(idle_timeout=None), Rule(idle_timeout=None)])
    assert both_none.idle_timeout is None and both_none.max_total_cpu is None
    assert combine([Rule(max_total_cpu=2), Rule(max_total_cpu=3)]).max_total_cpu == 3
    with pytest.raises(ValueError, match="no rules to combine"):
        combine([])


def test_groups_totals_come_from_the_groups_alone(policy):
    # defaults have no CPU total (None: "nothing to start"), a group's 8 is the limit
    assert limits_for(policy, ["data-scientists"]).rule.max_total_cpu == 8
    assert limits_for(policy, ["data-scientists"]).groups == ("data-scientists",)
    # groups come in file order, whatever order the user's groups are in
    assert limits_for(policy, ["data-scientists", "analysts", "x"]).groups == (
        "analysts",
        "data-scientists",
    )
    assert limits_for(policy, ["x"]).rule is policy.defaults and limits_for(policy, []).groups == ()


@pytest.mark.parametrize(
    "groups, who",
    [
        (["viewers"], "Users in no app-building group"),
        (["zero"], "zero"),
        (["zero", "zilch"], "Members of zero, zilch"),
    ],
)
def test_who_is_named_in_a_refusal(groups, who):
    p = parse_policy(
        {**BASE, "groups": {"zero": {"profiles": ["small"]}, "zilch": {"profiles": []}}}, "t"
    )
    d = decide_start(p, groups, [], None)
    assert d == decide_start(p, groups, [], "small")
    assert not d.allowed and d.code == "no_apps"
    assert d.reason == (
        f"{who} may open apps shared with them but not start apps. Ask an admin to "
        "add you to an analysts group."
    )


def test_running_one_app_of_one_allowed_is_said_in_the_singular():
    p = parse_policy(
        {**BASE, "groups": {"solo": {"profiles": ["small"], "max_running_apps": 1}}}, "t"
    )
    assert decide_start(p, ["solo"], [], None, "a").allowed
    d = decide_start(p, ["solo"], [RunningApp("a", "small")], None, "b")
    assert d.reason == "solo may run 1 app at once; you are running a. Stop one to start another."
    assert d.code == "running"


def test_a_profile_unknown_to_the_policy_is_named_as_given(policy):
    d = decide_start(policy, ["analysts"], [], "huge")
    assert (
        d.reason == "analysts may use the profiles small; 'huge' is not one of them."
        and d.code == "profile"
    )


def test_cpu_and_memory_totals_exactly(policy):
    data = {
        **BASE,
        "groups": {
            "g": {
                "profiles": ["small", "medium", "large"],
                "max_running_apps": 5,
                "max_total_cpu": 3,
                "max_total_memory": "6G",
            }
        },
    }
    p = parse_policy(data, "t")
    ok = decide_start(
        p, ["g"], [RunningApp("a", "small")], "medium", "b"
    )  # 3 CPUs, 6G: at both limits
    assert (
        ok.allowed
        and ok.reason == "b may start on Medium."
        and ok.profile.slug == "medium"
        and ok.code == "ok"
    )
    assert decide_start(p, ["g"], [], "small").reason == "The app may start on Small."
    d = decide_start(p, ["g"], [RunningApp("a", "medium")], "medium", "b")
    assert d.code == "cpu" and d.reason == (
        "g may use 3 CPUs across running apps; starting b on medium "
        "would make 4. Stop an app or pick a smaller profile."
    )
    d = decide_start(p, ["g"], [RunningApp("a", "medium")], "large")
    assert d.code == "cpu" and "starting this app on large would make 6." in d.reason
    data["groups"]["g"]["max_total_cpu"] = None
    p = parse_policy(data, "t")
    d = decide_start(p, ["g"], [RunningApp("a", "medium")], "medium", "b")  # 4G + 4G > 6G
    assert d.code == "memory" and d.reason == (
        "g may use 6G of memory across running apps; starting b on "
        "medium would make 8G. Stop an app or pick a smaller profile."
    )
    d = decide_start(p, ["g"], [RunningApp("a", "medium")], "medium")
    assert "starting this app on medium" in d.reason
    # apps whose profile the policy no longer has count as nothing
    assert decide_start(
        p, ["g"], [RunningApp("a", "gone"), RunningApp("b", None)], "medium"
    ).allowed


def test_totals_ignore_profiles_without_limits():
    data = {
        "profiles": {
            "free": {"display_name": "Free"},
            "small": {"cpu_limit": 1, "mem_limit": "1G"},
        },
        "groups": {
            "g": {
                "profiles": ["free", "small"],
                "max_running_apps": 9,
                "max_total_cpu": 1,
                "max_total_memory": "1G",
            }
        },
        "defaults": {},
    }
    p = parse_policy(data, "t")
    running = [RunningApp("a", "free"), RunningApp("b", "free")]
    assert decide_start(p, ["g"], running, "free").allowed  # no limit on the profile: no total
    assert decide_start(p, ["g"], running, "small").allowed  # 0 + 0 + 1 CPU, 1G
    assert not decide_start(p, ["g"], [*running, RunningApp("c", "small")], "small").allowed


def test_quota_summary_exactly(policy):
    s = quota_summary(
        policy, ["data-scientists"], [RunningApp("b", "small"), RunningApp("a", "large")], 4
    )
    assert s == {
        "groups": ["data-scientists"],
        "profiles": [
            {"slug": "small", "display_name": "Small"},
            {"slug": "large", "display_name": "Large"},
        ],
        "default_profile": "small",
        "max_running_apps": 4,
        "running_apps": ["a", "b"],
        "max_apps": 10,
        "apps": 4,
        "max_total_cpu": 8,
        "max_total_memory": None,
        "idle_timeout": None,
        "may_share": True,
        "may_share_links": False,
        "max_link_days": 1.0,
        "may_start_apps": True,
    }
    assert summary_line(s) == "2 of 4 apps running; sizes: Small, Large"
    no_running = parse_policy(
        {**BASE, "groups": {"g": {"profiles": ["small"], "max_running_apps": 0}}}, "t"
    )
    assert quota_summary(no_running, ["g"], [], 0)["may_start_apps"] is False
    no_profiles = parse_policy(
        {**BASE, "groups": {"g": {"profiles": [], "max_running_apps": 2}}}, "t"
    )
    assert quota_summary(no_profiles, ["g"], [], 0)["may_start_apps"] is False
