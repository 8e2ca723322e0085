"""Browser tests: Debian's Chromium, driven by Playwright, against the app served on a real port.

The server is the test app (its own database and Redis db) under werkzeug in a thread, so a test can
arrange rows with the `session`/`commit` fixtures and then watch a merchant use the pages.
"""

from __future__ import annotations

import os
import threading

import pytest
from playwright.sync_api import Page, sync_playwright
from werkzeug.serving import make_server

from okapp.views.auth import dev_login_url

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live_server(app):
    """The app on 127.0.0.1:<free port> for the length of one test."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


def open_page(browser, app, live_server, shop, width: int = 1280, height: int = 900) -> Page:
    """A fresh browser context logged into `shop` through the development login."""
    context = browser.new_context(base_url=live_server, viewport={"width": width, "height": height})
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    with app.test_request_context():
        page.goto(dev_login_url(live_server, shop.domain))
    return page


@pytest.fixture
def page(browser, app, live_server, shop):
    page = open_page(browser, app, live_server, shop)
    yield page
    errors = list(page.js_errors)
    page.context.close()
    # A script error in the page is a failure, even if the assertions happened to pass.
    assert errors == []
