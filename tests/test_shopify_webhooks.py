"""Webhooks: only signed deliveries are stored, once; applying them is idempotent and in order."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from okapp.models import Fulfillment, Order, Shop, WebhookEvent
from tests.shopify_fixtures import (  # noqa: F401 - fixtures
    config_with_simulator,
    forward_webhooks,
    install,
    run_jobs,
    simulator_fixture,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _events(session) -> int:
    return session.scalar(select(func.count()).select_from(WebhookEvent))


def _post(client, body: bytes, headers: dict):
    return client.post("/webhooks/fulfillments", data=body, headers=headers)


def _installed(client, simulator, session, runtime, orders=6, **kw):
    simulator.generate("acme", orders=orders, **kw)
    assert install(client, simulator, "acme").status_code == 200
    run_jobs(runtime, "default")  # the first import
    session.expire_all()
    return session.scalar(select(Shop).where(Shop.domain == "acme.myshopify.com"))


def _new_order(simulator, items=((0, 2),)):
    shop = simulator.shop("acme")
    with simulator.store.lock:
        return simulator.store.add_order(
            shop, created=datetime.now(UTC) - timedelta(hours=1),
            customer={"id": 777, "first_name": "Jane", "last_name": "Doe",
                      "email": "jane@example.com"},
            country="US", items=[(shop.products[i], q) for i, q in items],
            email="jane@example.com")


def test_signed_webhook_is_stored_once_and_answered_at_once(client, simulator, session):
    body, headers = simulator.signed_webhook("acme", "fulfillments/create",
                                             {"id": 1, "order_id": 2})
    response = _post(client, body, headers)
    assert response.status_code == 200 and response.data == b""
    event = session.scalar(select(WebhookEvent))
    assert (event.topic, event.shop_domain, event.payload) == (
        "fulfillments/create", "acme.myshopify.com", body.decode())
    assert event.triggered_at is not None and event.processed_at is None


def test_unsigned_and_tampered_webhooks_are_refused_and_not_stored(client, simulator, session):
    body, headers = simulator.signed_webhook("acme", "fulfillments/create",
                                             {"id": 1, "order_id": 2})
    unsigned = {k: v for k, v in headers.items() if k != "X-Shopify-Hmac-Sha256"}
    assert _post(client, body, unsigned).status_code == 401
    tampered = body.replace(b'"order_id": 2', b'"order_id": 3')
    assert _post(client, tampered, headers).status_code == 401
    wrong_key = dict(headers, **{"X-Shopify-Hmac-Sha256": base64.b64encode(b"x" * 32).decode()})
    assert _post(client, body, wrong_key).status_code == 401
    assert client.post("/webhooks/compliance", data=body, headers=unsigned).status_code == 401
    assert _events(session) == 0


def test_replayed_webhook_is_stored_and_applied_once(client, simulator, session, runtime):
    shop = _installed(client, simulator, session, runtime)
    order = _new_order(simulator)
    simulator.fulfill("acme", order["id"])
    first = forward_webhooks(client, simulator)
    replay = forward_webhooks(client, simulator)
    assert [r.status_code for r in first + replay] == [200, 200]
    assert _events(session) == 1
    run_jobs(runtime, "webhooks")
    stored = session.scalar(select(Order).where(Order.shop_id == shop.id,
                                                Order.gid == f"gid://shopify/Order/{order['id']}"))
    assert stored.fulfilled_at is not None and len(stored.fulfillments) == 1


def test_duplicate_and_out_of_order_fulfillment_updates_give_one_correct_fulfillment(
        client, simulator, session, runtime):
    shop = _installed(client, simulator, session, runtime)
    order = _new_order(simulator)
    # The app knows the order before the parcel ships (a sync read it).
    from okapp.shopify import sync

    sync.import_orders(runtime, shop.id, "", datetime.now(UTC))
    created = simulator.fulfill("acme", order["id"], at=T0)
    simulator.deliver("acme", created["id"], at=T0 + timedelta(days=3))
    deliveries = simulator.deliveries  # create, event(delivered), update(delivered)
    create, event, update = deliveries[-3:]
    # The update and the event arrive first, then the create (late), then everything again.
    for delivery in (update, event, create, update, create, event):
        answer = client.post("/webhooks/fulfillments", data=delivery["body"],
                             headers=delivery["headers"])
        assert answer.status_code == 200
    # A redelivery of the create under a new webhook id (Shopify retrying) is stale by updated_at.
    late = dict(create["headers"], **{"X-Shopify-Webhook-Id": "retry-of-create"})
    client.post("/webhooks/fulfillments", data=create["body"], headers=late)
    run_jobs(runtime, "webhooks")
    session.expire_all()
    stored = session.scalar(select(Order).where(Order.gid == f"gid://shopify/Order/{order['id']}"))
    parcels = session.scalars(select(Fulfillment).where(Fulfillment.order_id == stored.id)).all()
    assert len(parcels) == 1
    assert parcels[0].status == "SUCCESS" and parcels[0].display_status == "DELIVERED"
    assert parcels[0].delivered_at == T0 + timedelta(days=3)
    assert stored.fulfilled_at == T0
    assert stored.delivered_at == T0 + timedelta(days=3)
    assert _events(session) == 4  # three deliveries + one retry, each stored once


def test_split_shipment_is_fulfilled_when_the_last_parcel_ships(client, simulator, session,
                                                               runtime):
    shop = _installed(client, simulator, session, runtime)
    order = _new_order(simulator, items=((0, 1), (1, 2)))
    from okapp.shopify import sync

    sync.import_orders(runtime, shop.id, "", datetime.now(UTC))
    first_item, second_item = (i["id"] for i in order["line_items"])
    one = simulator.fulfill("acme", order["id"], {first_item: 1}, at=T0)
    forward_webhooks(client, simulator, len(simulator.deliveries) - 1)
    run_jobs(runtime, "webhooks")
    session.expire_all()
    stored = session.scalar(select(Order).where(Order.gid == f"gid://shopify/Order/{order['id']}"))
    assert stored.fulfilled_at is None  # half shipped
    two = simulator.fulfill("acme", order["id"], {second_item: 2}, at=T0 + timedelta(days=2))
    forward_webhooks(client, simulator, len(simulator.deliveries) - 1)
    simulator.deliver("acme", two["id"], at=T0 + timedelta(days=4))
    forward_webhooks(client, simulator, len(simulator.deliveries) - 2)
    run_jobs(runtime, "webhooks")
    session.expire_all()
    stored = session.get(Order, stored.id)
    assert stored.fulfilled_at == T0 + timedelta(days=2)
    assert stored.delivered_at is None  # the first parcel has not arrived
    simulator.deliver("acme", one["id"], at=T0 + timedelta(days=5))
    forward_webhooks(client, simulator, len(simulator.deliveries) - 2)
    run_jobs(runtime, "webhooks")
    session.expire_all()
    assert session.get(Order, stored.id).delivered_at == T0 + timedelta(days=5)


def test_refund_and_cancellation_are_read_back_from_shopify(client, simulator, session, runtime):
    shop = _installed(client, simulator, session, runtime)
    order = _new_order(simulator, items=((0, 1), (1, 1)))
    from okapp.shopify import sync

    sync.import_orders(runtime, shop.id, "", datetime.now(UTC))
    start = len(simulator.deliveries)
    simulator.refund("acme", order["id"], {order["line_items"][0]["id"]: 1})
    forward_webhooks(client, simulator, start)
    run_jobs(runtime, "webhooks")
    session.expire_all()
    stored = session.scalar(select(Order).where(Order.gid == f"gid://shopify/Order/{order['id']}"))
    assert stored.partially_refunded and not stored.refunded
    start = len(simulator.deliveries)
    simulator.cancel("acme", order["id"])
    forward_webhooks(client, simulator, start)
    run_jobs(runtime, "webhooks")
    session.expire_all()
    assert session.get(Order, stored.id).cancelled_at is not None


def test_webhook_for_an_unknown_order_reads_it_from_graphql(client, simulator, session, runtime):
    _installed(client, simulator, session, runtime, orders=0)
    order = _new_order(simulator)
    start = len(simulator.deliveries)
    simulator.fulfill("acme", order["id"], at=T0)
    forward_webhooks(client, simulator, start)
    run_jobs(runtime, "webhooks")
    stored = session.scalar(select(Order).where(Order.gid == f"gid://shopify/Order/{order['id']}"))
    assert stored is not None and stored.fulfilled_at == T0 and stored.email == "jane@example.com"
    event = session.scalar(select(WebhookEvent))
    assert event.processed_at is not None and json.loads(event.payload)["order_id"] == order["id"]


def test_an_order_for_a_product_added_after_install_brings_the_product(
        client, simulator, session, runtime):
    from okapp.models import Product
    from okapp.shopify.simulator.store import next_id

    _installed(client, simulator, session, runtime, orders=0)
    shop = simulator.shop("acme")
    with simulator.store.lock:  # the merchant adds a product; Shopify tells no one
        shop.products.append({
            "id": next_id(), "title": "Brand New Kettle", "handle": "brand-new-kettle",
            "product_type": "Kitchen", "price": "64.00", "gift_card": False, "status": "ACTIVE",
            "tags": [], "image_url": "https://cdn.example/kettle.jpg",
            "updated_at": datetime.now(UTC)})
    order = _new_order(simulator, items=((len(shop.products) - 1, 1),))
    start = len(simulator.deliveries)
    simulator.fulfill("acme", order["id"], at=T0)
    forward_webhooks(client, simulator, start)
    run_jobs(runtime, "webhooks")
    session.expire_all()
    product = session.scalar(select(Product).where(Product.title == "Brand New Kettle"))
    assert product is not None and product.image_url == "https://cdn.example/kettle.jpg"
    assert str(product.price) == "64.00"


def test_a_backlog_of_stale_webhooks_gets_one_drain_per_repair_period(session, runtime):
    """Sweeping on every scheduler loop must not flood the webhooks queue (workers serve it
    first, so a flood starves the sends)."""
    from okapp.jobs.webhooks import requeue_stale

    old = datetime.now(UTC) - timedelta(seconds=runtime.config.repair_after_seconds + 60)
    for n in range(5):
        session.add(WebhookEvent(webhook_id=f"stale-{n}", shop_domain="acme.myshopify.com",
                                 topic="fulfillments/create", payload="{}", received_at=old))
    session.commit()
    swept = [requeue_stale(runtime) for _ in range(10)]
    assert swept[0] == 5 and swept[1:] == [0] * 9
    assert runtime.queue("webhooks").count == 1


def test_a_drain_takes_a_batch_and_leaves_the_rest_to_another_job(session, runtime):
    from okapp.jobs.webhooks import drain

    for n in range(5):
        session.add(WebhookEvent(webhook_id=f"backlog-{n}", shop_domain="acme.myshopify.com",
                                 topic="fulfillments/create", payload="{}"))
    session.commit()
    assert drain(limit=2) == 2
    assert runtime.queue("webhooks").count == 1  # the rest, behind whatever else waits
    assert drain(limit=10) == 3
    assert runtime.queue("webhooks").count == 1  # nothing more was signalled


def test_a_burst_of_deliveries_costs_one_redis_signal_and_one_drain_applies_it(
        client, simulator, session, runtime, monkeypatch):
    from okapp.jobs import webhooks as intake

    calls = []
    real_set = runtime.redis.set
    monkeypatch.setattr(runtime.redis, "set", lambda *a, **k: calls.append(a) or real_set(*a, **k))
    for n in range(5):
        body, headers = simulator.signed_webhook("acme", "fulfillments/create",
                                                 {"id": 100 + n, "order_id": 200 + n})
        assert _post(client, body, headers).status_code == 200
    assert len(calls) == 1 and runtime.queue("webhooks").count == 1
    run_jobs(runtime, "webhooks")
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(WebhookEvent).where(
        WebhookEvent.processed_at.is_(None))) == 0
    assert intake.SIGNAL_QUIET_SECONDS <= 1


def test_a_drain_keeps_looking_while_signals_may_be_skipped(session, runtime):
    """An event stored just after a drain found nothing, whose signal was skipped, is still
    applied by that drain: it keeps looking for SIGNAL_QUIET_SECONDS after it started."""
    import threading
    import time

    from okapp.jobs.webhooks import SIGNAL_QUIET_SECONDS, drain
    from okapp.shopify.webhooks import store_event

    def store_late():
        time.sleep(SIGNAL_QUIET_SECONDS / 3)
        with runtime.engine.begin() as conn:
            store_event(conn, webhook_id="late-1", event_id="", shop_domain="acme.myshopify.com",
                        topic="fulfillments/create", api_version="", triggered_at=None,
                        payload='{"id": 1, "order_id": 2}', received_at=datetime.now(UTC))

    late = threading.Thread(target=store_late)
    started = time.monotonic()
    late.start()
    assert drain() == 1
    late.join()
    assert time.monotonic() - started >= SIGNAL_QUIET_SECONDS
    session.expire_all()
    assert session.scalar(select(WebhookEvent.processed_at)) is not None


def test_an_event_that_commits_behind_where_the_drain_has_got_to_is_applied_by_it(
        session, runtime, monkeypatch):
    """A drain goes on from the last event it took; an event received earlier but committed
    later (another web process, a slow transaction) sorts behind that point. The drain, busy past
    its quiet window, must still apply it rather than leave it to the stale sweep."""
    import threading
    import time

    from okapp.jobs import webhooks as drains
    from okapp.shopify.webhooks import store_event

    received = datetime.now(UTC)

    def store(webhook_id, at):
        with runtime.engine.begin() as conn:
            store_event(conn, webhook_id=webhook_id, event_id="", shop_domain="acme.myshopify.com",
                        topic="fulfillments/create", api_version="", triggered_at=None,
                        payload='{"id": 1, "order_id": 2}', received_at=at)

    for n in range(4):
        store(f"in-order-{n}", received + timedelta(milliseconds=n))
    real_apply_next = drains._apply_next

    def slow_apply_next(*args):  # slow between transactions, where SQLite lets a writer in too
        time.sleep(drains.SIGNAL_QUIET_SECONDS / 2)
        return real_apply_next(*args)

    monkeypatch.setattr(drains, "_apply_next", slow_apply_next)
    # Stored after the drain took the first event, while it works through the others.
    late = threading.Thread(target=lambda: (time.sleep(drains.SIGNAL_QUIET_SECONDS * 0.6),
                                            store("committed-late", received - timedelta(seconds=5))))
    started = time.monotonic()
    late.start()
    assert drains.drain() == 5
    late.join()
    assert time.monotonic() - started > drains.SIGNAL_QUIET_SECONDS  # the quiet window was over
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(WebhookEvent).where(
        WebhookEvent.processed_at.is_(None))) == 0
