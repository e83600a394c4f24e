import os
import shutil

import pytest

from tests.helpers.hub import running_hub

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-quic"]


def chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if not exe:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: never let browser tests vanish silently
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=LAUNCH_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # The hub shows its progress page only for spawns slower than 1 s; a local app starts
    # faster, so this hub waits 2 s before each start, as a slow image pull would.
    slow = "import asyncio\nc.Spawner.pre_spawn_hook = lambda spawner: asyncio.sleep(2)\n"
    with running_hub(tmp_path_factory.mktemp("hub"), extra_config=slow) as h:
        yield h


def sign_in(page, hub, user: str):
    """Sign in through the hub's login form, as a person would; land on the home page."""
    import re

    page.goto(hub.url + "/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.password)
    page.click("#login_submit")
    page.wait_for_url(re.compile(r".*/hub/home"))


def consent_then_app(page, heading: str = "Sales demo"):
    """Wait for the consent page or the app (whichever comes), continue past consent if shown,
    and require the app's heading.

    Checking for the consent page right after a click races the navigation; wait for one of
    the two instead.
    """
    from playwright.sync_api import expect

    consent = page.locator("#authorize-open-app")
    app = page.get_by_role("heading", name=heading)
    expect(consent.or_(app).first).to_be_visible(timeout=60_000)
    if consent.is_visible():
        consent.click()
    expect(app).to_be_visible(timeout=30_000)
