import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from spawner.policy import (
    PolicyError,
    Rule,
    RunningApp,
    combine,
    decide_start,
    limits_for,
    load_policy,
    main,
    parse_bytes,
    parse_policy,
    quota_summary,
    summary_line,
)
from tests.helpers.hub import REPO

EXAMPLE = REPO / "hub_config" / "policy.yaml"

BASE = {
    "profiles": {
        "small": {"display_name": "Small", "cpu_limit": 1, "mem_limit": "2G"},
        "medium": {"display_name": "Medium", "cpu_limit": 2, "mem_limit": "4G"},
        "large": {"display_name": "Large", "cpu_limit": 4, "mem_limit": "16G"},
    },
    "groups": {
        "analysts": {
            "profiles": ["small"],
            "default_profile": "small",
            "max_running_apps": 2,
            "max_apps": 5,
        },
        "data-scientists": {
            "profiles": ["small", "large"],
            "default_profile": "small",
            "max_running_apps": 4,
            "max_apps": 10,
            "max_total_cpu": 8,
        },
    },
    "defaults": {"profiles": [], "max_running_apps": 0, "max_apps": 0},
}


@pytest.fixture
def policy():
    return parse_policy(BASE, "test.yaml")


def test_the_documented_example_is_valid():
    p = load_policy(EXAMPLE)
    assert {"small", "medium", "large"} <= set(p.profiles)
    assert p.defaults.profiles == ()


@pytest.mark.parametrize(
    "value, expected",
    [
        ("512M", 512 * 2**20),
        ("2G", 2 * 2**30),
        ("16Gi", 16 * 2**30),
        (1024, 1024),
        ("1.5G", int(1.5 * 2**30)),
    ],
)
def test_sizes(value, expected):
    assert parse_bytes(value) == expected


@pytest.mark.parametrize(
    "patch, key, words",
    [
        (
            {"groups": {"analysts": {"profiles": ["huge"]}}},
            "groups.analysts.profiles",
            "no profile 'huge'",
        ),
        (
            {"groups": {"analysts": {"profiles": ["small"], "default_profile": "large"}}},
            "groups.analysts.default_profile",
            "not in this group's profiles",
        ),
        (
            {"groups": {"analysts": {"max_running_apps": "two"}}},
            "groups.analysts.max_running_apps",
            "whole number",
        ),
        (
            {"groups": {"analysts": {"max_running_apps": -1}}},
            "groups.analysts.max_running_apps",
            "at least 0",
        ),
        (
            {"groups": {"analysts": {"max_apps": 1, "max_running_apps": 2, "profiles": ["small"]}}},
            "groups.analysts.max_running_apps",
            "larger than max_apps",
        ),
        ({"groups": {"analysts": {"colour": "red"}}}, "groups.analysts.colour", "unknown key"),
        ({"profiles": {"Big Box": {}}}, "profiles.Big Box", "profile slug"),
        ({"profiles": {"small": {"mem_limit": "lots"}}}, "profiles.small.mem_limit", "not a size"),
        (
            {"profiles": {"small": {"mem_guarantee": "4G", "mem_limit": "2G"}}},
            "profiles.small.mem_guarantee",
            "larger than mem_limit",
        ),
        (
            {"groups": {"analysts": {"may_share": "yes"}}},
            "groups.analysts.may_share",
            "true or false",
        ),
        ({"extra": 1}, "(top level).extra", "unknown key"),
        ({"groups": ["analysts"]}, "groups", "expected a mapping"),
    ],
)
def test_a_bad_file_names_the_file_the_key_and_the_problem(patch, key, words):
    data = {**BASE, **patch}
    with pytest.raises(PolicyError) as e:
        parse_policy(data, "policy.yaml")
    assert str(e.value).startswith(f"policy.yaml: {key}: ")
    assert words in str(e.value)


def test_unreadable_or_invalid_yaml_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)


def test_no_group_means_view_only(policy):
    d = decide_start(policy, ["viewers"], [], None)
    assert not d.allowed and d.code == "no_apps"
    assert "may open apps shared with them" in d.reason


