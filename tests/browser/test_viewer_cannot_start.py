"""A person, in headless Chromium: carol (viewers) sees no way to start an app, and asking
the API anyway gets the reason."""

import requests
from playwright.sync_api import expect

from tests.browser.conftest import sign_in


def test_carol_has_no_start_control_and_the_api_says_why(browser, hub, output_dir):
    context = browser.new_context(viewport={"width": 1280, "height": 700})
    page = context.new_page()
    try:
        sign_in(page, hub, "carol")
        # said once (tests/browser/test_home_viewer_and_share.py): no quota line besides it
        expect(page.locator("#no-start")).to_contain_text("you cannot start apps of your own")
        expect(page.locator("#quota-summary")).to_have_count(0)
        assert page.locator("button.new-server-btn").count() == 0
        assert page.locator("a.start-server").count() == 0
        assert page.locator("#start").count() == 0
        page.screenshot(path=str(output_dir / "carol-home.png"))
    finally:
        context.close()
    # She calls the REST API anyway, with her own token (from /hub/token): she gets the reason.
    r = requests.post(
        hub.url + "/hub/api/users/carol/servers/mine",
        json={},
        headers={"Authorization": f"token {hub.token('carol')}"},
        timeout=30,
    )
    assert r.status_code == 403
    assert r.json()["message"] == "carol may open apps shared with them but not create apps."
