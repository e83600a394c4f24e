"""A person, in headless Chromium: publishing from the hub home page (#14 point 5).

A real hub and proxy, real ``uv`` building each version's packages from a local wheelhouse
(``tests/helpers/wheels.py``; no index is ever asked), a git repository served on 127.0.0.1
(``tests/helpers/git_server.py``), real app servers. In order:

- alice adds the app "sales" on the page, deploys a .tar.gz of its folder with the deploy
  dialog, watches the build's steps, reads "Deployed v1", starts the app from the dialog and
  sees it render with the package version it printed;
- she deploys a broken version (a requirement the wheelhouse does not have): the dialog says
  why and shows the build log; the app still serves v1;
- she deploys a good v2 (the running app restarts on it, she opens it), then rolls back to v1
  from the version list (Activate, after a question saying the running app restarts), sees v1
  served again, and deletes v2;
- she deploys from git on the dialog's git tab;
- carol, a viewer the app is shared with, gets no deploy or version controls.

Screenshots: test-output/publish-page-*.png.
"""

from __future__ import annotations

import io
import re
import tarfile
import textwrap

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import consent_then_app, sign_in
from tests.helpers.git_server import GitServer
from tests.helpers.hub import running_hub
from tests.helpers.wheels import build_wheel

APP = """
import streamlit as st
import hubtestpkg
st.title("Sales {tag}")
st.write("package " + hubtestpkg.__version__)
"""

POLICY = """
profiles:
  small: {{display_name: "Small", cpu_limit: 1, mem_limit: 2G}}
groups:
  analysts: {{profiles: [small], max_running_apps: 20, max_apps: 60}}
defaults: {{profiles: [], max_running_apps: 0, max_apps: 0, may_publish: false}}
sources:
  git_hosts: ["{git}"]
"""

BUILD = 120_000  # ms: a build, and a restart of the running app on the new version