def test_default_profile_is_used_when_none_is_asked(policy):
    d = decide_start(policy, ["analysts"], [], None, "sales")
    assert d.allowed and d.profile.slug == "small"


def test_profile_outside_the_group_is_refused_with_its_name(policy):
    d = decide_start(policy, ["analysts"], [], "large")
    assert not d.allowed and d.code == "profile"
    assert d.reason == "analysts may use the profiles small; 'Large' is not one of them."


def test_running_limit_names_the_running_apps(policy):
    running = [RunningApp("sales", "small"), RunningApp("churn", "small")]
    d = decide_start(policy, ["analysts"], running, None, "new")
    assert not d.allowed
    assert d.reason == (
        "analysts may run 2 apps at once; you are running churn, sales. Stop one to start another."
    )


def test_cpu_total_across_running_apps(policy):
    running = [RunningApp("a", "large")]
    assert decide_start(policy, ["data-scientists"], running, "large").allowed  # 8 of 8
    d = decide_start(policy, ["data-scientists"], running * 2, "small")  # 9 > 8
    assert not d.allowed and d.code == "cpu" and "8 CPUs" in d.reason


def test_several_groups_combine_to_the_most_permissive(policy):
    rule = limits_for(policy, ["analysts", "data-scientists"]).rule
    assert rule.profiles == ("small", "large")
    assert rule.max_running_apps == 4 and rule.max_apps == 10
    assert rule.max_total_cpu is None  # analysts have no CPU total: no limit wins
    assert rule.default_profile == "small"


def test_quota_summary_and_home_line(policy):
    s = quota_summary(policy, ["analysts"], [RunningApp("sales", "small")], kept=3)
    assert s["running_apps"] == ["sales"] and s["max_running_apps"] == 2 and s["apps"] == 3
    assert summary_line(s) == "1 of 2 apps running; sizes: Small"
    v = quota_summary(policy, [], [], 0)
    assert not v["may_start_apps"] and "cannot start apps" in summary_line(v)


# ---- properties of the combination rule ------------------------------------------------
SLUGS = ["small", "medium", "large"]
rules = st.builds(
    Rule,
    profiles=st.lists(st.sampled_from(SLUGS), unique=True).map(tuple),
    max_running_apps=st.integers(0, 5),
    max_apps=st.integers(0, 10),
    max_total_cpu=st.none() | st.floats(0, 16),
    max_total_memory=st.none() | st.integers(0, 2**36),
    may_share=st.booleans(),
    may_share_links=st.booleans(),
    max_link_days=st.floats(0.01, 30),
)


def _as_policy(group_rules: dict) -> object:
    data = {"profiles": BASE["profiles"], "groups": {}, "defaults": BASE["defaults"]}
    for name, r in group_rules.items():
        data["groups"][name] = {
            "profiles": list(r.profiles),
            "max_running_apps": r.max_running_apps,
            "max_apps": max(r.max_apps, r.max_running_apps),
            "max_total_cpu": r.max_total_cpu,
            "max_total_memory": r.max_total_memory,
            "may_share": r.may_share,
            "may_share_links": r.may_share_links,
            "max_link_days": r.max_link_days,
        }
    return parse_policy(data)


def _allowed_set(policy, groups, running, profiles=SLUGS):
    return {p for p in profiles if decide_start(policy, groups, running, p).allowed}


@given(
    st.dictionaries(st.sampled_from(["g1", "g2", "g3"]), rules, min_size=1),
    st.sampled_from(["g1", "g2", "g3"]),
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(SLUGS)),
        max_size=4,
        unique_by=lambda t: t[0],
    ),
)
@settings(max_examples=300, deadline=None)
def test_adding_a_group_never_reduces_what_a_user_may_do(group_rules, extra, running_raw):
    policy = _as_policy(group_rules)
    running = [RunningApp(n, p) for n, p in running_raw]
    for base in ([], [g for g in group_rules if g != extra]):
        before = limits_for(policy, base).rule
        after = limits_for(policy, [*base, extra]).rule
        assert set(before.profiles) <= set(after.profiles)
        assert after.max_running_apps >= before.max_running_apps
        assert after.max_apps >= before.max_apps
        assert (
            after.may_share >= before.may_share and after.may_share_links >= before.may_share_links
        )
        if base:  # from the view-only defaults anything goes; between groups, never less
            assert _allowed_set(policy, base, running) <= _allowed_set(
                policy, [*base, extra], running
            )


