"""Merchant requests are signed in by Shopify ID tokens, and each token sees only its own shop."""

from __future__ import annotations

import re
import time
import uuid

import jwt
from sqlalchemy import select, text

from okapp import create_app
from okapp.config import Config
from okapp.db import Base
from okapp.models import EmailTemplate, Review, Shop, Suppression
from okapp.runtime import Runtime
from okapp.views.auth import merchant_required
from tests.factories import (
    make_enrollment,
    make_message,
    make_order,
    make_product,
    make_sequence,
    make_shop,
)
from tests.shopify_fixtures import (  # noqa: F401 - fixtures
    config_with_simulator,
    install,
    simulator_fixture,
)

SECRET = "test-client-secret-0123456789abcdef"
RETRY = "X-Shopify-Retry-Invalid-Session-Request"


def _claims(domain="acme.myshopify.com", **overrides) -> dict:
    now = int(time.time())
    claims = {"iss": f"https://{domain}/admin", "dest": f"https://{domain}",
              "aud": "test-client-id", "sub": "42", "exp": now + 60, "nbf": now - 5,
              "iat": now, "jti": str(uuid.uuid4()), "sid": "s1"}
    claims.update(overrides)
    return claims


def _token(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _bearer(client, token: str, path: str = "/sequences"):
    return client.get(path, headers={"Authorization": f"Bearer {token}", "HX-Request": "true"})


def test_a_valid_token_signs_in_and_an_htmx_request_carries_it(client, simulator, session):
    simulator.generate("acme", orders=2)
    assert install(client, simulator, "acme").status_code == 200
    response = _bearer(client, simulator.id_token("acme"))
    assert response.status_code == 200


def test_expired_other_app_other_shop_unsigned_and_tampered_tokens_are_refused(
        client, simulator, session):
    simulator.generate("acme", orders=2)
    install(client, simulator, "acme")
    past = int(time.time()) - 120
    refused = {
        "expired": _token(_claims(exp=past, iat=past - 60, nbf=past - 60)),
        "other app (audience)": _token(_claims(aud="another-app")),
        "other app (secret)": _token(_claims(), secret="another-apps-secret-0123456789abcdef"),
        "unsigned": jwt.encode(_claims(), key=None, algorithm="none"),
        "iss and dest disagree": _token(_claims(iss="https://other.myshopify.com/admin")),
        "not a shop": _token(_claims(domain="evil.example.com")),
    }
    good = simulator.id_token("acme")
    head, body, signature = good.split(".")
    other_body = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(body).replace(b"acme", b"bcme")).decode()
    refused["tampered"] = f"{head}.{other_body}.{signature}"
    for name, token in refused.items():
        response = _bearer(client, token)
        assert response.status_code == 401, name
        assert response.headers.get(RETRY) == "1", name
        # A document load with the same token is refused too; a stale or badly signed one is
        # sent to the bounce page for a fresh token.
        page = client.get(f"/sequences?embedded=1&shop=acme.myshopify.com&id_token={token}")
        assert page.status_code in (302, 401), name
        if page.status_code == 302:
            assert "/auth/session-token?" in page.headers["Location"], name
            assert "shopify-reload=%2Fsequences" in page.headers["Location"], name
            assert "id_token" not in page.headers["Location"], name
    expired = client.get("/sequences?embedded=1&shop=acme.myshopify.com&id_token="
                         + refused["expired"])
    assert expired.status_code == 302


def test_a_token_for_another_shop_than_the_page_names_is_refused(client, simulator, session):
    simulator.generate("acme", orders=1)
    simulator.generate("bcme", orders=1)
    install(client, simulator, "acme")
    install(client, simulator, "bcme")
    url = f"/sequences?embedded=1&shop=acme.myshopify.com&id_token={simulator.id_token('bcme')}"
    assert client.get(url).status_code in (302, 401)


def test_the_dev_login_does_not_stand_in_for_a_bad_token(merchant, simulator):
    response = _bearer(merchant, _token(_claims(aud="another-app")))
    assert response.status_code == 401


def test_missing_token_on_an_embedded_load_bounces_and_the_bounce_page_loads_app_bridge(client):
    page = client.get("/sequences?embedded=1&shop=acme.myshopify.com&host=YWRtaW4")
    assert page.status_code == 302
    bounce = client.get(page.headers["Location"])
    assert bounce.status_code == 200
    assert b'data-api-key="test-client-id"' in bounce.data
    assert b"app-bridge.js" in bounce.data
    assert "frame-ancestors https://acme.myshopify.com https://admin.shopify.com" in \
        bounce.headers["Content-Security-Policy"]


def test_every_response_says_who_may_frame_it(client, simulator):
    assert client.get("/healthz").headers["Content-Security-Policy"] == "frame-ancestors 'none';"
    simulator.generate("acme", orders=1)
    page = install(client, simulator, "acme")
    assert page.headers["Content-Security-Policy"] == (
        "frame-ancestors https://acme.myshopify.com https://admin.shopify.com;")
    assert b'<meta name="shopify-api-key" content="test-client-id">' in page.data
    assert b"session-token.js" in page.data


def test_outside_the_admin_the_page_has_no_app_bridge(merchant):
    page = merchant.get("/sequences")
    assert page.status_code == 200
    assert b"app-bridge.js" not in page.data


