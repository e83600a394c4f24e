"""A person, in headless Chromium: carol is asked to let alice's app know who she is once,
not after every restart of the app (issue #15, item 3).

JupyterHub deletes an app's OAuth client, and every approval given to it, when the app stops;
the idle culler restarts apps daily. The platform keeps the approval with the share
(spawner/sharing.py): carol opens the app, approves, alice restarts it, carol opens it again
and goes straight in. When alice revokes the share and shares again, carol is asked again.

Screenshots go to test-output/ (``consent-*.png``).
"""

import re

from playwright.sync_api import expect

from tests.browser.conftest import sign_in

DEMO = {"path": "apps/demo/app.py"}


def open_from_the_hub(page, hub):
    """carol opens alice/demo from "Shared with me"; the consent page or the app, whichever
    comes, and whether the consent page was shown."""
    page.goto(hub.url + "/hub/home")
    page.locator('li.shared-app[data-app="alice/demo"]').get_by_role(
        "link", name="Open alice/demo"
    ).click()
    consent = page.locator("#authorize-open-app")
    app = page.get_by_role("heading", name="Sales demo")
    expect(consent.or_(app).first).to_be_visible(timeout=60_000)
    return consent.is_visible()


def test_carol_is_asked_once_across_restarts_until_the_share_is_revoked(browser, hub, output_dir):
    alice = hub.login("alice")
    servers = alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"]
    if not servers.get("demo", {}).get("ready"):
        hub.start_app(alice, "alice", "demo", DEMO)
    share = f"{hub.url}/hub/api/shares/alice/demo"
    assert alice.post(share, json={"user": "carol"}, timeout=10).status_code == 200
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    pages_shown = []
    page.on("framenavigated", lambda f: pages_shown.append(f.url) if f == page.main_frame else None)
    try:
        sign_in(page, hub, "carol")
        # the first time: asked, in plain words
        assert open_from_the_hub(page, hub) is True
        expect(page.locator("#open-shared-app")).to_have_text("Open alice’s app “demo”?")
        page.screenshot(path=str(output_dir / "consent-first-time.png"))
        page.locator("#authorize-open-app").click()
        expect(page.get_by_role("heading", name="Sales demo")).to_be_visible(timeout=30_000)

        # alice's app restarts (as the idle culler's stop and a later start do), twice
        for _ in range(2):
            hub.stop_app(alice, "alice", "demo")
            hub.start_app(alice, "alice", "demo", DEMO)
            pages_shown.clear()
            assert open_from_the_hub(page, hub) is False
            assert re.match(r".*/user/alice/demo/", page.url)
            # no consent page on the way, not even for a moment
            assert not [u for u in pages_shown if "/oauth2/authorize" in u], pages_shown
        page.screenshot(path=str(output_dir / "consent-not-asked-after-restart.png"))

        # revoked, then shared again: a new share is a new question
        # (PATCH with no scopes revokes carol's share, as "Revoke carol" on the hub page does)
        assert alice.patch(share, json={"user": "carol"}, timeout=10).status_code == 200
        assert alice.post(share, json={"user": "carol"}, timeout=10).status_code == 200
        hub.stop_app(alice, "alice", "demo")
        hub.start_app(alice, "alice", "demo", DEMO)
        assert open_from_the_hub(page, hub) is True
    finally:
        context.close()
