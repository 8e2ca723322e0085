"""static/session-token.js in a real browser: htmx requests carry a fresh ID token, and a stale
one is retried once with a new token.

App Bridge comes from Shopify's CDN, which this machine cannot reach; the test serves a stand-in
at its URL whose `shopify.idToken()` asks the simulator for a token, as App Bridge asks the admin.
"""

from __future__ import annotations

from urllib.parse import urlencode

from tests.shopify_fixtures import (  # noqa: F401 - fixtures
    config_with_simulator,
    simulator_fixture,
)

APP_BRIDGE = "https://cdn.shopify.com/shopifycloud/app-bridge.js"
STAND_IN = "window.shopify = { idToken: function () { return window.okappTestIdToken(); } };"


def test_htmx_requests_carry_a_fresh_id_token_and_a_stale_one_is_retried(browser, live_server,
                                                                        simulator):
    simulator.generate("acme", orders=2)
    issued = []

    def next_token():
        # The first token App Bridge hands out has already expired; later ones are fresh.
        token = simulator.id_token("acme", ttl=-120 if not issued else 60)
        issued.append(token)
        return token

    context = browser.new_context(base_url=live_server)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.expose_function("okappTestIdToken", next_token)
    page.route(APP_BRIDGE, lambda route: route.fulfill(
        status=200, content_type="text/javascript", body=STAND_IN))
    seen = []
    page.on("response", lambda r: seen.append(
        (r.url, r.status, r.request.headers.get("authorization", ""))) if "probe=1" in r.url
        else None)

    query = urlencode({"embedded": "1", "shop": "acme.myshopify.com",
                       "id_token": simulator.id_token("acme")})
    page.goto(f"/sequences?{query}")
    assert page.locator('meta[name="shopify-api-key"]').get_attribute("content") == \
        "test-client-id"
    page.evaluate("""() => {
        const b = document.createElement('button');
        b.id = 'probe'; b.setAttribute('hx-get', '/sequences?probe=1');
        b.setAttribute('hx-target', '#probe-out'); b.setAttribute('hx-select', 'h1');
        const out = document.createElement('div'); out.id = 'probe-out';
        document.body.append(b, out); htmx.process(b);
    }""")
    page.click("#probe")
    page.wait_for_selector("#probe-out h1")
    assert [(status, auth) for _, status, auth in seen] == [
        (401, f"Bearer {issued[0]}"), (200, f"Bearer {issued[1]}")]
    # The next request fetches a new token again (they live one minute).
    with page.expect_response(lambda r: "probe=1" in r.url and r.status == 200):
        page.click("#probe")
    assert len(issued) == 3 and seen[-1][1:] == (200, f"Bearer {issued[2]}")
    assert errors == []
    context.close()
