"""Installing and keeping access: token exchange, the authorization-code fallback, refresh."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from okapp.models import Product, Shop
from okapp.shopify import tokens
from okapp.shopify.graphql import AdminClient
from okapp.shopify.tokens import ReauthRequired
from tests.shopify_fixtures import (  # noqa: F401 - fixtures
    config_with_simulator,
    install,
    run_jobs,
    simulator_fixture,
)


def _shop(session, domain) -> Shop:
    session.expire_all()
    return session.scalar(select(Shop).where(Shop.domain == domain))


def test_token_exchange_installs_the_shop_from_the_admins_id_token(client, simulator, session,
                                                                 runtime):
    simulator.generate("acme", orders=30, products=5, name="Acme Goods",
                       timezone="Europe/Berlin", country="DE", currency="EUR", locale="de")
    response = install(client, simulator, "acme")
    assert response.status_code == 200
    assert "frame-ancestors https://acme.myshopify.com https://admin.shopify.com" in \
        response.headers["Content-Security-Policy"]
    shop = _shop(session, "acme.myshopify.com")
    assert shop.is_installed and shop.access_token.startswith("shpat_")
    assert shop.refresh_token.startswith("shprt_") and shop.access_token_expires_at
    assert (shop.name, shop.timezone, shop.country, shop.currency, shop.locale) == (
        "Acme Goods", "Europe/Berlin", "DE", "EUR", "de")
    assert simulator.shop("acme").counters["exchanges"] == 1
    # Tokens are encrypted at rest.
    raw = session.connection().exec_driver_sql(
        "SELECT access_token FROM shops WHERE domain = 'acme.myshopify.com'").scalar()
    assert "shpat_" not in raw
    # The first import reads the catalogue and recent orders over GraphQL.
    run_jobs(runtime, "default")
    assert session.scalar(select(Product.id).where(Product.shop_id == shop.id)) is not None
    # The next page load uses the stored token: no second exchange.
    assert install(client, simulator, "acme").status_code == 200
    assert simulator.shop("acme").counters["exchanges"] == 1


def test_reinstall_after_uninstall_exchanges_again(client, simulator, session):
    simulator.generate("acme", orders=3)
    install(client, simulator, "acme")
    shop = _shop(session, "acme.myshopify.com")
    shop.uninstalled_at = shop.installed_at
    shop.access_token = shop.refresh_token = None
    session.commit()
    assert install(client, simulator, "acme").status_code == 200
    shop = _shop(session, "acme.myshopify.com")
    assert shop.is_installed and shop.access_token
    assert simulator.shop("acme").counters["exchanges"] == 2


@pytest.fixture
def live_app(app, config):
    """The app served over real HTTP on a free port (for redirects between app and Shopify)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.port}"
    app.config["SERVER_NAME"] = f"127.0.0.1:{server.port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()


def test_authorization_code_fallback_end_to_end(live_app, simulator, session):
    simulator.generate("codeshop", orders=3, name="Code Shop")
    simulator.app_url = live_app
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        start = browser.get(f"{live_app}/auth/install", params={"shop": "codeshop.myshopify.com"})
        assert start.status_code == 302
        consent = start.headers["location"]
        assert consent.startswith(simulator.base_url + "/codeshop/admin/oauth/authorize?")
        state = parse_qs(urlsplit(consent).query)["state"][0]
        back = browser.get(consent)  # the merchant approves; Shopify redirects with a signed code
        callback = back.headers["location"]
        assert callback.startswith(f"{live_app}/auth/callback?")
        # A tampered callback is refused before any code is exchanged.
        tampered = callback.replace("codeshop.myshopify.com", "evil.myshopify.com")
        assert browser.get(tampered).status_code == 400
        done = browser.get(callback)
        assert done.status_code == 302
        assert done.headers["location"].startswith(simulator.base_url + "/codeshop/admin/apps/")
        # The state nonce is single-use: replaying the callback fails.
        assert browser.get(callback).status_code == 400
        # Following into the admin lands on the app, signed in by a fresh ID token.
        app_page = browser.get(done.headers["location"], follow_redirects=True)
        assert app_page.status_code == 200
    shop = _shop(session, "codeshop.myshopify.com")
    assert shop.is_installed and shop.refresh_token and shop.name == "Code Shop"
    assert state


