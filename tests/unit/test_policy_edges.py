"""The group policy at its edges: re-reading, the file, the CLI, exact messages (issue 18).
The main rules are in test_policy.py and test_policy_rules.py."""

import pytest
import yaml

from spawner.policy import (
    PolicyError,
    Profile,
    Rule,
    RunningApp,
    cached_policy,
    combine,
    decide_start,
    load_policy,
    main,
    parse_bytes,
    parse_policy,
    quota_summary,
)
from tests.unit.test_policy import BASE, EXAMPLE
from tests.unit.test_policy_rules import _policy


@pytest.fixture
def policy():
    return parse_policy(BASE, "test.yaml")


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
