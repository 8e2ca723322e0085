"""Webhook intake's storing: one row per webhook id, shared INSERTs, its own connections."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from okapp.models import WebhookEvent
from okapp.shopify.webhooks import store_events


def _delivery(webhook_id: str, topic: str = "fulfillments/create", **changes) -> dict:
    return {"webhook_id": webhook_id, "event_id": f"event-{webhook_id}",
            "shop_domain": "acme.myshopify.com", "topic": topic, "api_version": "2026-10",
            "triggered_at": datetime(2026, 11, 1, 12, tzinfo=UTC),
            "payload": '{"id": 1, "note": "caf\\u00e9 \\"quoted\\""}',
            "received_at": datetime(2026, 11, 1, 12, 0, 1, tzinfo=UTC), **changes}


def _stored(session) -> dict[str, WebhookEvent]:
    session.expire_all()
    return {e.webhook_id: e for e in session.scalars(select(WebhookEvent))}


def test_store_events_stores_each_webhook_id_once_and_says_which_rows_are_new(session, runtime):
    with runtime.engine.begin() as conn:
        [first] = store_events(conn, [_delivery("known")])
    with runtime.engine.begin() as conn:
        ids = store_events(conn, [_delivery("a"), _delivery("known"), _delivery("b"),
                                  _delivery("a", payload='{"second": true}')])

    assert isinstance(first, int) and isinstance(ids[0], int) and isinstance(ids[2], int)
    assert ids[1] is None and ids[3] is None  # stored before; earlier in the same list
    rows = _stored(session)
    assert set(rows) == {"known", "a", "b"}
    assert rows["a"].id == ids[0] and rows["b"].id == ids[2] and rows["known"].id == first
    assert rows["a"].payload == _delivery("a")["payload"]  # the first delivery's body is kept
    assert rows["a"].received_at == datetime(2026, 11, 1, 12, 0, 1, tzinfo=UTC)
    assert rows["a"].triggered_at == datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert rows["b"].event_id == "event-b" and rows["b"].attempts == 0


def test_deliveries_stored_from_many_threads_at_once_are_each_stored_once(session, runtime):
    ids = {}
    start = threading.Barrier(16)

    def deliver(n):
        start.wait()
        # Every delivery twice, as Shopify's retries can: the second gets None.
        ids[n] = (runtime.deliveries.store(_delivery(f"w{n % 8}")), n)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    rows = _stored(session)
    assert set(rows) == {f"w{n}" for n in range(8)}
    new = [row_id for row_id, _ in ids.values() if row_id is not None]
    assert sorted(new) == sorted(row.id for row in rows.values())  # one caller per row got its id


def test_compliance_topics_are_stored_durably_and_the_rest_fast(runtime):
    store = runtime.deliveries
    durable = store.writer("customers/redact")
    assert store.writer("app/uninstalled") is durable and store.writer("shop/redact") is durable
    fast = store.writer("fulfillments/create")
    assert fast is not durable and store.writer("orders/updated") is fast
    if runtime.engine.dialect.name == "postgresql":
        def setting(writer):
            with writer.engine.connect() as conn:
                return conn.execute(text("SHOW synchronous_commit")).scalar()

        assert setting(durable) == "on" and setting(fast) == "off"


@pytest.mark.postgres
def test_a_dropped_intake_connection_fails_one_write_and_the_next_reconnects(session, runtime):
    store = runtime.deliveries
    assert store.store(_delivery("before")) is not None
    with runtime.engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()"))

    import psycopg

    with pytest.raises(psycopg.OperationalError):  # the driver's own: the INSERT goes to it
        store.store(_delivery("lost"))  # answered 500: Shopify sends it again
    assert store.store(_delivery("lost")) is not None
    assert set(_stored(session)) == {"before", "lost"}
