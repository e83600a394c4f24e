"""Debian's headless Chromium through Playwright, for tests that look as a person would."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import pytest

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def chromium_path():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def launched_chromium():
    """A launched browser; skips (fails under CI) when Debian's chromium is missing."""
    exe = chromium_path()
    if not exe:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: never let browser tests vanish silently
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=LAUNCH_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
