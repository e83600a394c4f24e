"""A person, in headless Chromium: alice signs in, starts the demo app and sees it."""

import re

from playwright.sync_api import expect

from tests.browser.conftest import sign_in

# Hands every progress message the spawn page shows to the test (the app is on another
# origin than the hub's page, so page storage cannot carry them across the navigation).
RECORD_PROGRESS = """
window.addEventListener('DOMContentLoaded', () => {
  const log = document.getElementById('progress-log');
  if (!log) return;
  const save = () => window.recordProgress(
      [...log.querySelectorAll('.progress-log-event')].map(e => e.textContent));
  new MutationObserver(save).observe(log, {childList: true, subtree: true});
});
"""


def test_alice_starts_the_demo_app_from_the_hub_page(browser, hub, output_dir):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    progress = []
    page.expose_function("recordProgress", lambda messages: progress.extend(messages))
    page.add_init_script(RECORD_PROGRESS)
    visited = []
    page.on("framenavigated", lambda f: visited.append(f.url) if f == page.main_frame else None)
    pending_requests = []
    page.on(
        "request",
        lambda r: pending_requests.append(r.url) if "/hub/spawn-pending/" in r.url else None,
    )
    try:
        sign_in(page, hub, "alice")
        # where an app's code lives, and that a demo is there to try
        expect(page.locator("#code-hint")).to_contain_text("/alice/apps/<app>/app.py")
        expect(page.locator("#code-hint")).to_contain_text("demo is seeded for you to try")

        page.fill("input.new-server-name", "demo")
        page.click("button.new-server-btn")  # JupyterHub 6 creates the server, then reloads
        page.locator("#start-demo").click()
        page.wait_for_url(re.compile(r".*/hub/spawn/alice/demo"))
        # the form in app words: the app's own code, a size to pick
        expect(page.locator("#start-app-heading")).to_have_text("Start the app “demo”")
        expect(page.locator("#streamlit-app-path")).to_have_text(
            "Runs apps/demo/app.py from your home."
        )
        expect(page.locator("label[for=streamlit-profile]")).to_have_text("Size")
        page.screenshot(path=str(output_dir / "options-form.png"))
        page.get_by_role("button", name="Start").click()

        page.wait_for_url(re.compile(r".*/hub/spawn-pending/alice/demo.*"), timeout=30_000)
        expect(page.locator("#progress-bar")).to_be_attached()
        expect(page.locator("#starting-app")).to_have_text("Starting the app “demo”")
        page.screenshot(path=str(output_dir / "spawn-pending.png"))
        page.wait_for_url(re.compile(r".*/user/alice/demo/?$"), timeout=60_000)
        expect(page.get_by_role("heading", name="Sales demo")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Signed in as alice")).to_be_visible()
        expect(page.locator("[data-testid=stDataFrame]")).to_be_visible(timeout=30_000)
        expect(page.locator("[data-testid=stVegaLiteChart]").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(output_dir / "demo-app.png"), full_page=True)
        # the app is served from alice's own host, not the hub's
        assert page.url.startswith(hub.app_origin("alice") + "/user/alice/demo"), page.url
    finally:
        context.close()
    assert any("/hub/spawn-pending/alice/demo" in u for u in visited), visited
    # once ready, the progress page goes straight to the app: it is not asked for again
    # (JupyterHub's page reloads itself, one more round trip whose answer is a redirect)
    assert len(pending_requests) == 1, pending_requests
    for step in ("Validating the app", "Starting Streamlit", "Waiting for the app", "App is ready"):
        assert any(step in m for m in progress), progress
    # the hub's own steps in app words too ("Server requested" / "Server ready at" before)
    assert "Start requested" in progress, progress
    assert not any("Server" in m for m in progress), progress
