"""A person, in headless Chromium, on the hub's home page (issue #15.14).

- carol (viewers: she may open shared apps, start none) sees a page headed for what she can
  do, "Apps shared with you", and the line saying she cannot start apps once;
- "Open" on a stopped app shared with her leads to the page that says whose app it is and
  what she can do: ask its owner, or start it when the owner let viewers wake it;
- alice's share dialog keeps one width whatever it holds, and suggests names as she types:
  users or groups, as she picks, only names the hub lets her read and share with (never
  herself); someone who may not share the app gets no names at all.

Screenshots: test-output/home-*.png.
"""

import requests
from playwright.sync_api import expect

from tests.browser.conftest import sign_in


def offers(page, names: list[str]):
    """The Name box offers exactly ``names`` (its datalist's options), once they arrive."""
    found = page.locator("#share-candidates option")
    expect(found).to_have_count(len(names))
    for name in names:
        expect(page.locator(f'#share-candidates option[value="{name}"]')).to_have_count(1)
    assert found.evaluate_all("os => os.map(o => o.value)") == names


def test_carols_page_is_headed_for_a_viewer_and_says_it_once(browser, hub, output_dir):
    ctx = browser.new_context(viewport={"width": 1280, "height": 700})
    page = ctx.new_page()
    try:
        sign_in(page, hub, "carol")
        expect(page.locator("h1")).to_have_text("Apps shared with you")
        expect(page.locator("#no-start")).to_have_text(
            "You can open the apps others share with you; you cannot start apps of your own. "
            "To build apps, ask an admin to add you to an analysts group."
        )
        text = page.locator("body").inner_text()
        assert text.count("cannot start") == 1, text
        assert "Your Streamlit apps" not in text and "Shared with me" not in text, text
        expect(page.locator("#shared-with-me")).to_have_text("Nothing is shared with you yet.")
        page.screenshot(path=str(output_dir / "home-viewer.png"))
    finally:
        ctx.close()


def test_open_on_a_stopped_shared_app_says_what_to_do(browser, hub, output_dir):
    alice = hub.login("alice")
    r = alice.put(f"{hub.url}/hub/api/users/alice/servers/demo", json={}, timeout=30)
    assert r.status_code in (201, 400, 409), r.text  # created, or there already (stopped)
    r = alice.post(f"{hub.url}/hub/api/shares/alice/demo", json={"user": "carol"}, timeout=30)
    assert r.status_code == 200, r.text
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    try:
        sign_in(page, hub, "carol")
        row = page.locator('li.shared-app[data-app="alice/demo"]')
        expect(row).to_contain_text("stopped")
        row.get_by_role("link", name="Open alice/demo").click()
        expect(page.locator("#shared-app-stopped")).to_have_text(
            "alice’s app “demo” is not running"
        )
        expect(page.locator("#ask-owner")).to_contain_text("Ask alice to start “demo”")
        expect(page.locator("#back-to-hub")).to_be_visible()
        page.screenshot(path=str(output_dir / "home-open-stopped-app.png"))

        # alice lets viewers wake it: the same Open leads to a Start button
        target = "alice/demo"
        r = alice.post(
            f"{hub.url}/hub/api/shares/alice/demo",
            json={
                "user": "carol",
                "scopes": [f"access:servers!server={target}", f"start:servers!server={target}"],
            },
            timeout=30,
        )
        assert r.status_code == 200, r.text
        page.locator("#back-to-hub").click()
        page.locator('li.shared-app[data-app="alice/demo"]').get_by_role(
            "link", name="Open alice/demo"
        ).click()
        expect(page.get_by_role("button", name="Start alice’s app")).to_be_visible()
    finally:
        ctx.close()


def test_the_share_dialog_keeps_its_width_and_suggests_names(browser, hub, output_dir):
    alice_api = hub.login("alice")
    r = alice_api.put(f"{hub.url}/hub/api/users/alice/servers/report", json={}, timeout=30)
    assert r.status_code == 201, r.text
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        sign_in(page, hub, "alice")
        page.click("#share-report")
        dialog = page.locator("#share-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#share-list")).to_have_text("Nobody yet.")
        width = dialog.bounding_box()["width"]

        # users: everyone but alice herself, narrowed as she types
        offers(page, ["admin", "bob", "carol"])
        page.locator("#share-with").press_sequentially("ca")
        offers(page, ["carol"])
        page.screenshot(path=str(output_dir / "home-share-suggestions.png"))
        page.fill("#share-with", "carol")
        page.click("#share-submit")
        expect(page.locator("#share-list")).to_contain_text("user carol")

        # groups, when she shares with a group
        page.select_option("#share-kind", "group")
        offers(page, ["analysts", "data-scientists", "viewers"])
        page.fill("#share-with", "data-scientists")
        page.check("#share-wake")
        page.click("#share-submit")
        expect(page.locator("#share-list")).to_contain_text("group data-scientists (may wake it)")

        # a longer list, a link: the same width (it used to grow with its longest line)
        page.click("#link-create")
        expect(page.locator("#share-status")).to_have_text("Link created: copy it and send it.")
        expect(page.locator("#link-list")).to_contain_text("used 0 times")
        assert dialog.bounding_box()["width"] == width
        page.screenshot(path=str(output_dir / "home-share-dialog.png"))
    finally:
        ctx.close()

    # names only, and only for whoever may manage the app's shares
    url = f"{hub.url}/hub/api/streamlit/share-names/alice/report"
    r = alice_api.get(url, params={"kind": "user", "prefix": "B"}, timeout=10)
    assert r.json() == {"kind": "user", "names": ["bob"], "more": False}
    for other in ("bob", "carol"):
        r = requests.get(url, headers={"Authorization": f"token {hub.token(other)}"}, timeout=10)
        # JupyterHub's own answer to a missing scope, which does not even confirm the app
        assert r.status_code in (403, 404) and "names" not in r.json(), (other, r.text)
