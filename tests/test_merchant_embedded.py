"""The same merchant templates inside the Shopify admin: App Bridge first, the sidebar menu."""

from __future__ import annotations

import re

from tests.shopify_fixtures import (  # noqa: F401 - fixtures
    config_with_simulator,
    install,
    simulator_fixture,
)


def test_inside_the_admin_app_bridge_loads_first_and_fills_the_sidebar(client, simulator):
    simulator.generate("acme", orders=1)
    page = install(client, simulator, "acme")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    # App Bridge must be the first script, loaded synchronously; htmx and ui.js come after it.
    scripts = re.findall(r'<script src="([^"]+)"( defer)?>', html)
    assert scripts[0] == ("https://cdn.shopify.com/shopifycloud/app-bridge.js", "")
    assert any("htmx" in src for src, _ in scripts[1:]) and any("ui.js" in src for src, _ in scripts)
    assert not any("cdn" in src for src, _ in scripts[1:])  # nothing else from a CDN
    menu = html[html.index("<ui-nav-menu>"):html.index("</ui-nav-menu>")]
    links = re.findall(r'<a href="([^"]+)"( rel="home")?>([^<]+)</a>', menu)
    assert links[0] == ("/", ' rel="home"', "okapp")  # names the app's root; not listed
    assert [label for _, _, label in links[1:]] == [
        "Sequences", "Emails", "Reviews", "Orders", "Settings"]
    # htmx requests carry the ID token (session-token.js); the fragment comes back alone.
    fragment = client.get("/sequences/new", headers={
        "Authorization": f"Bearer {simulator.id_token('acme')}", "HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.get_data(as_text=True)
    assert "Create Sequence" in fragment.get_data(as_text=True)
