"""A person, in headless Chromium: what carol (a viewer) sees around an app alice shared with
her, when it is not simply running (issue #15, items 4, 5 and 14).

- In the app, a small "Back to the hub" link sits in Streamlit's top bar, over no content,
  and leads to the hub.
- Her open tab, when alice stops the app, does not stay on Streamlit's "Connection error":
  it becomes the hub's page saying the app is not running, why apps stop, whom to ask, and a
  way back to the hub. Its top bar names carol (it named alice).
- Opening the app while it starts shows a page saying so, which turns into the app (it was
  JupyterHub's "404: No access to resources").

This hub waits 2 s before each start (tests/browser/conftest.py). Screenshots go to
test-output/ (``viewer-*.png``).
"""

import re
import threading
import time

from playwright.sync_api import expect

from tests.browser.conftest import consent_then_app, sign_in

DEMO = {"path": "apps/demo/app.py"}


def _share_with_carol(hub):
    """alice's demo running and shared with carol; alice's session."""
    alice = hub.login("alice")
    servers = alice.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()["servers"]
    if not servers.get("demo", {}).get("ready"):
        hub.start_app(alice, "alice", "demo", DEMO)
    r = alice.post(f"{hub.url}/hub/api/shares/alice/demo", json={"user": "carol"}, timeout=10)
    assert r.status_code == 200, r.text
    return alice


def test_carols_open_tab_explains_a_stopped_app_and_leads_back(browser, hub, output_dir):
    alice = _share_with_carol(hub)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, hub, "carol")
        page.goto(hub.app_url("alice", "demo"))
        consent_then_app(page)

        # the way back, in Streamlit's top bar: above the app's first line, not over it
        back = page.locator("#streamlit-hub-back")
        expect(back).to_have_text("← Back to the hub")
        expect(back).to_have_attribute("href", hub.url + "/hub/home")
        header = page.locator('header[data-testid="stHeader"]')
        assert page.locator('header[data-testid="stHeader"] #streamlit-hub-back').count() == 1
        title = page.get_by_role("heading", name="Sales demo").bounding_box()
        box, bar = back.bounding_box(), header.bounding_box()
        assert box["y"] + box["height"] <= bar["y"] + bar["height"] <= title["y"]
        page.screenshot(path=str(output_dir / "viewer-app-back-link.png"))

        # alice stops the app while carol's tab is open on it
        started = time.monotonic()
        hub.stop_app(alice, "alice", "demo")
        expect(page.locator("#shared-app-stopped")).to_have_text(
            "alice’s app “demo” is not running", timeout=30_000
        )
        took = time.monotonic() - started
        assert took < 20, took
        expect(page.get_by_text("Connection error")).to_have_count(0)
        expect(page.locator("#why-stopped")).to_have_text(
            "An app stops when nobody has used it for a while, or when its owner stops it."
        )
        expect(page.locator("#ask-owner")).to_contain_text("Only alice can start it.")
        # the top bar names who is signed in: carol, not the app's owner
        expect(page.locator("#login_widget")).to_contain_text("carol")
        expect(page.locator("#login_widget")).not_to_contain_text("alice")
        page.screenshot(path=str(output_dir / "viewer-tab-after-stop.png"))

        page.locator("#back-to-hub").click()
        page.wait_for_url(re.compile(r".*/hub/home"))
        expect(page.locator("#login_widget")).to_contain_text("carol")
    finally:
        context.close()


def test_the_back_link_in_the_app_leads_to_the_hub(browser, hub, output_dir):
    _share_with_carol(hub)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, hub, "carol")
        page.goto(hub.app_url("alice", "demo"))
        consent_then_app(page)
        page.locator("#streamlit-hub-back").click()
        page.wait_for_url(re.compile(r".*/hub/home"))
        expect(page.locator('li.shared-app[data-app="alice/demo"]')).to_be_visible()
    finally:
        context.close()


def test_opening_a_starting_app_says_so_then_shows_it(browser, hub, output_dir):
    alice = _share_with_carol(hub)
    hub.stop_app(alice, "alice", "demo")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, hub, "carol")
        # alice starts it (the hub waits 2 s first); carol opens it meanwhile
        start = threading.Thread(target=hub.start_app, args=(alice, "alice", "demo", DEMO))
        start.start()
        hub_pending(hub, alice)
        page.goto(hub.app_url("alice", "demo"))
        expect(page.locator("#shared-app-pending")).to_have_text("alice’s app “demo” is starting")
        expect(page.locator("#login_widget")).to_contain_text("carol")
        page.screenshot(path=str(output_dir / "viewer-app-starting.png"))
        consent_then_app(page)
        assert re.match(r".*/user/alice/demo/", page.url)
    finally:
        start.join(60)
        context.close()


def hub_pending(hub, session, timeout=10.0):
    """Wait until the hub says alice's demo is starting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = session.get(f"{hub.url}/hub/api/users/alice", timeout=10).json()
        if model["servers"].get("demo", {}).get("pending") == "spawn":
            return
        time.sleep(0.05)
    raise AssertionError("alice/demo never started")
