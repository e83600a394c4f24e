"""Data access per group in the group policy (issue #16, point 4): ``volumes`` (existing PVCs,
read-only or read-write, at a mount path) and ``service_account`` (a Kubernetes service
account for Workload Identity / IRSA). Checked at load with the field named; combined as the
union of volumes (read-write if any group grants write) and one service account only when
exactly one is granted. The pod side is tests/unit/test_kube_data_access.py.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from spawner.policy import (
    DataAccess,
    PolicyError,
    Rule,
    VolumeGrant,
    combine,
    data_access,
    kubernetes_only_grants,
    load_policy,
    main,
    parse_policy,
)
from tests.helpers.hub import REPO

EXAMPLE = REPO / "hub_config" / "policy.yaml"

BASE = {
    "profiles": {"small": {"display_name": "Small", "cpu_limit": 1, "mem_limit": "2G"}},
    "groups": {
        "analysts": {
            "profiles": ["small"],
            "max_running_apps": 2,
            "max_apps": 5,
            "volumes": [{"claim": "sales-data", "mount_path": "/data/sales"}],
        },
        "finance": {
            "profiles": ["small"],
            "max_running_apps": 2,
            "max_apps": 5,
            "volumes": [
                {"claim": "sales-data", "mount_path": "/data/sales", "read_only": False},
                {"claim": "ledger", "mount_path": "/data/ledger"},
            ],
            "service_account": "bq-finance",
        },
        "bq-readers": {
            "profiles": ["small"],
            "max_running_apps": 1,
            "max_apps": 1,
            "service_account": "bq-readers",
        },
        "also-finance": {"service_account": "bq-finance"},
    },
    "defaults": {"profiles": [], "max_running_apps": 0, "max_apps": 0},
}


def policy(data=None):
    return parse_policy(copy.deepcopy(data or BASE), "policy.yaml")


def with_group(**rule):
    data = copy.deepcopy(BASE)
    data["groups"]["x"] = {"profiles": ["small"], "max_running_apps": 1, "max_apps": 1, **rule}
    return data


# ---- schema: checked at load, the field named ---------------------------------------------
def test_volumes_and_service_account_parse():
    p = policy()
    assert p.groups["analysts"].volumes == (VolumeGrant("sales-data", "/data/sales", True),)
    assert p.groups["finance"].volumes[0].read_only is False
    assert p.groups["finance"].service_account == "bq-finance"
    assert p.groups["analysts"].service_account is None
    assert p.defaults.volumes == () and p.defaults.service_account is None


@pytest.mark.parametrize(
    "rule, key, words",
    [
        ({"volumes": {"claim": "x"}}, "groups.x.volumes", "expected a list"),
        ({"volumes": ["sales-data"]}, "groups.x.volumes[0]", "expected a mapping"),
        ({"volumes": [{"mount_path": "/data/x"}]}, "groups.x.volumes[0].claim", "is required"),
        (
            {"volumes": [{"claim": "Sales_Data", "mount_path": "/data/x"}]},
            "groups.x.volumes[0].claim",
            "is not a PersistentVolumeClaim name",
        ),
        ({"volumes": [{"claim": "c"}]}, "groups.x.volumes[0].mount_path", "is required"),
        (
            {"volumes": [{"claim": "c", "mount_path": "data/x"}]},
            "groups.x.volumes[0].mount_path",
            "expected an absolute path",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/"}]},
            "groups.x.volumes[0].mount_path",
            "expected an absolute path",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/data/../etc"}]},
            "groups.x.volumes[0].mount_path",
            "not a plain normalised path",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/data/x/"}]},
            "groups.x.volumes[0].mount_path",
            "not a plain normalised path",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/tmp/data"}]},
            "groups.x.volumes[0].mount_path",
            "overlaps /tmp",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/home"}]},
            "groups.x.volumes[0].mount_path",
            "overlaps /home/analyst",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/app"}]},
            "groups.x.volumes[0].mount_path",
            "overlaps /app",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/var/run/secrets/kubernetes.io"}]},
            "groups.x.volumes[0].mount_path",
            "inside /var/run",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/etc/ssl"}]},
            "groups.x.volumes[0].mount_path",
            "inside /etc",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/data/c", "read_only": "yes"}]},
            "groups.x.volumes[0].read_only",
            "expected true or false",
        ),
        (
            {"volumes": [{"claim": "c", "mount_path": "/data/c", "readOnly": True}]},
            "groups.x.volumes[0].readOnly",
            "unknown key",
        ),
        (
            {
                "volumes": [
                    {"claim": "c", "mount_path": "/data"},
                    {"claim": "d", "mount_path": "/data/d"},
                ]
            },
            "groups.x.volumes[1].mount_path",
            "overlaps /data (groups.x.volumes[0])",
        ),
        (
            {"service_account": "BigQuery Readers"},
            "groups.x.service_account",
            "not a Kubernetes service account name",
        ),
        ({"service_account": "a" * 64}, "groups.x.service_account", "1-63"),
        ({"service_account": ["a", "b"]}, "groups.x.service_account", "not a Kubernetes"),
    ],
)
def test_a_bad_grant_stops_the_hub_naming_the_field(rule, key, words):
    with pytest.raises(PolicyError) as e:
        policy(with_group(**rule))
    assert str(e.value).startswith(f"policy.yaml: {key}: "), str(e.value)
    assert words in str(e.value)


def test_one_mount_path_holds_one_claim_across_the_policy():
    data = with_group(volumes=[{"claim": "other-data", "mount_path": "/data/sales"}])
    with pytest.raises(PolicyError) as e:
        policy(data)
    msg = str(e.value)
    assert msg.startswith("policy.yaml: groups.x.volumes[0].mount_path: ")
    assert "groups.analysts mounts claim sales-data" in msg
    # nested under another group's path: refused the same way
    data = with_group(volumes=[{"claim": "other-data", "mount_path": "/data/sales/2024"}])
    with pytest.raises(PolicyError, match="overlaps /data/sales"):
        policy(data)
    # defaults take part too
    data = copy.deepcopy(BASE)
    data["defaults"]["volumes"] = [{"claim": "reference", "mount_path": "/data/ledger"}]
    with pytest.raises(PolicyError, match=r"defaults\.volumes\[0\]\.mount_path: .*claim ledger"):
        policy(data)
    # the same claim at the same path in several groups is fine (read-only or not)
    assert policy().groups["finance"].volumes[0].claim == "sales-data"


# ---- combining groups ---------------------------------------------------------------------
def test_volumes_are_the_union_read_write_if_any_group_grants_write():
    p = policy()
    assert data_access(p, ["analysts"]) == DataAccess(
        (VolumeGrant("sales-data", "/data/sales", True),), None
    )
    both = data_access(p, ["analysts", "finance"])
    assert both.volumes == (
        VolumeGrant("sales-data", "/data/sales", False),
        VolumeGrant("ledger", "/data/ledger", True),
    )
    assert both.service_account == "bq-finance" and both.problem == ""
    assert data_access(p, []) == DataAccess()  # defaults grant nothing here
    assert data_access(p, ["not-in-the-policy"]) == DataAccess()


def test_a_service_account_only_when_exactly_one_is_granted():
    p = policy()
    assert data_access(p, ["bq-readers"]).service_account == "bq-readers"
    # two groups granting the same account: that one
    assert data_access(p, ["finance", "also-finance"]).service_account == "bq-finance"
    clash = data_access(p, ["finance", "bq-readers", "also-finance"])
    assert clash.service_account is None
    assert clash.problem == (
        "Your groups grant different service accounts for apps (finance, also-finance: "
        "bq-finance; bq-readers: bq-readers), and an app runs as one. Ask an admin to give "
        "you one: one group of yours, or the same account in each (the group policy's "
        "service_account)."
    )
    # the volumes are still known (for the message or the CLI), the account is not
    assert [v.claim for v in clash.volumes] == ["sales-data", "ledger"]


def test_defaults_grant_to_everyone_and_count_as_a_grantor():
    data = copy.deepcopy(BASE)
    data["defaults"]["volumes"] = [{"claim": "reference", "mount_path": "/data/reference"}]
    data["defaults"]["service_account"] = "everyone"
    p = policy(data)
    assert data_access(p, []) == DataAccess(
        (VolumeGrant("reference", "/data/reference"),), "everyone"
    )
    assert [v.claim for v in data_access(p, ["analysts"]).volumes] == ["sales-data", "reference"]
    assert "defaults: everyone" in data_access(p, ["bq-readers"]).problem


def test_combine_carries_the_union_and_a_single_account():
    a = Rule(volumes=(VolumeGrant("c", "/data/c"),), service_account="sa")
    b = Rule(volumes=(VolumeGrant("c", "/data/c", False), VolumeGrant("d", "/data/d")))
    r = combine([a, b])
    assert r.volumes == (VolumeGrant("c", "/data/c", False), VolumeGrant("d", "/data/d"))
    assert r.service_account == "sa"
    assert combine([a, Rule(service_account="other")]).service_account is None
    assert combine([a, Rule(service_account="sa")]).service_account == "sa"


names = st.sampled_from(["g1", "g2", "g3", "g4"])
grant = st.fixed_dictionaries(
    {
        "volumes": st.lists(
            st.builds(
                lambda c, ro: {"claim": c, "mount_path": f"/data/{c}", "read_only": ro},
                st.sampled_from(["a", "b", "c"]),
                st.booleans(),
            ),
            max_size=3,
            unique_by=lambda v: v["claim"],
        ),
        "service_account": st.one_of(st.none(), st.sampled_from(["sa-1", "sa-2"])),
    }
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(names, grant, min_size=1), st.lists(names, unique=True))
def test_data_access_rules_hold_on_random_policies(groups, member_of):
    data = {
        "groups": {
            g: {
                "volumes": r["volumes"],
                **({"service_account": r["service_account"]} if r["service_account"] else {}),
            }
            for g, r in groups.items()
        }
    }
    p = parse_policy(data, "p.yaml")
    access = data_access(p, member_of)
    mine = [g for g in p.groups if g in member_of]
    granted = {(v["claim"], v["mount_path"]) for g in mine for v in groups[g]["volumes"]}
    # union: every granted volume once; read-write iff some group of the user grants write
    assert {(v.claim, v.mount_path) for v in access.volumes} == granted
    for v in access.volumes:
        writers = [
            g
            for g in mine
            for w in groups[g]["volumes"]
            if w["claim"] == v.claim and not w["read_only"]
        ]
        assert v.read_only == (not writers)
    accounts = {groups[g]["service_account"] for g in mine} - {None}
    if len(accounts) == 1:
        assert access.service_account == accounts.pop() and not access.problem
    elif not accounts:
        assert access.service_account is None and not access.problem
    else:
        assert access.service_account is None
        assert all(a in access.problem for a in accounts)


# ---- Kubernetes only: said by the CLI ------------------------------------------------------
def test_the_cli_shows_a_users_data_access_and_refuses_a_clash(tmp_path, capsys):
    f = tmp_path / "policy.yaml"
    f.write_text(yaml.safe_dump(BASE, sort_keys=False))
    assert main(["check", str(f)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "note: groups.analysts.volumes, groups.finance.volumes, groups.finance.service_account, "
        "groups.bq-readers.service_account, groups.also-finance.service_account: Kubernetes "
        "only; the local spawner does not apply it"
    )
    assert main(["check", str(f), "--groups", "analysts,finance"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("allowed:")
    assert out[1] == (
        "data access (Kubernetes only; the local spawner does not apply it): sales-data at "
        "/data/sales (read-write); ledger at /data/ledger (read-only); service account bq-finance"
    )
    assert main(["check", str(f), "--groups", "finance,bq-readers"]) == 1
    assert capsys.readouterr().out.startswith(
        "refused: Your groups grant different service accounts"
    )


def test_kubernetes_only_grants_lists_where_the_policy_grants_data():
    assert kubernetes_only_grants(policy())[:2] == [
        "groups.analysts.volumes",
        "groups.finance.volumes",
    ]
    assert kubernetes_only_grants(load_policy(EXAMPLE)) == []  # the example grants none


def test_the_commented_example_in_the_shipped_policy_is_valid():
    """hub_config/policy.yaml shows the data-access keys in a comment (the PVCs and the service
    account are the site's to create); put into the file's groups, they load."""
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Data access"))
    block = []
    for line in lines[start + 1 :]:
        if block and not line.startswith("#   "):
            break
        if line.startswith("#   "):
            block.append(line[4:])
    grants = yaml.safe_load("\n".join(block))
    example = yaml.safe_load(EXAMPLE.read_text())
    assert set(grants) <= set(example["groups"])
    for group, extra in grants.items():
        example["groups"][group].update(extra)
    p = parse_policy(example, "example")
    access = data_access(p, ["analysts", "data-scientists"])
    assert access.service_account == "bigquery-sales" and not access.problem
    assert [(v.claim, v.read_only) for v in access.volumes] == [
        ("sales-reference", True),
        ("sales-scratch", False),
    ]
    assert data_access(p, ["analysts"]).service_account is None
