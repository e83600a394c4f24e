"""A person, in headless Chromium: carol reads alice's shared app, and alice sees carol's
page views on her usage page."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import consent_then_app, sign_in
from tests.helpers.hub import running_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("usage")) as h:
        alice = h.login("alice")
        h.start_app(alice, "alice", "demo", {"path": "apps/demo/app.py"})
        r = alice.post(f"{h.url}/hub/api/shares/alice/demo", json={"user": "carol"}, timeout=10)
        assert r.status_code == 200, r.text
        yield h


def test_carols_page_views_appear_on_alices_usage_page(browser, hub, output_dir):
    c = browser.new_context(viewport={"width": 1280, "height": 900})
    a = browser.new_context(viewport={"width": 1280, "height": 1000})
    try:
        carol, alice = c.new_page(), a.new_page()
        sign_in(carol, hub, "carol")
        carol.goto(hub.url + "/user/alice/demo/")
        consent_then_app(carol)
        carol.get_by_role("link", name=re.compile("Details")).first.click()
        expect(carol).to_have_url(re.compile(r".*/user/alice/demo/Details"), timeout=30_000)

        sign_in(alice, hub, "alice")
        alice.goto(hub.url + "/services/audit/")
        row = alice.locator("tr", has_text="alice/demo").first
        for _ in range(20):  # events reach the service within a second or so
            if alice.locator("td", has_text="Details").count():
                break
            alice.wait_for_timeout(500)
            alice.reload()
        expect(alice.get_by_role("heading", name="App usage and audit")).to_be_visible()
        expect(alice.get_by_text("showing apps owned by alice")).to_be_visible()
        expect(row).to_be_visible()
        cells = row.locator("td")
        assert int(cells.nth(1).inner_text()) >= 2  # page views: the main page, then Details
        assert int(cells.nth(2).inner_text()) >= 1  # distinct viewers
        expect(row.locator("svg[role=img]")).to_be_visible()
        recent = alice.locator("tr", has_text="page_view").filter(has_text="carol")
        expect(recent.filter(has_text="Details").first).to_be_visible()
        alice.screenshot(path=str(output_dir / "usage-page.png"), full_page=True)
    finally:
        a.close()
        c.close()
