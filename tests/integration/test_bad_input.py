"""Bad input against the real hub: generated app names, entry paths and option bodies.

Every answer must be a 4xx (or a success for an input that is in fact fine), never a 5xx,
and no app may start from a refused request. The number of cases tried is printed (-s).
"""

import json
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.helpers.hub import PERMISSIVE_POLICY, running_hub

TRIED = {"names": 0, "paths": 0, "bodies": 0, "raw": 0}
XSS = "<script>alert('x')</script>"
POLICY = PERMISSIVE_POLICY.replace('display_name: "Small"', f'display_name: "{XSS} Small"')


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("badinput"), policy=POLICY) as h:
        yield h
        print(f"bad-input cases tried: {TRIED} (total {sum(TRIED.values())})")


@pytest.fixture(scope="module")
def api(hub):
    s = requests.Session()
    s.headers["Authorization"] = f"token {hub.token('alice')}"
    return s


def _start(hub, api, name_quoted: str, body):
    kwargs = {"data": body} if isinstance(body, (bytes, str)) else {"json": body}
    r = api.post(f"{hub.url}/hub/api/users/alice/servers/{name_quoted}", timeout=60, **kwargs)
    assert r.status_code < 500, (name_quoted, body, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json")
        assert json.loads(r.text)["message"]
        assert "Traceback" not in r.text
    if r.status_code in (201, 202):  # a fine request: undo it
        api.delete(f"{hub.url}/hub/api/users/alice/servers/{name_quoted}", json={"remove": True},
                   timeout=60)
    else:
        api.delete(f"{hub.url}/hub/api/users/alice/servers/{name_quoted}", json={"remove": True},
                   timeout=30)
    return r


common = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@common
@given(name=st.text(min_size=1, max_size=80))
def test_generated_app_names_get_a_4xx_never_a_5xx(hub, api, name):
    TRIED["names"] += 1
    _start(hub, api, quote(name, safe=""), {"path": "apps/none/app.py"})


paths = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(["..", ".", "apps", "demo", "app.py", "", "/", "é", "\x00", "~"]),
             max_size=12).map("/".join),
)


@common
@given(path=paths)
def test_generated_entry_paths_get_a_4xx_and_nothing_starts(hub, api, path):
    TRIED["paths"] += 1
    before = len(hub.app_processes())
    r = _start(hub, api, "fuzz", {"path": path})
    if r.status_code >= 400:
        assert len(hub.app_processes()) == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)


@common
@given(body=st.one_of(json_values, st.dictionaries(
    st.sampled_from(["path", "profile", "source", "extra"]), json_values, max_size=4)))
def test_generated_option_bodies_get_a_4xx_never_a_5xx(hub, api, body):
    TRIED["bodies"] += 1
    _start(hub, api, "fuzz", body)


@common
@given(raw=st.binary(max_size=200) | st.just(b"{" * 5000) | st.just(b'{"path": "' + b"a" * 100_000 + b'"}'))
def test_raw_and_huge_bodies_get_a_4xx(hub, api, raw):
    TRIED["raw"] += 1
    _start(hub, api, "fuzz", raw)


def test_html_in_policy_names_is_escaped_in_pages(hub):
    alice = hub.login("alice")
    page = alice.get(f"{hub.url}/hub/spawn/alice/x", timeout=30).text
    assert XSS not in page
    assert "&lt;script&gt;" in page
    home = alice.get(f"{hub.url}/hub/home", timeout=30).text
    assert XSS not in home
