"""A person, in headless Chromium: an app's secrets from the hub home page (#16 point 5).

alice opens "Secrets of “demo”" under her app list while demo runs, sets DB_PASSWORD: the
value field empties, the name is listed with who set it, and the page says to restart the
app; she deletes it again. The value is nowhere on the page afterwards.
"""

import secrets

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.helpers.hub import running_hub

VALUE = "pw-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("secretsui")) as h:
        alice = h.login("alice")
        h.start_app(alice, "alice", "demo", {"path": "apps/demo/app.py"})
        yield h


def test_set_list_and_delete_a_secret_from_the_home_page(browser, hub, output_dir):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, hub, "alice")
        box = page.locator("#secrets-demo")
        expect(page.locator("#app-secrets-help")).to_contain_text("Restart the app to apply")
        box.locator("summary").click()
        expect(box.locator(".secrets-list")).to_have_text("No secrets yet.")
        box.get_by_label("Name").fill("DB_PASSWORD")
        box.get_by_label("Value").fill(VALUE)
        box.get_by_role("button", name="Set secret").click()
        expect(box.locator(".secrets-status")).to_have_text(
            "DB_PASSWORD is set. Restart the app to apply it."
        )
        expect(box.get_by_label("Value")).to_have_value("")
        expect(box.locator("li.secret")).to_contain_text("DB_PASSWORD")
        expect(box.locator("li.secret")).to_contain_text("by alice")
        expect(box.locator(".secrets-restart")).to_be_visible()
        expect(box.locator(".secrets-count")).to_have_text("1")
        page.screenshot(path=str(output_dir / "app-secrets.png"))
        assert VALUE not in page.content()

        box.get_by_label("Name").fill("PATH")
        box.get_by_label("Value").fill("x")
        box.get_by_role("button", name="Set secret").click()
        expect(box.locator(".secrets-status")).to_contain_text("Not done: PATH is reserved")

        page.once("dialog", lambda d: d.accept())
        box.get_by_role("button", name="Delete DB_PASSWORD").click()
        expect(box.locator(".secrets-list")).to_have_text("No secrets yet.")
        expect(box.locator(".secrets-status")).to_contain_text("DB_PASSWORD is deleted")
        assert VALUE not in page.content()
    finally:
        context.close()