@given(rules, st.lists(st.sampled_from(SLUGS), max_size=6), st.sampled_from([*SLUGS, None]))
@settings(max_examples=200, deadline=None)
def test_a_decision_changes_nothing(rule, running_profiles, requested):
    policy = _as_policy({"g": rule})
    running = [RunningApp(f"app{i}", p) for i, p in enumerate(running_profiles)]
    snapshot = (repr(policy), list(running))
    first = decide_start(policy, ["g"], running, requested)
    assert (repr(policy), running) == snapshot
    assert decide_start(policy, ["g"], running, requested) == first
    assert first.reason


def test_combine_of_one_rule_is_that_rule():
    r = Rule(profiles=("small",), default_profile="small", max_running_apps=2, max_apps=3)
    assert combine([r]) == r


# ---- the CLI -----------------------------------------------------------------------------
def test_cli_prints_the_decision(capsys):
    code = main(["check", str(EXAMPLE), "--groups", "analysts", "--running", "3"])
    out = capsys.readouterr().out
    assert code == 1 and out.startswith("refused: analysts may run 3 apps at once")
    code = main(
        [
            "check",
            str(EXAMPLE),
            "--groups",
            "analysts,data-scientists",
            "--running",
            "2",
            "--profile",
            "large",
        ]
    )
    assert code == 0 and capsys.readouterr().out.startswith("allowed:")


def test_cli_reports_an_invalid_file(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"groups": {"x": {"profiles": ["nope"]}}}))
    assert main(["check", str(bad)]) == 2
    assert "groups.x.profiles" in capsys.readouterr().err


@pytest.mark.parametrize(
    "sources, words",
    [
        ({"git_hosts": "github.com"}, "sources.git_hosts: expected a list"),
        (
            {"git_hosts": ["https://github.com"]},
            "sources.git_hosts: 'https://github.com' is not like github.com",
        ),
        ({"image_prefixes": ["ghcr.io/example/apps"]}, "sources.image_prefixes"),
        ({"git_image": "alpine/git"}, "sources.git_image: expected an image with a tag"),
        ({"git_hostz": []}, "sources.git_hostz: unknown key"),
    ],
)
def test_bad_sources_name_the_key(sources, words):
    data = {"profiles": {}, "groups": {}, "defaults": {"profiles": []}, "sources": sources}
    with pytest.raises(PolicyError, match=re.escape(words)):
        parse_policy(data, "p.yaml")


def test_sources_default_to_none_allowed():
    p = parse_policy({"profiles": {}, "groups": {}, "defaults": {"profiles": []}}, "p.yaml")
    assert p.sources.git_hosts == () and p.sources.image_prefixes == ()


# ---- each rule and message, one by one (issue 18: mutation testing of the policy) ---------
from spawner.policy import Policy, Profile, Sources, cached_policy, format_bytes  # noqa: E402


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


def test_cached_policy_rereads_the_file_when_it_changes(tmp_path):
    import os

    f = tmp_path / "policy.yaml"
    f.write_text(yaml.safe_dump({**BASE}))
    first = cached_policy(str(f))
    assert cached_policy(str(f)) is first  # unchanged: the same object
    changed = {**BASE, "groups": {"analysts": {"profiles": ["small"], "max_running_apps": 1}}}
    f.write_text(yaml.safe_dump(changed))
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = cached_policy(str(f))
    assert second is not first and second.groups["analysts"].max_running_apps == 1
    assert second.source == str(f)


