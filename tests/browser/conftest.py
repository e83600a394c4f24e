import pytest

from tests.helpers.chromium import launched_chromium
from tests.helpers.hub import running_hub


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as b:
        yield b


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
