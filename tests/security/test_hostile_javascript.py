"""A hostile app's JavaScript, run in a real headless Chromium by an admin who views the app.

The app embeds a Streamlit component (an iframe sandboxed with ``allow-same-origin
allow-scripts``, so it runs with the app page's origin) whose script tries what
``GET /hub/token`` + ``POST /hub/api/users/<viewer>/tokens`` did while apps shared the hub's
origin: read the viewer's XSRF token and mint a hub token with the viewer's cookies. It tries
the hub both at its own address and at the app's host. With apps on hosts of their own, the
browser sends the hub's login cookie to neither the app's host nor a cross-origin script, and
the admin's token list stays as it was.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers.chromium import launched_chromium
from tests.helpers.hub import running_hub

ATTACK = r'''
import json, pathlib
import streamlit as st
import streamlit.components.v1 as components

hub = pathlib.Path("hub-url.txt").read_text().strip()
st.title("Quarterly numbers")
components.html("""
<pre id="out">working</pre>
<script>
(async () => {
  const out = {};
  for (const base of ["", HUB]) {
    const r = {};
    try {
      const page = await fetch(base + "/hub/token", {credentials: "include"});
      r.token_page = page.status;
      const text = await page.text();
      const m = text.match(/name="_xsrf" value="([^"]+)"/) || text.match(/xsrf_token:\\s*"([^"]+)"/);
      r.xsrf = m ? m[1] : "";
    } catch (e) { r.token_page = "blocked"; r.xsrf = ""; }
    try {
      const made = await fetch(base + "/hub/api/users/admin/tokens", {
        method: "POST", credentials: "include",
        headers: {"X-XSRFToken": r.xsrf, "Content-Type": "application/json"},
        body: JSON.stringify({note: "stolen", expires_in: 600})});
      r.mint = made.status;
      r.minted = (await made.text()).includes('"token"');
    } catch (e) { r.mint = "blocked"; r.minted = false; }
    out[base || "app host"] = r;
  }
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script>
""".replace("HUB", json.dumps(hub)), height=200)
'''


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as b:
        yield b


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("hostile-js")) as h:
        yield h


def test_an_apps_javascript_cannot_mint_a_hub_token_for_its_admin_viewer(hub, browser, output_dir):
    from playwright.sync_api import expect

    from tests.browser.conftest import sign_in

    alice = hub.login("alice")
    folder = hub.add_app("alice", "numbers", ATTACK)
    (folder / "hub-url.txt").write_text(hub.url)
    hub.hand_over("alice", folder / "hub-url.txt")
    hub.start_app(alice, "alice", "numbers", {"path": "apps/numbers/app.py"})
    assert (
        alice.post(
            f"{hub.url}/hub/api/shares/alice/numbers", json={"user": "admin"}, timeout=10
        ).status_code
        == 200
    )
    admin_api = hub.api(hub.token("admin"))

    def personal_tokens():  # API tokens, not the OAuth tokens apps get when admin signs in
        tokens = admin_api.get(f"{hub.url}/hub/api/users/admin/tokens", timeout=10).json()
        return {t["id"]: t.get("note") for t in tokens["api_tokens"] if not t.get("oauth_client")}

    before = personal_tokens()

    context = browser.new_context()
    page = context.new_page()
    try:
        sign_in(page, hub, "admin")
        page.goto(hub.url + "/user/alice/numbers/")
        consent = page.locator("#authorize-open-app")
        title = page.get_by_role("heading", name="Quarterly numbers")
        expect(consent.or_(title).first).to_be_visible(timeout=60_000)
        if consent.is_visible():
            consent.click()
        expect(title).to_be_visible(timeout=30_000)
        frame = page.frame_locator("iframe").first
        out = frame.locator("#out")
        expect(out).not_to_have_text("working", timeout=30_000)
        result = json.loads(out.inner_text())
        app_url = page.url
        page.screenshot(path=str(output_dir / "security-hostile-js.png"))
    finally:
        context.close()
    print("what the app's script got:", result)
    assert not any(r["minted"] for r in result.values()), result
    assert personal_tokens() == before
    # the app ran on its owner's host, not the hub's
    assert app_url.startswith(hub.app_origin("alice") + "/user/alice/numbers/"), app_url
