"""A person, in headless Chromium: sharing from the hub page.

alice shares the demo with carol, carol opens it from "Shared with me" and sees it, alice
revokes and carol is refused; alice makes a link and bob opens it and sees the app.
"""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import consent_then_app, sign_in
from tests.helpers.hub import running_hub

WINDOW = 2.0


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(
        tmp_path_factory.mktemp("shareui"),
        extra_config=f"c.StreamlitSpawnerMixin.auth_cache_seconds = {WINDOW}\n",
    ) as h:
        alice = h.login("alice")
        h.start_app(alice, "alice", "demo", {"path": "apps/demo/app.py"})
        yield h


def test_share_open_revoke_and_link_from_the_hub_page(browser, hub, output_dir):
    a = browser.new_context(viewport={"width": 1280, "height": 900})
    c = browser.new_context(viewport={"width": 1280, "height": 900})
    b = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        alice, carol, bob = a.new_page(), c.new_page(), b.new_page()
        sign_in(alice, hub, "alice")
        alice.click("#share-demo")
        expect(alice.locator("#share-dialog")).to_be_visible()
        expect(alice.locator("#share-with")).to_be_focused()
        alice.fill("#share-with", "carol")
        alice.click("#share-submit")
        expect(alice.locator("#share-list")).to_contain_text("user carol")
        alice.screenshot(path=str(output_dir / "share-dialog.png"))

        sign_in(carol, hub, "carol")
        row = carol.locator('li.shared-app[data-app="alice/demo"]')
        expect(row).to_contain_text("running")
        carol.screenshot(path=str(output_dir / "shared-with-me.png"))
        row.get_by_role("link", name="Open alice/demo").click()
        consent_then_app(carol)
        carol.screenshot(path=str(output_dir / "carol-sees-demo.png"))

        alice.get_by_role("button", name="Revoke carol").click()
        expect(alice.locator("#share-status")).to_have_text("Access removed.")
        time.sleep(WINDOW + 0.5)
        carol.goto(hub.app_url("alice", "demo"))  # the app's own address, as in her open tab
        expect(carol.get_by_text("belongs to alice", exact=False).first).to_be_visible()

        alice.click("#link-create")
        expect(alice.locator("#link-url")).to_have_value(re.compile(r".*/hub/accept-share\?code="))
        link = alice.locator("#link-url").input_value()
        sign_in(bob, hub, "bob")
        bob.goto(link)
        bob.get_by_role("button", name="Accept invitation").click()
        consent_then_app(bob)
        bob.screenshot(path=str(output_dir / "bob-via-link.png"))
    finally:
        for ctx in (a, b, c):
            ctx.close()
