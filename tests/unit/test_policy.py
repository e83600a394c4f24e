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
