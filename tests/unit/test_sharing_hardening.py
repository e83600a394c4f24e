"""The policy's link rules never fail with a 500 on odd ``expires_in`` values or body shapes
(issue #12, point 5); tests/security/test_audit_hardening.py sends the same bodies to the real
``POST /hub/api/share-codes/...``."""

import math

import pytest
from tornado import web

from spawner.policy import parse_policy

POLICY = parse_policy(
    {
        "profiles": {"small": {"display_name": "S", "cpu_limit": 1, "mem_limit": "1G"}},
        "groups": {
            "analysts": {"profiles": ["small"], "may_share_links": False},
            "data-scientists": {"profiles": ["small"], "may_share_links": True, "max_link_days": 2},
        },
        "defaults": {"profiles": [], "max_running_apps": 0, "max_apps": 0},
    },
    "p.yaml",
)


@pytest.mark.parametrize(
    "asked",
    [10**400, -(10**400), 10**30, math.inf, -math.inf, math.nan, 1e308, True, "3", [1], {"a": 1}],
    ids=[
        "10**400",
        "-10**400",
        "10**30",
        "inf",
        "-inf",
        "nan",
        "1e308",
        "true",
        "string",
        "list",
        "object",
    ],
)
def test_odd_expires_in_values_get_an_answer_not_an_exception(asked):
    from spawner.sharing import link_problem

    problem = link_problem(POLICY, ["data-scientists"], "bob", asked)  # no exception
    assert problem is None or problem[0] == 400  # None: JupyterHub's validation answers
    if (
        isinstance(asked, (int, float))
        and not isinstance(asked, bool)
        and not (isinstance(asked, float) and not math.isfinite(asked))
        and asked > 2 * 86400
    ):
        assert problem is not None and "at most 2 days" in problem[1]
        assert "inf" not in problem[1] and "e+" not in problem[1]


@pytest.mark.parametrize("body", [[], [1, 2], "text", 3, 1.5, True, False, [{"expires_in": 60}]])
def test_a_share_code_body_that_is_not_an_object_is_a_400(body):
    from spawner.sharing import share_code_request

    with pytest.raises(web.HTTPError) as e:
        share_code_request(body)
    assert e.value.status_code == 400 and "JSON object" in e.value.log_message


@pytest.mark.parametrize(
    "body,expected", [(None, {}), ({}, {}), ({"expires_in": 60}, {"expires_in": 60})]
)
def test_an_object_or_no_body_is_read_as_it_is(body, expected):
    from spawner.sharing import share_code_request

    assert share_code_request(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": ["bogus"]},
        {"scopes": ["read:users!foo=bar"]},
        {"scopes": "x"},
        {"scopes": [1]},
        {"expires_in": math.nan},
        {"expires_in": math.inf},
        {"expires_in": 10**400},
        {"unknown": 1},
    ],
)
def test_bodies_jupyterhub_refuses_or_fails_on_are_a_400(body):
    from spawner.sharing import share_code_request

    with pytest.raises(web.HTTPError) as e:
        share_code_request(body)
    assert e.value.status_code == 400 and e.value.log_message