def bundle(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = textwrap.dedent(text).encode()
            info = tarfile.TarInfo(f"sales/{name}")  # a packed folder, as `tar czf` makes it
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sales(tag: str, requirements: str) -> bytes:
    return bundle({"app.py": APP.format(tag=tag), "requirements.txt": requirements})


@pytest.fixture(scope="module")
def git(tmp_path_factory):
    with GitServer(tmp_path_factory.mktemp("git")) as server:
        yield server


@pytest.fixture(scope="module")
def hub(tmp_path_factory, git):
    wheels = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(wheels, "hubtestpkg", "1.0")
    build_wheel(wheels, "hubtestpkg", "2.0")
    wheels.chmod(0o755)
    with running_hub(
        tmp_path_factory.mktemp("publish-page"),
        env={"STREAMLIT_HUB_FIND_LINKS": str(wheels), "STREAMLIT_HUB_PACKAGE_OFFLINE": "true"},
        policy=POLICY.format(git=git.host),
    ) as h:
        yield h


@pytest.fixture
def page(browser):
    """A fresh browser page; a script error on it fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield page
    finally:
        context.close()
    assert errors == [], errors


def deploy_upload(page, name: str, data: bytes):
    """Open sales's deploy dialog, choose the file, press Deploy."""
    page.locator("#deploy-sales").click()
    dialog = page.locator("#deploy-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("The app’s folder as a .zip, .tar.gz or .tar").set_input_files(
        {"name": name, "mimeType": "application/gzip", "buffer": data}
    )
    dialog.locator("#deploy-submit").click()
    return dialog


def open_app(page, hub, tag: str, package: str):
    page.goto(hub.app_url("alice", "sales"))
    consent_then_app(page, heading=f"Sales {tag}")
    expect(page.get_by_text(f"package {package}")).to_be_visible(timeout=30_000)


def test_alice_deploys_from_the_page_watches_the_build_and_opens_the_app(page, hub, output_dir):
    sign_in(page, hub, "alice")
    expect(page.locator("#code-hint")).to_contain_text("Or add an app and deploy a folder to it")
    page.fill("input.new-server-name", "sales")
    page.click("button.new-server-btn")  # JupyterHub creates the app, then reloads the page
    badge = page.locator("#app-version-sales")
    expect(badge).to_have_text(
        "no version yet · runs from your home folder · deploy a folder to publish it"
    )

    # the dialog takes the focus, and Escape closes it
    page.locator("#deploy-sales").click()
    dialog = page.locator("#deploy-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Deploy a version of “sales”")
    expect(page.locator("#deploy-file")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#deploy-sales")).to_be_focused()

    deploy_upload(page, "sales.tar.gz", sales("one", "hubtestpkg==1.0\n"))
    expect(page.locator("#deploy-done-message")).to_have_text("Deployed v1.", timeout=BUILD)
    steps = page.locator("#deploy-steps li")
    expect(steps.first).to_have_text("Checking the bundle")
    texts = steps.all_inner_texts()
    assert any(t.startswith("Installing 1 package(s): hubtestpkg") for t in texts), texts
    assert any(t.startswith("Deployed v1 (sha256:") for t in texts), texts
    assert not any(t.startswith("Restarting") for t in texts), texts  # it was not running
    expect(page.locator("#deploy-progress")).to_have_js_property("value", 100)
    expect(page.locator("#deploy-done-run")).to_have_text(
        "The app is not running: start it to run v1."
    )
    expect(page.locator("#deploy-error")).to_be_hidden()
    expect(badge).to_have_text("v1 · just now · alice · upload sales.tar.gz")
    page.screenshot(path=str(output_dir / "publish-page-deployed.png"))

    page.get_by_role("link", name="Start sales").click()
    page.wait_for_url(re.compile(r".*/hub/spawn/alice/sales"))
    expect(page.locator("#streamlit-app-path")).to_contain_text(
        "Runs version v1, deployed by alice"
    )
    page.get_by_role("button", name="Start").click()
    consent_then_app(page, heading="Sales one")
    expect(page.get_by_text("package 1.0")).to_be_visible(timeout=30_000)
    page.screenshot(path=str(output_dir / "publish-page-v1.png"))


def test_a_broken_deploy_says_why_and_the_app_keeps_serving_v1(page, hub, output_dir):
    sign_in(page, hub, "alice")
    dialog = deploy_upload(page, "broken.tar.gz", sales("broken", "no-such-package-xyz\n"))
    error = page.locator("#deploy-error-message")
    expect(error).to_contain_text("could not be built", timeout=BUILD)
    expect(error).to_contain_text("no-such-package-xyz")
    expect(error).to_contain_text("The app still runs the version it ran before.")
    expect(page.locator("#deploy-done")).to_be_hidden()
    log = page.locator("#deploy-log")
    expect(log).to_be_hidden()  # collapsed until asked for
    dialog.get_by_text("Build log").click()
    expect(log).to_be_visible()
    expect(log).to_contain_text("no-such-package-xyz")
    assert log.evaluate("e => getComputedStyle(e).fontFamily") == "monospace"
    page.screenshot(path=str(output_dir / "publish-page-broken.png"))
    page.keyboard.press("Escape")
    expect(page.locator("#app-version-sales")).to_contain_text("v1 · ")

    open_app(page, hub, "one", "1.0")


def test_alice_deploys_v2_then_rolls_back_to_v1(page, hub, output_dir):
    sign_in(page, hub, "alice")
    deploy_upload(page, "sales-2.tar.gz", sales("two", "hubtestpkg==2.0\n"))
    expect(page.locator("#deploy-done-message")).to_have_text("Deployed v2.", timeout=BUILD)
    expect(page.locator("#deploy-done-run")).to_have_text(
        "The app was running: it restarted on v2."
    )
    expect(page.locator("#deploy-steps")).to_contain_text("Restarting sales on v2")
    page.get_by_role("link", name="Open sales").click()
    consent_then_app(page, heading="Sales two")
    expect(page.get_by_text("package 2.0")).to_be_visible(timeout=30_000)

    page.goto(hub.url + "/hub/home")
    expect(page.locator("#app-version-sales")).to_have_text(
        "v2 · just now · alice · upload sales-2.tar.gz"
    )
    page.locator("#versions-sales").click()
    versions = page.locator("#versions-dialog")
    expect(versions).to_be_visible()
    rows = versions.locator("tr.version-row")
    expect(rows).to_have_count(2)
    v1, v2 = rows.nth(0), rows.nth(1)
    expect(v1).to_contain_text("upload sales.tar.gz")
    expect(v2).to_contain_text("Active")
    expect(v1).not_to_contain_text("Active")
    expect(v1.locator("td").nth(2)).to_have_text("alice")
    expect(v1.locator("td").nth(4)).to_have_text("yes")
    expect(v2.get_by_role("button")).to_have_count(0)  # neither Activate nor Delete
    versions.get_by_role("button", name="Last build log").click()
    expect(page.locator("#versions-log")).to_contain_text("Deployed v2")
    page.screenshot(path=str(output_dir / "publish-page-versions.png"))

    asked = []
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    versions.get_by_role("button", name="Activate v1").click()
    expect(page.locator("#versions-status")).to_contain_text(
        "v1 is active. The app restarted on it.", timeout=BUILD
    )
    assert asked and "The app is running: it restarts on v1" in asked[0], asked
    expect(rows.nth(0)).to_contain_text("Active")
    expect(page.locator("#app-version-sales")).to_have_text(
        re.compile(r"^v1 · (just now|\d+ min ago) · alice · upload sales\.tar\.gz$")
    )
    page.screenshot(path=str(output_dir / "publish-page-rolled-back.png"))

    page.once("dialog", lambda d: d.accept())
    versions.get_by_role("button", name="Delete v2").click()
    expect(page.locator("#versions-status")).to_have_text("v2 is deleted.")
    expect(rows).to_have_count(1)
    page.keyboard.press("Escape")
    expect(versions).to_be_hidden()
    expect(page.locator("#versions-sales")).to_be_focused()
    page.screenshot(path=str(output_dir / "publish-page-home.png"))

    open_app(page, hub, "one", "1.0")


def test_alice_deploys_from_git(page, hub, git, output_dir):
    commit = git.commit(
        "sales", {"app.py": APP.format(tag="git"), "requirements.txt": "hubtestpkg==1.0\n"}
    )
    sign_in(page, hub, "alice")
    page.locator("#deploy-sales").click()
    dialog = page.locator("#deploy-dialog")
    dialog.get_by_role("tab", name="From git").click()
    expect(dialog.get_by_role("tab", name="From git")).to_have_attribute("aria-selected", "true")
    # a host the policy does not allow: refused before anything streams, in the hub's words
    dialog.get_by_label("Repository URL").fill("https://example.com/team/sales.git")
    dialog.locator("#deploy-git-submit").click()
    expect(page.locator("#deploy-error-message")).to_contain_text(
        "Apps may not be deployed from example.com"
    )
    expect(page.locator("#deploy-log-box")).to_be_hidden()  # no build ran: no log
    dialog.get_by_label("Repository URL").fill(git.url("sales"))
    dialog.get_by_label("Branch, tag or commit").fill("main")
    dialog.locator("#deploy-git-submit").click()
    expect(page.locator("#deploy-done-message")).to_have_text("Deployed v3.", timeout=BUILD)
    expect(page.locator("#deploy-error")).to_be_hidden()
    expect(page.locator("#deploy-steps")).to_contain_text(f"Fetching {commit[:12]}")
    expect(page.locator("#app-version-sales")).to_have_text(
        f"v3 · just now · alice · git {git.host}/sales main @ {commit[:7]}"
    )
    page.screenshot(path=str(output_dir / "publish-page-git.png"))
    open_app(page, hub, "git", "1.0")


def test_carol_a_viewer_gets_no_deploy_or_version_controls(browser, hub, output_dir):
    alice = hub.login("alice")
    r = alice.post(f"{hub.url}/hub/api/shares/alice/sales", json={"user": "carol"}, timeout=30)
    assert r.status_code == 200, r.text
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        sign_in(page, hub, "alice")  # the controls are there for the app's owner …
        expect(page.locator("#deploy-sales")).to_be_visible()
        expect(page.locator("#versions-sales")).to_be_visible()
        page.context.clear_cookies()
        sign_in(page, hub, "carol")  # … and not for a viewer it is shared with
        shared = page.locator('li.shared-app[data-app="alice/sales"]')
        expect(shared).to_contain_text("alice’s app “sales”")
        expect(shared.get_by_role("link", name="Open alice/sales")).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("deploy|versions", re.I))).to_have_count(
            0
        )
        expect(page.locator("#deploy-dialog, #versions-dialog, .app-version")).to_have_count(0)
        page.screenshot(path=str(output_dir / "publish-page-viewer.png"))
    finally:
        context.close()
