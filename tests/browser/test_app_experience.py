"""A person, in headless Chromium, on the hub's pages around starting an app (issue #15).

- An app with no code of its own is never started with another app's code: its start page
  says where the code goes (the path shown) and offers no Start; the REST API refuses it too.
- An app whose code imports a package the app environment lacks is refused before it starts
  (it never counts against the quota); its owner sees why on the progress page and in the
  app's output on the home page.
- An error in an app's code at run time shows viewers one plain sentence, never a traceback
  with the server's paths; its owner sees the details.
- The quota line follows a stop without a reload, and names sizes by their display names.
- Every hub page on the way says "app", not "server".

Screenshots go to test-output/ (``app-*.png``).
"""

import re
import time

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import consent_then_app, sign_in
from tests.helpers.hub import running_hub

# Imports a package the app environment does not have, only when the script runs (inside an
# ``if``, so the check before start cannot see it): a viewer would get Streamlit's traceback.
FAILS_WHILE_RUNNING = """
import streamlit as st

st.title("Regional sales")
if st.query_params.get("no-plot") != "1":
    import plotly.express as px  # noqa: F401
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    # The repository's own group policy (alice: 3 apps, sizes Small and Medium), and a 2 s
    # wait before each start, so the progress page shows (as a slow image pull would).
    slow = "import asyncio\nc.Spawner.pre_spawn_hook = lambda spawner: asyncio.sleep(2)\n"
    with running_hub(tmp_path_factory.mktemp("hub"), extra_config=slow, policy=None) as h:
        yield h


def visible_text(page) -> str:
    return page.locator("body").inner_text()


def no_server_words(page):
    text = visible_text(page)
    assert not re.search(r"\bservers?\b", text, re.IGNORECASE), text


def add_app_row(page, name):
    page.fill("input.new-server-name", name)
    page.click("button.new-server-btn")  # JupyterHub creates the named server, then reloads
    expect(page.locator(f"#start-{name}")).to_be_visible()


def test_an_app_without_code_of_its_own_says_where_the_code_goes(browser, hub, output_dir):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        sign_in(page, hub, "alice")
        expect(page.locator("#quota-summary")).to_have_text(
            "0 of 3 apps running; sizes: Small, Medium"
        )
        add_app_row(page, "charts")
        page.locator("#start-charts").click()
        page.wait_for_url(re.compile(r".*/hub/spawn/alice/charts"))
        expect(page.locator("#start-app-heading")).to_have_text("Start the app “charts”")
        where = hub.home("alice").resolve() / "apps" / "charts" / "app.py"
        box = page.locator("#streamlit-app-path")
        expect(box).to_contain_text("“charts” has no code yet.")
        expect(box).to_contain_text(
            f"Put its Streamlit script in apps/charts/app.py in your home: {where}"
        )
        # nothing of the demo app's is offered as this app's code, and nothing to start
        assert "demo" not in page.locator("#spawn_form").inner_text()
        expect(page.get_by_role("button", name="Start")).to_have_count(0)
        expect(page.locator("#check-again")).to_be_visible()
        no_server_words(page)
        page.screenshot(path=str(output_dir / "app-no-code-form.png"))

        # the REST API (and so a viewer's wake) refuses it with the same sentence
        token = hub.token("alice")
        r = requests.post(
            f"{hub.url}/hub/api/users/alice/servers/charts",
            json={},
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert r.status_code == 400, r.text
        assert r.json()["message"] == (
            f"The app charts has no code yet: put its Streamlit script in apps/charts/app.py "
            f"in your home ({where}), then start it again."
        )

        # the analyst puts the code there and checks again: now it starts
        hub.add_app("alice", "charts", 'import streamlit as st\nst.title("Charts")\n')
        page.locator("#check-again").click()
        expect(page.locator("#streamlit-app-path")).to_have_text(
            "Runs apps/charts/app.py from your home."
        )
        # the size is a drop-down that looks like one (Bootstrap's form-select)
        expect(page.locator("select#streamlit-profile")).to_have_class(re.compile("form-select"))
        expect(page.locator("label[for=streamlit-profile]")).to_have_text("Size")
        no_server_words(page)
        page.screenshot(path=str(output_dir / "app-options-form.png"))
        page.get_by_role("button", name="Start").click()
        page.wait_for_url(re.compile(r".*/hub/spawn-pending/alice/charts.*"), timeout=30_000)
        expect(page.locator("#starting-app")).to_have_text("Starting the app “charts”")
        expect(page.locator("#cancel-start-btn")).to_be_visible()
        no_server_words(page)
        page.screenshot(path=str(output_dir / "app-starting.png"))
        page.wait_for_url(re.compile(r".*/user/alice/charts/?.*"), timeout=60_000)
        consent_then_app(page, "Charts")

        # back home: 1 running; stop it and the line follows without a reload
        page.goto(hub.url + "/hub/home")
        line = page.locator("#quota-summary")
        expect(line).to_have_text("1 of 3 apps running; sizes: Small, Medium")
        page.locator("#stop-charts").click()
        expect(line).to_have_text("0 of 3 apps running; sizes: Small, Medium", timeout=15_000)
        expect(page.locator("#start-charts")).to_be_visible()
        page.screenshot(path=str(output_dir / "app-home-after-stop.png"))
        # deleting asks in app words (JupyterHub's home.js asks about "your server")
        asked = []
        page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        page.locator("#delete-charts").click()
        expect(page.locator("#delete-charts")).to_be_visible()
        assert asked == ["Delete the app “charts” from your list? Its code stays in your home."]
    finally:
        ctx.close()


def test_an_app_importing_a_missing_package_is_refused_before_it_starts(browser, hub, output_dir):
    hub.add_app(
        "alice", "broken", 'import streamlit as st\nimport plotly.express as px\nst.title("x")\n'
    )
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        sign_in(page, hub, "alice")
        add_app_row(page, "broken")
        page.locator("#start-broken").click()
        page.wait_for_url(re.compile(r".*/hub/spawn/alice/broken"))
        page.get_by_role("button", name="Start").click()
        page.wait_for_url(re.compile(r".*/hub/spawn-pending/alice/broken.*"), timeout=30_000)
        reason = (
            "apps/broken/app.py imports plotly, which the app environment does not have. "
            "Ask an admin to add it to the app environment, or remove the import."
        )
        expect(page.locator("#progress-message")).to_have_text(
            f"The app “broken” did not start: {reason}", timeout=60_000
        )
        expect(page.locator("#cancel-start-btn")).to_be_hidden()
        no_server_words(page)
        page.screenshot(path=str(output_dir / "app-missing-package-refused.png"))

        # it never ran: nothing counts against alice's quota
        s = hub.login("alice")
        assert s.get(f"{hub.url}/hub/api/streamlit/quota", timeout=10).json()["running_apps"] == []

        # her home page flags the app; its output says why
        page.goto(hub.url + "/hub/home")
        row = page.locator("tr[data-server-name=broken]")
        expect(row.locator(".app-problem")).to_be_visible()
        row.locator(".app-output").click()
        expect(page.locator("#output-problem")).to_have_text(reason)
        expect(page.locator("#output-lines")).to_contain_text("cannot start")
        page.screenshot(path=str(output_dir / "app-output-dialog.png"))
    finally:
        ctx.close()


def test_an_error_while_running_shows_viewers_a_plain_sentence(browser, hub, output_dir):
    hub.add_app("alice", "regions", FAILS_WHILE_RUNNING)
    alice_api = hub.login("alice")
    hub.start_app(alice_api, "alice", "regions", {})
    r = alice_api.post(
        f"{hub.url}/hub/api/shares/alice/regions", json={"user": "carol"}, timeout=30
    )
    assert r.status_code in (200, 201), r.text
    home_path = str(hub.home("alice").resolve())
    a_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    c_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        # the viewer: one plain sentence, no exception type, no traceback, no paths
        carol = c_ctx.new_page()
        sign_in(carol, hub, "carol")
        carol.goto(hub.app_url("alice", "regions"))
        consent = carol.locator("#authorize-open-app")
        expect(consent).to_be_visible(timeout=60_000)
        carol.locator("details summary").click()
        expect(carol.locator("#granted")).to_have_text("Who you are: your hub user name.")
        no_server_words(carol)
        carol.screenshot(path=str(output_dir / "app-consent.png"))
        consent.click()
        expect(carol.get_by_role("heading", name="Regional sales")).to_be_visible(timeout=30_000)
        expect(carol.get_by_text("This app has an error; its owner has been told.")).to_be_visible(
            timeout=30_000
        )
        shown = visible_text(carol)
        for leak in ("ModuleNotFoundError", "Traceback", "plotly", home_path, "/homes/"):
            assert leak not in shown, (leak, shown)
        carol.screenshot(path=str(output_dir / "app-error-viewer.png"), full_page=True)

        # the owner: the exception in full, in her own view of the app
        alice = a_ctx.new_page()
        sign_in(alice, hub, "alice")
        alice.goto(hub.app_url("alice", "regions"))
        consent_then_app(alice, "Regional sales")
        expect(alice.get_by_text("Your app raised an error.", exact=False)).to_be_visible(
            timeout=30_000
        )
        expect(alice.get_by_text("ModuleNotFoundError", exact=False).first).to_be_visible()
        alice.screenshot(path=str(output_dir / "app-error-owner.png"), full_page=True)

        # and on her home page: the app is flagged, its output names the error and the viewer
        alice.goto(hub.url + "/hub/home")
        row = alice.locator("tr[data-server-name=regions]")
        expect(row.locator(".app-problem")).to_be_visible()
        row.locator(".app-output").click()
        expect(alice.locator("#output-problem")).to_contain_text(
            "ModuleNotFoundError: No module named 'plotly'"
        )
        expect(alice.locator("#output-lines")).to_contain_text("Traceback")
    finally:
        a_ctx.close()
        c_ctx.close()
        hub.stop_app(alice_api, "alice", "regions", remove=True)


def test_the_accept_link_page_and_the_admins_home_say_app(browser, hub, output_dir):
    alice_api = hub.login("alice")
    code = alice_api.post(
        f"{hub.url}/hub/api/share-codes/alice/demo-link", json={"expires_in": 3600}, timeout=30
    )
    if code.status_code == 404:  # the app must exist to be shared
        alice_api.put(f"{hub.url}/hub/api/users/alice/servers/demo-link", json={}, timeout=30)
        code = alice_api.post(
            f"{hub.url}/hub/api/share-codes/alice/demo-link", json={"expires_in": 3600}, timeout=30
        )
    assert code.status_code in (200, 201), code.text
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        sign_in(page, hub, "bob")
        page.goto(hub.url + code.json()["accept_url"])
        expect(page.locator("#accept-share-heading")).to_have_text(
            "alice shared the app “demo-link” with you"
        )
        expect(page.locator("#shared-app-not-running")).to_be_visible()
        expect(page.locator("#share-grants")).to_contain_text("Open the app in your browser.")
        no_server_words(page)
        page.screenshot(path=str(output_dir / "app-accept-link.png"))
    finally:
        ctx.close()

    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        sign_in(page, hub, "admin")
        links = page.locator("#admin-links")
        expect(links).to_contain_text("admin panel")
        expect(page.locator("#usage-link")).to_have_attribute("href", "/services/audit/")
        expect(page.locator("#no-start")).not_to_contain_text("ask an admin")
        page.screenshot(path=str(output_dir / "app-admin-home.png"))
        page.locator("#usage-link").click()
        page.wait_for_url(re.compile(r".*/services/audit/.*"), timeout=30_000)
    finally:
        ctx.close()
    time.sleep(0)  # (nothing left running: demo-link was never started)


def test_a_viewer_waking_an_app_without_code_is_told_whom_to_ask(browser, hub, output_dir):
    alice_api = hub.login("alice")
    r = alice_api.put(f"{hub.url}/hub/api/users/alice/servers/empty", json={}, timeout=30)
    assert r.status_code in (200, 201), r.text
    target = "alice/empty"
    r = alice_api.post(
        f"{hub.url}/hub/api/shares/alice/empty",
        json={
            "user": "carol",
            "scopes": [f"access:servers!server={target}", f"start:servers!server={target}"],
        },
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        sign_in(page, hub, "carol")
        page.goto(hub.url + "/user/alice/empty/")
        page.get_by_role("button", name="Start alice’s app").click()
        status = page.locator("#wake-status")
        expect(status).to_contain_text(
            "The app empty has no code yet; alice has to put it in place before it can start.",
            timeout=30_000,
        )
        assert "/homes/" not in visible_text(page)  # nothing of alice's home
        page.screenshot(path=str(output_dir / "app-wake-no-code.png"))
    finally:
        ctx.close()
