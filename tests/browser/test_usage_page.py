"""A person, in headless Chromium: carol reads alice's shared app, alice opens it herself, and
alice finds the usage page from the hub's menu: in the hub's frame, with readable times,
carol's visits as a viewer's and alice's own apart, and the way back to the hub."""

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


def numbers(row) -> dict[str, int]:
    return {
        name: int(row.locator(f"td.usage-{name}").inner_text())
        for name in ("views", "viewers", "sessions", "refused", "own")
    }


def test_alice_reads_her_apps_usage_in_the_hubs_frame(browser, hub, output_dir):
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
        alice.goto(hub.url + "/user/alice/demo/")  # the owner trying her own app
        consent_then_app(alice)

        # the hub's Services menu names the page "Usage"
        alice.goto(hub.url + "/hub/home")
        alice.get_by_role("button", name="Services").click()
        items = alice.locator(".dropdown-menu .dropdown-item")
        expect(items).to_have_text(["Usage"])
        alice.screenshot(path=str(output_dir / "usage-menu.png"))
        refused = []  # anything the page's Content-Security-Policy blocked
        alice.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else 0)
        items.first.click()
        alice.wait_for_url(re.compile(r".*/services/audit/$"), timeout=30_000)

        row = alice.locator('tr[data-app="alice/demo"]')
        for _ in range(20):  # events reach the service within a second or so
            if alice.locator("td.usage-detail", has_text="Details").count() and (
                alice.locator(".usage-own-visit").count()
            ):
                break
            alice.wait_for_timeout(500)
            alice.reload()

        # the hub's frame: its top bar with alice, the hub's stylesheet and logo, a way back
        expect(alice.locator("#signed-in-as")).to_have_text("alice")
        expect(alice.locator("#logout")).to_be_visible()
        back = alice.locator("#back-to-hub")
        expect(back).to_have_text("Home")
        expect(back).to_have_attribute("href", "/hub/home")
        bar = alice.locator("nav.navbar").evaluate("e => getComputedStyle(e).backgroundColor")
        assert bar not in ("", "rgba(0, 0, 0, 0)", "transparent"), bar  # the hub's CSS applied
        assert alice.locator("#jupyterhub-logo img").evaluate("i => i.naturalWidth") > 0
        expect(alice.get_by_role("heading", name="App usage and audit")).to_be_visible()
        expect(alice.locator("#usage-scope")).to_have_text(
            "Last 14 days, showing apps owned by alice."
        )

        # carol is a viewer; alice's own visits are counted apart
        expect(row).to_be_visible()
        n = numbers(row)
        assert n["views"] >= 2, n  # carol: the main page, then Details
        assert n["viewers"] == 1, n  # carol only, never alice herself
        assert n["own"] >= 1, n
        expect(alice.locator("th", has_text="Your own visits")).to_be_visible()
        expect(row.locator("svg[role=img]")).to_be_visible()

        # readable times, the exact instant for machines, no microseconds
        last = row.locator("td.usage-last time")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", last.inner_text()), last.inner_text()
        stamp = last.get_attribute("datetime")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp
        expect(row.locator(".usage-ago")).to_have_text(re.compile(r"^(just now|\d+ min ago)$"))
        shown = alice.locator("main").inner_text()
        assert not re.search(r"\d\d:\d\d:\d\d\.\d+", shown) and "T0" not in shown

        # recent events say who did what: carol's page, alice's own visit, alice's share
        views = alice.locator('tr[data-type="page_view"]')
        carols = views.filter(has=alice.locator("td.usage-who", has_text=re.compile("^carol$")))
        expect(carols.filter(has_text="Details").first).to_be_visible()
        own = views.filter(has=alice.locator(".usage-own-visit"))
        expect(own.first.locator("td.usage-who")).to_have_text("alice your own visit")
        share = alice.locator('tr[data-type="share_granted"]').first
        expect(share.locator("td.usage-who")).to_have_text("alice")
        expect(share.locator("td.usage-what")).to_have_text("Shared the app")
        expect(share.locator("td.usage-detail")).to_have_text("with carol")
        assert refused == [], refused
        alice.screenshot(path=str(output_dir / "usage-page.png"), full_page=True)

        back.click()
        alice.wait_for_url(re.compile(r".*/hub/home$"), timeout=30_000)
        expect(alice.get_by_role("heading", name="Your Streamlit apps")).to_be_visible()
    finally:
        a.close()
        c.close()
