"""app/uninstalled stops everything; customers/redact and shop/redact erase what they must."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select

from okapp.db import Base
from okapp.emails.suppression import suppression_reason
from okapp.jobs.sends import send_messages
from okapp.models import (
    JourneyStep,
    Message,
    Order,
    Review,
    ReviewMedia,
    Shop,
    Suppression,
    WebhookEvent,
)
from okapp.shopify.graphql import AdminClient
from okapp.shopify.tokens import ReauthRequired
from tests.factories import make_enrollment, make_message, make_order, make_product, make_sequence
from tests.shopify_fixtures import (  # noqa: F401 - fixtures
    config_with_simulator,
    forward_webhooks,
    install,
    run_jobs,
    simulator_fixture,
)

PRIVATE = ("jane.private@example.com", "Janeprivate", "Doeprivate")


def _installed_shop(client, simulator, session) -> Shop:
    assert install(client, simulator, "acme").status_code == 200
    session.expire_all()
    return session.scalar(select(Shop).where(Shop.domain == "acme.myshopify.com"))


def test_after_app_uninstalled_nothing_more_is_sent(client, simulator, session, runtime,
                                                     config):
    simulator.generate("acme", orders=0, products=2)
    shop = _installed_shop(client, simulator, session)
    order = make_order(session, shop)
    sequence = make_sequence(session, shop, status="running")
    message = make_message(session, make_enrollment(session, sequence, order))
    session.commit()
    start = len(simulator.deliveries)
    simulator.uninstall("acme")
    assert [r.status_code for r in forward_webhooks(client, simulator, start)] == [200]
    run_jobs(runtime, "webhooks")
    session.expire_all()
    shop = session.get(Shop, shop.id)
    assert not shop.is_installed and shop.access_token is None and shop.refresh_token is None
    assert send_messages([message.id]) == {message.id: "skipped: shop_uninstalled"}
    session.expire_all()
    assert session.get(Message, message.id).state == "skipped"
    outbox = config.outbox_path
    assert not outbox.exists() or not any(outbox.iterdir())
    # No API call goes out either, and a duplicate delivery changes nothing.
    try:
        AdminClient(runtime, shop.id, shop.domain).execute("ShopDetails", "query ShopDetails {}")
        raise AssertionError("an uninstalled shop still reached the Admin API")
    except ReauthRequired:
        pass
    forward_webhooks(client, simulator, start)
    assert session.scalar(select(func.count()).select_from(WebhookEvent).where(
        WebhookEvent.topic == "app/uninstalled")) == 1


def _all_text(session) -> str:
    """Every value of every row of every table, as text (what a privacy audit would grep)."""
    session.expire_all()
    dump = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)):
            dump.append(repr(tuple(row)))
    return "\n".join(dump).lower()


def test_customers_redact_leaves_no_personal_data_of_that_customer(client, simulator, session,
                                                                   runtime, config):
    simulator.generate("acme", orders=0, products=3)
    shop = _installed_shop(client, simulator, session)
    sim_shop = simulator.shop("acme")
    email, first, last = PRIVATE
    customer = {"id": 4242, "first_name": first, "last_name": last, "email": email}
    with simulator.store.lock:
        sim_orders = [simulator.store.add_order(
            sim_shop, created=datetime.now(UTC), customer=customer, country="FR",
            items=[(sim_shop.products[i], 1)], email=email) for i in (0, 1)]
    start = len(simulator.deliveries)
    for sim_order in sim_orders:
        simulator.fulfill("acme", sim_order["id"])  # their payloads carry her name and email
    forward_webhooks(client, simulator, start)
    run_jobs(runtime, "webhooks")
    session.expire_all()
    orders = session.scalars(select(Order).where(Order.email == email)).all()
    assert len(orders) == 2 and orders[0].customer_first_name == first
    # Everything else the app keeps about her: an enrollment, a sent message with a journal
    # line, a review with a photo, and her unsubscribe.
    sequence = make_sequence(session, shop, status="running")
    enrollment = make_enrollment(session, sequence, orders[0])
    make_message(session, enrollment, subject=f"{first}, how was it?", state="sent",
                 error=f"450 {email} greylisted")
    session.add(JourneyStep(enrollment_id=enrollment.id, at=datetime.now(UTC), event="sent",
                            detail=f"sent to {email}"))
    product = make_product(session, shop)
    review = Review(shop_id=shop.id, product_id=product.id, order_id=orders[0].id, rating=5,
                    email=email, reviewer_name=f"{first} {last}", body=f"Love it — {first}")
    photo = config.media_root / "reviews" / "jane.jpg"
    photo.parent.mkdir(parents=True, exist_ok=True)
    photo.write_bytes(b"\xff\xd8 photo")
    review.media.append(ReviewMedia(kind="photo", path="reviews/jane.jpg",
                                    content_type="image/jpeg", size_bytes=8))
    session.add_all([review, Suppression(shop_id=shop.id, address=email, reason="unsubscribe")])
    # Another customer, who must keep everything.
    other = make_order(session, shop, email="someone.else@example.com",
                       customer_first_name="Otto")
    session.commit()
    assert email in _all_text(session) and first.lower() in _all_text(session)

    start = len(simulator.deliveries)
    simulator.redact_customer("acme", 4242)
    assert [r.status_code for r in forward_webhooks(client, simulator, start)] == [200]
    run_jobs(runtime, "webhooks")

    everything = _all_text(session)
    for value in PRIVATE:
        assert value.lower() not in everything, value
    assert not photo.exists()
    assert session.scalar(select(func.count()).select_from(Review)) == 0
    # Her unsubscribe still holds (kept hashed), and the other customer is untouched.
    assert suppression_reason(session, shop.id, email) == "unsubscribe"
    assert session.get(Order, other.id).email == "someone.else@example.com"
    assert session.scalar(select(func.count()).select_from(Order)) == 3  # orders stay, anonymous
    event = session.scalar(select(WebhookEvent).where(WebhookEvent.topic == "customers/redact"))
    assert event.processed_at is not None


def test_shop_redact_erases_the_shop(client, simulator, session, runtime):
    simulator.generate("acme", orders=4, products=2)
    shop_id = _installed_shop(client, simulator, session).id
    run_jobs(runtime, "default")
    assert session.scalar(select(func.count()).select_from(Order)) > 0
    start = len(simulator.deliveries)
    simulator.uninstall("acme")
    simulator.redact_shop("acme")
    forward_webhooks(client, simulator, start)
    run_jobs(runtime, "webhooks")
    session.expire_all()
    assert session.get(Shop, shop_id) is None
    for model in (Order, Review, Message, Suppression):
        assert session.scalar(select(func.count()).select_from(model)) == 0
    # Only the record that the erasure was done remains, without its payload.
    events = session.scalars(select(WebhookEvent)).all()
    assert [(e.topic, e.payload) for e in events] == [("shop/redact", '{"redacted": true}')]


def test_a_late_uninstall_from_before_a_reinstall_changes_nothing(client, simulator, session,
                                                                  runtime):
    from datetime import timedelta

    simulator.generate("acme", orders=0)
    shop = _installed_shop(client, simulator, session)
    body, headers = simulator.signed_webhook(
        "acme", "app/uninstalled", {"domain": "acme.myshopify.com"},
        triggered_at=shop.installed_at - timedelta(hours=2))
    assert client.post("/webhooks/app", data=body, headers=headers).status_code == 200
    run_jobs(runtime, "webhooks")
    session.expire_all()
    assert session.get(Shop, shop.id).is_installed


def test_shopify_unreachable_during_install_is_explained_not_bounced(client, simulator):
    url = (f"/sequences?embedded=1&shop=ghost.myshopify.com"
           f"&id_token={simulator.id_token('ghost')}")  # a shop the simulator does not know
    response = client.get(url)
    assert response.status_code == 503
    assert b"could not reach Shopify" in response.data
