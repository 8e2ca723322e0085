"""Reading orders from the Admin API: lookbacks under the throttle, reconciliation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from okapp.jobs.sync import lookback_import, reconcile_all
from okapp.models import Enrollment, Order, Sequence, Shop
from okapp.sequences.lifecycle import start_sequence
from okapp.shopify import sync
from tests.factories import make_sequence
from tests.shopify_fixtures import (  # noqa: F401 - fixtures
    config_with_simulator,
    install,
    run_jobs,
    simulator_fixture,
)


def _shop(client, simulator, session) -> Shop:
    assert install(client, simulator, "acme").status_code == 200
    session.expire_all()
    return session.scalar(select(Shop).where(Shop.domain == "acme.myshopify.com"))


def _shop_with_recent_orders(client, simulator, session, now, count):
    """An installed shop with `count` orders placed 5, 6, ... hours before `now`."""
    simulator.generate("acme", orders=0, products=3, now=now)
    shop = _shop(client, simulator, session)
    sim_shop = simulator.shop("acme")
    with simulator.store.lock:
        placed = [simulator.store.add_order(
            sim_shop, created=now - timedelta(hours=5 + n), customer=None, country="US",
            items=[(sim_shop.products[0], 1)], email=f"c{n}@example.com") for n in range(count)]
    return shop, placed


@pytest.mark.slow
def test_a_5000_order_lookback_completes_under_the_throttle(client, simulator, session, runtime):
    # A bucket that refills slower than a page of orders costs (402 points, 2 s at 200 a second).
    simulator.bucket_size, simulator.restore_rate = 1000.0, 200.0
    now = datetime.now(UTC)
    simulator.generate("acme", orders=5000, products=40, months=5, now=now)
    shop = _shop(client, simulator, session)
    start = (now - timedelta(days=170)).date().isoformat()  # before the oldest order
    sequence = make_sequence(session, shop)
    sequence.blocks[0].config = {"start_date": start}
    session.flush()
    assert start_sequence(session, sequence, now).lookback
    session.commit()
    with simulator.store.lock:
        # The install's own reads have just spent the bucket. Without this, a machine slow
        # enough to store a page in more than 2 s would never find the bucket low.
        bucket = simulator.shop("acme").bucket
        bucket.available, bucket.at = 0.0, time.monotonic()

    result = lookback_import(sequence.id)

    session.expire_all()
    sequence = session.get(Sequence, sequence.id)
    expected = simulator.shop("acme").orders.values()
    cutoff = datetime.fromisoformat(start).replace(tzinfo=UTC) - timedelta(days=1)
    in_range = [o for o in expected if o["updated_at"] >= cutoff]
    assert len(in_range) == 5000
    assert sequence.lookback_state == "done", sequence.lookback_error
    assert sequence.lookback_total >= len(in_range) - 50
    assert sequence.lookback_done == sequence.lookback_total
    stored = session.scalar(select(func.count()).select_from(Order).where(
        Order.shop_id == shop.id))
    assert stored >= len(in_range) - 50
    assert result["throttle_waits"] > 0  # the bucket ran low and the client waited
    assert result["calls"] >= 51  # a count, then 50 pages of 100
    fulfilled = session.scalar(select(func.count()).select_from(Order).where(
        Order.shop_id == shop.id, Order.fulfilled_at.is_not(None)))
    assert fulfilled > stored * 0.8
    assert result["recruited"] and result["recruited"] > 0
    assert session.scalar(select(func.count()).select_from(Enrollment)) == result["recruited"]


def test_lookback_failure_is_shown_on_the_sequence(client, simulator, session, runtime):
    simulator.generate("acme", orders=5)
    shop = _shop(client, simulator, session)
    sequence = make_sequence(session, shop)
    session.commit()
    with simulator.store.lock:
        simulator.shop("acme").refresh_tokens.clear()
    simulator.expire_access_tokens("acme")
    with pytest.raises(Exception):  # noqa: B017 - the job fails and RQ records it
        lookback_import(sequence.id)
    session.expire_all()
    sequence = session.get(Sequence, sequence.id)
    assert sequence.lookback_state == "failed"
    assert "open okapp from your Shopify admin" in sequence.lookback_error


def test_reconciliation_catches_a_fulfillment_whose_webhook_never_came(client, simulator,
                                                                      session, runtime):
    now = datetime.now(UTC)
    shop, [order] = _shop_with_recent_orders(client, simulator, session, now, 1)
    sync.import_orders(runtime, shop.id, "", now)
    simulator.fulfill("acme", order["id"], at=now - timedelta(hours=1))  # webhook lost
    gid = f"gid://shopify/Order/{order['id']}"
    assert session.scalar(select(Order.fulfilled_at).where(Order.gid == gid)) is None
    assert reconcile_all(runtime) == 1
    assert reconcile_all(runtime) == 0  # once per interval, however many schedulers call it
    run_jobs(runtime, "default")
    session.expire_all()
    assert session.scalar(select(Order.fulfilled_at).where(Order.gid == gid)) is not None


def test_each_reconciliation_reads_only_what_changed_since_the_last_one(client, simulator,
                                                                       session, runtime):
    now = datetime.now(UTC)
    shop, placed = _shop_with_recent_orders(client, simulator, session, now, 6)
    assert sync.reconcile(runtime, shop.id, now) == 6  # no earlier run: the whole window

    simulator.fulfill("acme", placed[2]["id"], at=now + timedelta(minutes=10))  # webhook lost
    assert sync.reconcile(runtime, shop.id, now + timedelta(minutes=30)) == 1
    gid = f"gid://shopify/Order/{placed[2]['id']}"
    assert session.scalar(select(Order.fulfilled_at).where(Order.gid == gid)) is not None

    runtime.redis.flushdb()  # Redis restarted empty: slower, never blind
    assert sync.reconcile(runtime, shop.id, now + timedelta(minutes=60)) == 6


def test_a_throttled_answer_waits_for_the_bucket_and_retries(client, simulator, session,
                                                            runtime):
    from okapp.shopify import queries
    from okapp.shopify.graphql import AdminClient

    simulator.bucket_size, simulator.restore_rate = 1000.0, 400.0
    simulator.generate("acme", orders=300, products=3)
    shop = _shop(client, simulator, session)
    variables = {"first": 100, "query": None, "sortKey": "UPDATED_AT", "after": None}
    # Two workers of the same shop: the first drains the bucket, the second does not know it.
    first, second = (AdminClient(runtime, shop.id, shop.domain) for _ in range(2))
    first.execute("Orders", queries.ORDERS, variables)
    first.execute("Orders", queries.ORDERS, variables)
    throttled_before = simulator.shop("acme").counters["throttled"]
    data = second.execute("Orders", queries.ORDERS, variables)
    assert len(data["orders"]["nodes"]) == 100
    assert simulator.shop("acme").counters["throttled"] > throttled_before
    assert second.throttle_waits >= 1


def test_graphql_errors_name_the_query(client, simulator, session, runtime):
    from okapp.shopify.graphql import AdminClient, GraphQLError

    simulator.generate("acme", orders=1)
    shop = _shop(client, simulator, session)
    with pytest.raises(GraphQLError, match="GraphQL Nonsense failed: Field 'Nonsense'"):
        AdminClient(runtime, shop.id, shop.domain).execute("Nonsense", "query Nonsense { x }")