def test_load_policy_names_the_file_and_reads_yaml(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("groups:\n  g: {profiles: [x]}\n")
    with pytest.raises(PolicyError) as e:
        load_policy(f)
    assert str(e.value) == f"{f}: groups.g.profiles: no profile 'x' (defined: none)"
    with pytest.raises(PolicyError) as e:
        load_policy(tmp_path / "none.yaml")
    assert (
        str(e.value)
        == f"{tmp_path / 'none.yaml'}: cannot read the policy file: No such file or directory"
    )
    f.write_text("a: [")
    with pytest.raises(PolicyError) as e:
        load_policy(f)
    assert str(e.value).startswith(f"{f}: not valid YAML: ")


def test_cli_without_groups_only_checks_the_file(capsys):
    assert main(["check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == f"ok: {EXAMPLE}: 3 profiles, 2 groups\n"


def test_cli_decides_with_the_running_apps_profile_and_the_requested_one(capsys):
    # data-scientists: 24G in total; 2 running on large (16G each) is over it already
    code = main(
        [
            "check",
            str(EXAMPLE),
            "--groups",
            "data-scientists",
            "--running",
            "1",
            "--running-profile",
            "large",
            "--profile",
            "large",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and out == (
        "refused: data-scientists may use 24G of memory across running apps; "
        "starting this app on large would make 32G. Stop an app or pick a "
        "smaller profile.\n"
    )
    code = main(
        [
            "check",
            str(EXAMPLE),
            "--groups",
            "data-scientists",
            "--running",
            "1",
            "--profile",
            "large",
        ]
    )  # the running one on the default (small): 2G + 16G
    assert (
        code == 0
        and capsys.readouterr().out == "allowed: The app may start on Large: 4 CPU, 16 GB.\n"
    )
    code = main(["check", str(EXAMPLE), "--groups", ",analysts,", "--running", "3"])
    assert code == 1 and "you are running app1, app2, app3." in capsys.readouterr().out
    assert main(["check", str(EXAMPLE), "--groups", ""]) == 1  # no group: view only
    assert "Users in no app-building group" in capsys.readouterr().out


@pytest.mark.parametrize(
    "data, message",
    [
        (
            _policy(profiles={"small": {"cpu_guarantee": "x"}}),
            "p.yaml: profiles.small.cpu_guarantee: expected a number, got 'x'",
        ),
        (
            _policy(profiles={"small": {"mem_guarantee": "x"}}),
            "p.yaml: profiles.small.mem_guarantee: 'x' is not a size like 512M or 2G",
        ),
        (_policy(groups={"g": "x"}), "p.yaml: groups.g: expected a mapping, got str"),
        (
            _policy(profiles={"small": {}, "large": {}}, groups={"g": {"profiles": ["huge"]}}),
            "p.yaml: groups.g.profiles: no profile 'huge' (defined: small, large)",
        ),
        (
            _policy(groups={"g": {"max_apps": 1.5}}),
            "p.yaml: groups.g.max_apps: expected a whole number, got 1.5",
        ),
        (
            _policy(groups={"g": {"max_running_apps": 1.5}}),
            "p.yaml: groups.g.max_running_apps: expected a whole number, got 1.5",
        ),
        (
            _policy(groups={"g": {"idle_timeout": 30.5}}),
            "p.yaml: groups.g.idle_timeout: expected a whole number, got 30.5",
        ),
        (
            _policy(groups={"g": {"max_total_cpu": "x"}}),
            "p.yaml: groups.g.max_total_cpu: expected a number, got 'x'",
        ),
        (
            _policy(sources={"git_image": "ghcr.io/x:1/git"}),
            "p.yaml: sources.git_image: expected an image with a tag",
        ),
        (_policy(profiles=["small"]), "p.yaml: profiles: expected a mapping, got list"),
        (_policy(groups=["g"]), "p.yaml: groups: expected a mapping, got list"),
        (_policy(defaults="x"), "p.yaml: defaults: expected a mapping, got str"),
        (
            _policy(defaults={"profiles": ["huge"]}),
            "p.yaml: defaults.profiles: no profile 'huge' (defined: small)",
        ),
    ],
)
def test_more_file_problems_with_their_exact_message(data, message):
    with pytest.raises(PolicyError) as e:
        parse_policy(data, "p.yaml")
    assert str(e.value).startswith(message)


def test_a_profile_with_nothing_but_its_slug():
    p = parse_policy(_policy(profiles={"bare": {}}, defaults={"profiles": ["bare"]}), "p.yaml")
    assert p.profiles["bare"] == Profile("bare", "bare", None, None, None, None, 0, {}, (), None)
    assert p.defaults.profiles == ("bare",) and p.defaults.default_profile == "bare"
    assert parse_policy({}).source == "<policy>"


def test_a_git_image_without_a_registry_path():
    assert (
        parse_policy(_policy(sources={"git_image": "git:2"}), "p.yaml").sources.git_image == "git:2"
    )


@pytest.mark.parametrize(
    "value, message",
    [
        (True, "expected a size like 512M or 2G"),
        (-1, "must not be negative"),
        ("x", "'x' is not a size like 512M or 2G"),
    ],
)
def test_size_messages_exactly(value, message):
    with pytest.raises(ValueError) as e:
        parse_bytes(value)
    assert str(e.value) == message


def test_combine_of_nothing_says_so():
    with pytest.raises(ValueError) as e:
        combine([])
    assert str(e.value) == "no rules to combine"


def test_refusals_are_false_not_just_falsy(policy):
    two = parse_policy(
        {
            **BASE,
            "groups": {
                "g": {
                    "profiles": ["small", "medium"],
                    "max_running_apps": 1,
                    "max_total_cpu": 1,
                    "max_total_memory": "2G",
                }
            },
        },
        "t",
    )
    cases = [
        decide_start(policy, ["viewers"], [], None),
        decide_start(two, ["g"], [], "large"),
        decide_start(two, ["g"], [RunningApp("a", "small")], "small"),
        decide_start(two, ["g"], [], "medium"),  # 2 CPUs > 1
    ]
    mem = parse_policy(
        {
            **BASE,
            "groups": {
                "g": {"profiles": ["medium"], "max_running_apps": 2, "max_total_memory": "2G"}
            },
        },
        "t",
    )
    cases.append(decide_start(mem, ["g"], [RunningApp("a", "medium")], "medium"))
    assert [(d.allowed, d.code) for d in cases] == [
        (False, "no_apps"),
        (False, "profile"),
        (False, "running"),
        (False, "cpu"),
        (False, "memory"),
    ]
    assert cases[1].reason == "g may use the profiles small, medium; 'Large' is not one of them."
    assert decide_start(two, ["g"], [], "small").allowed is True


def test_one_running_app_allowed_is_enough_to_start_apps():
    p = parse_policy({**BASE, "groups": {"g": {"profiles": ["small"], "max_running_apps": 1}}}, "t")
    assert quota_summary(p, ["g"], [], 0)["may_start_apps"] is True


def test_cli_help_names_the_program_and_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    raw = capsys.readouterr().out
    out = " ".join(raw.split())
    assert out.startswith("usage: python -m spawner.policy [-h] {check} ...")
    assert "Check a group policy file, or ask it for a decision." in raw.splitlines()
    assert "check validate the file; with --groups, decide one start" in out
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in (
        "--groups GROUPS comma-separated hub groups of the user",
        "--running RUNNING how many apps the user runs now",
        "--running-profile RUNNING_PROFILE profile of those running apps (default: the user's default)",
        "--profile PROFILE profile requested for the new app",
    ):
        assert text in out


def test_cli_needs_a_command(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    assert "error: the following arguments are required: command" in capsys.readouterr().err


def test_cli_counts_no_running_apps_by_default(tmp_path, capsys):
    f = tmp_path / "one.yaml"
    f.write_text(
        yaml.safe_dump({**BASE, "groups": {"g": {"profiles": ["small"], "max_running_apps": 1}}})
    )
    assert main(["check", str(f), "--groups", "g"]) == 0
    assert capsys.readouterr().out == "allowed: The app may start on Small.\n"


def test_no_group_that_may_share_means_no_sharing():
    assert combine([Rule(may_share=False), Rule(may_share=False)]).may_share is False
    assert combine([Rule(may_share_links=False)]).may_share_links is False
