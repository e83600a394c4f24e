"""The group policy's link rules on JupyterHub's own share-codes API (not only in the page).

alice (analysts: links off) cannot make a link by REST, nor can an admin for her app; bob
(data-scientists: links for at most 2 days) gets a 400 past 2 days and a link within them.
"""

import pytest

from tests.helpers.hub import running_hub

pytestmark = pytest.mark.integration

POLICY = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 2G}
groups:
  analysts: {profiles: [small], max_running_apps: 5, max_apps: 10, may_share: true, may_share_links: false}
  data-scientists: {profiles: [small], max_running_apps: 5, max_apps: 10, may_share_links: true, max_link_days: 2}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


def test_link_rules_hold_on_the_rest_api(tmp_path):
    with running_hub(tmp_path, policy=POLICY) as hub:
        alice, bob, admin = hub.login("alice"), hub.login("bob"), hub.login("admin")
        for s, user in ((alice, "alice"), (bob, "bob")):
            hub.start_app(s, user, "demo", {"path": "apps/demo/app.py"})
        codes = f"{hub.url}/hub/api/share-codes"

        for who in (alice, admin):
            r = who.post(f"{codes}/alice/demo", json={"expires_in": 3600}, timeout=10)
            assert r.status_code == 403 and "turned off for alice's apps" in r.json()["message"], (
                r.text
            )
        assert alice.get(f"{codes}/alice/demo", timeout=10).json()["items"] == []
        r = alice.post(f"{hub.url}/hub/api/shares/alice/demo", json={"user": "carol"}, timeout=10)
        assert r.status_code == 200  # sharing with people still works

        r = bob.post(f"{codes}/bob/demo", json={"expires_in": 3 * 86400}, timeout=10)
        assert r.status_code == 400 and "at most 2 days" in r.json()["message"], r.text
        assert bob.get(f"{codes}/bob/demo", timeout=10).json()["items"] == []
        r = bob.post(f"{codes}/bob/demo", json={"expires_in": 2 * 86400}, timeout=10)
        assert r.status_code == 200 and r.json()["code"]
        r = bob.post(f"{codes}/bob/demo", json={}, timeout=10)  # JupyterHub's default: 1 day
        assert r.status_code == 200
        assert len(bob.get(f"{codes}/bob/demo", timeout=10).json()["items"]) == 2

        # Someone without `shares` on bob's app gets JupyterHub's answer, not the policy's.
        r = alice.post(f"{codes}/bob/demo", json={"expires_in": 3 * 86400}, timeout=10)
        assert r.status_code in (403, 404) and "2 days" not in r.text
        r = alice.post(f"{codes}/nobody/demo", json={}, timeout=10)
        assert r.status_code in (403, 404)
