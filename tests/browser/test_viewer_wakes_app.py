"""A person, in headless Chromium: alice shares her demo with carol and ticks "viewers may wake
this app"; the app is stopped; carol opens it, presses Start, sees its progress, then the app.

This hub waits 2 s before each start (tests/browser/conftest.py), as a slow pod would.
"""

import re

from playwright.sync_api import expect

from tests.browser.conftest import consent_then_app, sign_in


def share_with_carol_then_stop(hub, alice, alice_api, app: str):
    """Alice shares her running ``app`` with carol, who may wake it; then it stops."""
    sign_in(alice, hub, "alice")
    alice.click(f"#share-{app}")
    alice.fill("#share-with", "carol")
    alice.check("#share-wake")
    alice.click("#share-submit")
    expect(alice.locator("#share-list")).to_contain_text("user carol (may wake it)")
    hub.stop_app(alice_api, "alice", app)


def test_carol_wakes_alices_stopped_app(browser, hub, output_dir):
    alice_api = hub.login("alice")
    hub.start_app(alice_api, "alice", "demo", {"path": "apps/demo/app.py"})
    a = browser.new_context(viewport={"width": 1280, "height": 900})
    c = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        alice, carol = a.new_page(), c.new_page()
        share_with_carol_then_stop(hub, alice, alice_api, "demo")

        sign_in(carol, hub, "carol")
        carol.goto(hub.url + "/user/alice/demo/")
        expect(carol.locator("#shared-app-stopped")).to_have_text(
            "alice’s app “demo” is not running"
        )
        carol.get_by_role("button", name="Start alice’s app").click()
        expect(carol.locator("#wake-status")).to_have_text(
            re.compile(r"(Preparing to start|Validating|Starting|Waiting).*…"), timeout=30_000
        )
        carol.screenshot(path=str(output_dir / "carol-wakes-app.png"))
        consent_then_app(carol)
        assert re.match(r".*/user/alice/demo/", carol.url)
    finally:
        a.close()
        c.close()


def test_the_app_opens_as_soon_as_the_start_request_says_it_runs(browser, hub):
    """The start request answers 201 once the app runs: the page opens it then, without
    waiting for its next look at the app's status (here that status never says ready)."""
    alice_api = hub.login("alice")
    demo = hub.home("alice") / "apps" / "demo" / "app.py"
    hub.add_app("alice", "wake2", demo.read_text())
    hub.start_app(alice_api, "alice", "wake2")
    a = browser.new_context(viewport={"width": 1280, "height": 900})
    c = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        alice, carol = a.new_page(), c.new_page()
        share_with_carol_then_stop(hub, alice, alice_api, "wake2")

        def never_ready(route):
            answer = route.fetch()
            status = {**answer.json(), "ready": False}
            route.fulfill(response=answer, json=status)

        carol.route(re.compile(r".*/hub/api/streamlit/apps/alice/wake2/status.*"), never_ready)
        sign_in(carol, hub, "carol")
        carol.goto(hub.url + "/user/alice/wake2/")
        carol.get_by_role("button", name="Start alice’s app").click()
        consent_then_app(carol)
        assert re.match(r".*/user/alice/wake2/", carol.url)
    finally:
        a.close()
        c.close()