def test_callback_with_forged_hmac_is_refused(client, simulator):
    simulator.generate("codeshop", orders=1)
    response = client.get("/auth/callback?code=abc&shop=codeshop.myshopify.com&state=x"
                          "&timestamp=1900000000&hmac=" + "0" * 64)
    assert response.status_code == 400


def test_install_rejects_a_shop_that_is_not_myshopify(client):
    assert client.get("/auth/install?shop=evil.example.com").status_code == 400
    assert client.get("/auth/install?shop=evil.myshopify.com.example.com").status_code == 400


def test_worker_keeps_calling_across_several_access_token_expiries(client, simulator, session,
                                                                   runtime):
    simulator.access_ttl = 1  # every token is past the refresh margin at once
    simulator.generate("acme", orders=5)
    install(client, simulator, "acme")
    shop = _shop(session, "acme.myshopify.com")
    admin = AdminClient(runtime, shop.id, shop.domain)
    seen = set()
    for _ in range(4):
        assert admin.execute("ShopDetails", "query ShopDetails { shop { name } }")["shop"]
        seen.add(_shop(session, shop.domain).access_token)
        simulator.expire_access_tokens("acme")
    assert len(seen) == 4
    assert simulator.shop("acme").counters["refreshes"] >= 3
    assert simulator.shop("acme").counters["unauthorized"] == 0  # refreshed before expiry


def test_a_401_refreshes_once_and_retries(client, simulator, session, runtime):
    simulator.generate("acme", orders=5)
    install(client, simulator, "acme")
    shop = _shop(session, "acme.myshopify.com")
    simulator.expire_access_tokens("acme")  # Shopify says no although our clock says fresh
    data = AdminClient(runtime, shop.id, shop.domain).execute(
        "ShopDetails", "query ShopDetails { shop { name } }")
    assert data["shop"]["name"]
    assert simulator.shop("acme").counters["unauthorized"] == 1
    assert simulator.shop("acme").counters["refreshes"] == 1


def test_two_workers_refreshing_at_once_keep_a_working_token(client, simulator, session,
                                                            runtime):
    simulator.refresh_grace = False  # a refresh token works once: a race would lose the shop
    simulator.generate("acme", orders=5)
    install(client, simulator, "acme")
    shop = _shop(session, "acme.myshopify.com")
    simulator.expire_access_tokens("acme")
    stale = shop.access_token
    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker():
        barrier.wait()
        try:
            results.append(tokens.access_token(runtime, shop.id, rejected=stale))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1  # everyone got the one refreshed token
    assert simulator.shop("acme").counters["refreshes"] == 1
    fresh = _shop(session, shop.domain)
    assert fresh.access_token == results[0] and not fresh.needs_reauth
    assert AdminClient(runtime, shop.id, shop.domain).execute(
        "ShopDetails", "query ShopDetails { shop { name } }")["shop"]


def test_a_dead_refresh_token_pauses_the_shop_until_it_is_reopened(client, simulator, session,
                                                                  runtime):
    simulator.generate("acme", orders=5)
    install(client, simulator, "acme")
    shop = _shop(session, "acme.myshopify.com")
    with simulator.store.lock:
        simulator.shop("acme").refresh_tokens.clear()  # revoked on Shopify's side
    simulator.expire_access_tokens("acme")
    with pytest.raises(ReauthRequired):
        AdminClient(runtime, shop.id, shop.domain).execute("ShopDetails",
                                                           "query ShopDetails { shop { name } }")
    assert _shop(session, shop.domain).needs_reauth
    # Opening the app again exchanges a new ID token and clears the flag.
    assert install(client, simulator, "acme").status_code == 200
    assert not _shop(session, shop.domain).needs_reauth