def test_no_development_login_in_production(config):
    production = Config(**{**config.__dict__, "env": "production"})
    app = create_app(runtime=Runtime(production))
    client = app.test_client()
    assert client.get("/dev/login?shop=x.myshopify.com").status_code == 404
    with app.test_request_context():
        from okapp.views.auth import dev_login_token

        token = dev_login_token("x.myshopify.com")
    assert client.get(f"/sequences?dev_login={token}").status_code == 401


# --- every merchant route is scoped to the token's shop ---------------------------------------

_WRAPPER_CODE = merchant_required(lambda: None).__code__


def _is_merchant_view(view) -> bool:
    while view is not None:
        if getattr(view, "__code__", None) is _WRAPPER_CODE:
            return True
        view = getattr(view, "__wrapped__", None)
    return False


def merchant_rules(app):
    rules = [r for r in app.url_map.iter_rules()
             if _is_merchant_view(app.view_functions.get(r.endpoint))]
    assert rules, "no merchant routes found: the walk would prove nothing"
    return rules


MARKER = "Bravo0Marker"


def _seed_victim(session, simulator):
    """Shop B, with something of every kind for A to try to read or change."""
    victim = make_shop(session, name=f"{MARKER} Shop", domain="bravo.myshopify.com",
                       settings={"sender_name": f"{MARKER} sender"})
    product = make_product(session, victim, title=f"{MARKER} Product")
    order = make_order(session, victim, [product], email=f"{MARKER.lower()}@example.com",
                       customer_first_name=MARKER, name="#B-9001")
    sequence = make_sequence(session, victim, name=f"{MARKER} Sequence")
    enrollment = make_enrollment(session, sequence, order)
    message = make_message(session, enrollment, subject=f"{MARKER} subject")
    template = EmailTemplate(shop_id=victim.id, kind="request", name=f"{MARKER} Template",
                             fields={"en": {"subject": f"{MARKER} subject"}})
    review = Review(shop_id=victim.id, product_id=product.id, order_id=order.id, rating=5,
                    email=order.email, reviewer_name=MARKER, body=f"{MARKER} review")
    session.add_all([template, review, Suppression(shop_id=victim.id,
                                                   address="blocked@bravo.example",
                                                   reason="blocklist")])
    session.commit()
    ids = {"sequence": sequence.id, "order": order.id, "product": product.id,
           "enrollment": enrollment.id, "message": message.id, "template": template.id,
           "email": template.id, "review": review.id, "block": sequence.blocks[0].id,
           "shop": victim.id}
    return victim, ids


def _snapshot(session, shop_id: int) -> dict:
    """Every row that belongs to the shop, in every table."""
    session.expire_all()
    rows = {}
    for table in Base.metadata.sorted_tables:
        if "shop_id" in table.c:
            query = select(table).where(table.c.shop_id == shop_id).order_by(*table.primary_key)
        elif table.name == "shops":
            query = select(table).where(table.c.id == shop_id)
        elif table.name == "blocks":
            query = text("SELECT b.* FROM blocks b JOIN sequences s ON s.id = b.sequence_id "
                         "WHERE s.shop_id = :s ORDER BY b.id").bindparams(s=shop_id)
        else:
            continue
        rows[table.name] = [tuple(r) for r in session.execute(query)]
    return rows


def _url_for(rule, ids: dict) -> str:
    values = {}
    for arg in rule.arguments:
        key = arg.removesuffix("_id")
        converter = rule._converters.get(arg)
        if converter is not None and type(converter).__name__ == "IntegerConverter":
            values[arg] = ids.get(key, ids["sequence"])
        else:
            values[arg] = {"kind": "request"}.get(arg, str(ids.get(key, ids["sequence"])))
    path = rule.rule
    for arg, value in values.items():
        path = re.sub(r"<(?:[^:<>]+:)?" + arg + r">", str(value), path)
    return path


def test_no_merchant_route_lets_one_shop_read_or_change_another(app, client, simulator,
                                                               session):
    simulator.generate("acme", orders=1)
    assert install(client, simulator, "acme").status_code == 200
    victim, ids = _seed_victim(session, simulator)
    before = _snapshot(session, victim.id)
    form = {"name": "taken over", "status": "running", "rating": "1", "subject": "x",
            "body": "x", "sender_name": "x", "reply_to": "evil@example.com", "q": "#B-9001",
            "email": f"{MARKER.lower()}@example.com", "start_date": "2020-01-01",
            "address": "evil@example.com", "order": "#B-9001", "query": "#B-9001"}
    checked = []
    for rule in merchant_rules(app):
        url = _url_for(rule, ids)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            token = simulator.id_token("acme")
            for htmx in (True, False):
                headers = {"Authorization": f"Bearer {token}"}
                if htmx:
                    headers["HX-Request"] = "true"
                response = client.open(url, method=method, headers=headers,
                                       data=form if method != "GET" else None)
                body = response.get_data(as_text=True)
                assert MARKER not in body and MARKER.lower() not in body, (method, url)
                assert response.status_code != 500, (method, url, body[:300])
            checked.append(f"{method} {rule.rule}")
    assert _snapshot(session, victim.id) == before, "shop A changed shop B's data"
    assert len(checked) >= len(merchant_rules(app))
    assert session.scalar(select(Shop.name).where(Shop.id == victim.id)) == f"{MARKER} Shop"


def test_a_shop_needing_reauthorisation_is_told_to_reopen_the_app(merchant, shop, session):
    shop.needs_reauth = True
    session.commit()
    page = merchant.get("/sequences")
    assert b"Emails are paused." in page.data
    assert b"Open okapp from your Shopify admin" in page.data
