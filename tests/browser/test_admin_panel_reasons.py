"""A person, in headless Chromium: the admin panel says why an app did not start or stop
(issue #15.7).

JupyterHub's panel says only "Failed to start server." (or "Failed to start 4 servers. Are
they already running?") and drops the hub's answer; hub_config/templates/admin.html adds the
hub's sentence under the panel's own line. Here alice may run one app at once and runs demo:

- Start on her stopped app "other" shows the quota refusal, in words about alice;
- Start All (which starts everyone's unnamed server; this hub's apps all have names) shows
  one sentence for everyone;
- Stop on a row the page still shows after alice deleted that app says so.

Screenshots: test-output/admin-panel-*.png.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.helpers.hub import running_hub

ONE_APP = """
profiles:
  small: {display_name: "Small", cpu_limit: 1, mem_limit: 2G}
groups:
  analysts: {profiles: [small], max_running_apps: 1, max_apps: 5, may_share: true}
defaults: {profiles: [], max_running_apps: 0, max_apps: 0}
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("adminpanel"), policy=ONE_APP) as h:
        alice = h.login("alice")
        h.start_app(alice, "alice", "demo", {"path": "apps/demo/app.py"})
        h.add_app("alice", "other", 'import streamlit as st\nst.title("Other")\n')
        r = alice.put(f"{h.url}/hub/api/users/alice/servers/other", json={}, timeout=30)
        assert r.status_code == 201, r.text
        yield h


def admin_panel(browser, hub):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    sign_in(page, hub, "admin")
    page.goto(hub.url + "/hub/admin")
    expect(page.locator('tr[data-testid="user-row-alice-other"]')).to_be_visible(timeout=30_000)
    return ctx, page


def panel_alert(page):
    return page.locator("#react-admin-hook .alert-danger")


def test_start_shows_the_quota_refusal_in_the_panel(browser, hub, output_dir):
    ctx, page = admin_panel(browser, hub)
    try:
        page.locator('tr[data-testid="user-row-alice-other"] .start-button').click()
        alert = panel_alert(page)
        expect(alert).to_contain_text("Failed to start server.")
        expect(alert.locator(".streamlit-admin-reason")).to_have_text(
            "Could not start alice’s app “other”: analysts may run 1 app at once; "
            "alice is running demo already."
        )
        expect(page.locator("#streamlit-admin-problems")).to_be_hidden()
        page.screenshot(path=str(output_dir / "admin-panel-start-refused.png"))
        # closing the panel's alert takes the reason with it
        alert.get_by_role("button", name="Close").click()
        expect(page.locator(".streamlit-admin-reason")).to_have_count(0)
    finally:
        ctx.close()


def test_start_all_shows_one_sentence_for_everyone(browser, hub, output_dir):
    ctx, page = admin_panel(browser, hub)
    try:
        page.get_by_test_id("start-all").click()
        alert = panel_alert(page)
        expect(alert).to_contain_text(re.compile(r"Failed to start \d servers"))
        reasons = alert.locator(".streamlit-admin-reason")
        expect(reasons).to_have_count(1)
        expect(reasons).to_have_text(
            re.compile(
                r"^Could not start anything for (admin|alice|bob|carol)(, \w+)* and \w+: "
                r"Every app on this hub has a name; there is no unnamed app to start\.$"
            )
        )
        for user in ("admin", "alice", "bob", "carol"):
            expect(reasons).to_contain_text(user)
        page.screenshot(path=str(output_dir / "admin-panel-start-all.png"))
    finally:
        ctx.close()


def test_stop_on_a_row_gone_meanwhile_says_so(browser, hub, output_dir):
    hub.add_app("alice", "brief", 'import streamlit as st\nst.title("Brief")\n')
    alice = hub.login("alice")
    hub.stop_app(alice, "alice", "demo")
    hub.start_app(alice, "alice", "brief", {})
    ctx, page = admin_panel(browser, hub)
    try:
        stop = page.locator('tr[data-testid="user-row-alice-brief"] .stop-button')
        expect(stop).to_have_text("Stop Server")
        hub.stop_app(alice, "alice", "brief", remove=True)  # alice deletes it; the page is stale
        stop.click()
        alert = panel_alert(page)
        expect(alert).to_contain_text("Failed to stop server.")
        expect(alert.locator(".streamlit-admin-reason")).to_have_text(
            "Could not stop alice’s app “brief”: there is no such app (any more); reload this page."
        )
        page.screenshot(path=str(output_dir / "admin-panel-stop-gone.png"))
    finally:
        ctx.close()
        hub.start_app(alice, "alice", "demo", {"path": "apps/demo/app.py"})
