"""Pages bench: the Sequences page and a sequence page for a shop with 1,000,000 enrollments
across 3 sequences, on PostgreSQL, timed through the Flask test client.

    python bench/pages.py [--enrollments N] [--runs N] [--keep]

Needs PostgreSQL (TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/test: a new
database is created next to it and dropped at the end) and Redis (TEST_REDIS_URL, default
redis://127.0.0.1:6379; a free db number is taken). The rows are written with
INSERT ... SELECT generate_series (orders, enrollments, messages, reviews) and the block counters
are computed from them, as the engine would have kept them. Last line:

    RESULT bench=pages enrollments=… list_p50_ms=… sequence_p50_ms=…

Target: both p50 <= 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from bench.harness import bench_runtime  # noqa: E402
from bench.scheduler import log  # noqa: E402
from okapp import create_app  # noqa: E402
from okapp.models import BlockKind, Product, SequenceStatus, Shop  # noqa: E402
from okapp.runtime import Runtime  # noqa: E402
from okapp.sequences.lifecycle import start_sequence  # noqa: E402
from okapp.sequences.templates import create_sequence  # noqa: E402

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
TEMPLATES = ("review_request_reminder", "review_request_two_reminders",
             "review_request_photo_reminder")


def seed(runtime: Runtime, total: int) -> tuple[int, list[int]]:
    """One shop, three sequences (one running), `total` orders each enrolled once."""
    started = NOW - timedelta(days=90)
    sequences = []
    with runtime.session_scope() as s:
        shop = Shop(domain="bench-pages.myshopify.com", name="Bench Pages",
                    timezone="America/New_York", country="US", installed_at=started)
        s.add(shop)
        s.flush()
        s.add(Product(shop_id=shop.id, gid="gid://shopify/Product/1", title="Thing",
                      price=Decimal("20")))
        s.flush()
        for n, key in enumerate(TEMPLATES):
            sequence = create_sequence(s, shop, key, started - timedelta(days=n),
                                       name=f"Bench {n + 1}")
            sequence.blocks[0].config = {"start_date": "2026-01-01", "end_date": ""}
            sequences.append(sequence)
        start_sequence(s, sequences[0], started)
        sequences[0].lookback_state = ""
        for sequence in sequences[1:]:
            sequence.status = SequenceStatus.STOPPED.value
            sequence.started_at, sequence.stopped_at = started, started + timedelta(days=30)
        s.flush()
        shop_id = shop.id
        product_id = s.query(Product.id).filter_by(shop_id=shop_id).scalar()
        plan = []
        for sequence in sequences:
            kinds = {k: [b.id for b in sequence.blocks if b.kind == k.value] for k in BlockKind}
            plan.append((sequence.id, kinds[BlockKind.RECRUIT][0], kinds[BlockKind.WAIT],
                         kinds[BlockKind.SEND][0]))
    naive_now = NOW.replace(tzinfo=None)
    with runtime.engine.begin() as conn:
        t = time.perf_counter()
        conn.execute(text("""
            INSERT INTO orders (shop_id, gid, name, email, customer_gid, customer_first_name,
                customer_last_name, customer_locale, shipping_country, financial_status,
                fulfillment_status, refunded, partially_refunded, test, currency, total_price,
                placed_at, fulfilled_at, synced_at)
            SELECT :shop, 'gid://shopify/Order/' || g, '#' || (1000 + g), 'c' || g || '@example.com',
                '', 'Jane', '', 'en', 'US', 'PAID', 'FULFILLED', false, false, false, 'USD', 20,
                :at - make_interval(hours => g % 2000), :at - make_interval(hours => g % 2000),
                :at
            FROM generate_series(1, :n) g"""),
            {"shop": shop_id, "n": total, "at": naive_now})
        log(f"orders: {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        for k, (sequence_id, _recruit, waits, request) in enumerate(plan):
            # 30% wait in one of the WAIT blocks; the rest went past the request email.
            conn.execute(text("""
                INSERT INTO enrollments (shop_id, sequence_id, order_id, block_id, email, state,
                    due_at, exit_reason, lookback, recruited_at, updated_at, entered_at)
                SELECT o.shop_id, :seq, o.id,
                    CASE WHEN o.id % 10 < 3
                         THEN (CAST(:waits AS integer[]))[1 + (o.id / 3) % :nwaits]
                         ELSE :request END,
                    o.email,
                    CASE WHEN o.id % 10 < 3 THEN 'waiting' ELSE 'done' END,
                    CASE WHEN o.id % 10 < 3 THEN :at + make_interval(hours => o.id % 500) END,
                    '', false, o.fulfilled_at, :at, o.fulfilled_at
                FROM orders o WHERE o.shop_id = :shop AND o.id % 3 = :k"""),
                {"seq": sequence_id, "waits": waits, "nwaits": len(waits), "request": request,
                 "at": naive_now, "shop": shop_id, "k": k})
        log(f"enrollments: {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        conn.execute(text("""
            INSERT INTO messages (shop_id, enrollment_id, block_id, kind, recipient, subject,
                message_id_header, state, attempts, queued_at, sent_at, skip_reason, error,
                opens, clicks, first_opened_at, first_clicked_at)
            SELECT e.shop_id, e.id, e.block_id, 'request', e.email, 'How was it?',
                '<bench.' || e.id || '@okapp.test>', 'sent', 1, e.recruited_at, e.recruited_at,
                '', '', CASE WHEN e.id % 5 < 2 THEN 1 ELSE 0 END,
                CASE WHEN e.id % 20 < 3 THEN 1 ELSE 0 END,
                CASE WHEN e.id % 5 < 2 THEN e.recruited_at END,
                CASE WHEN e.id % 20 < 3 THEN e.recruited_at END
            FROM enrollments e WHERE e.shop_id = :shop AND e.state = 'done'"""),
            {"shop": shop_id})
        conn.execute(text("""
            INSERT INTO reviews (shop_id, product_id, order_id, email, reviewer_name, rating,
                title, body, status, created_at, updated_at, attributed_at)
            SELECT e.shop_id, :product, e.order_id, e.email, 'Jane', 5, 'Great', 'Love it',
                'published', :at, :at, :at
            FROM enrollments e WHERE e.shop_id = :shop AND e.state = 'done' AND e.id % 10 = 0"""),
            {"shop": shop_id, "product": product_id, "at": naive_now})
        log(f"messages and reviews: {time.perf_counter() - t:.1f}s")
        # The running totals the engine keeps, computed from the rows they count.
        t = time.perf_counter()
        for sequence_id, recruit, _waits, _request in plan:
            conn.execute(text("""
                INSERT INTO block_counters (sequence_id, block_id, name, value)
                SELECT :seq, :recruit, 'recruited', count(*) FROM enrollments
                WHERE sequence_id = :seq"""), {"seq": sequence_id, "recruit": recruit})
        conn.execute(text("""
            INSERT INTO block_counters (sequence_id, block_id, name, value)
            SELECT sequence_id, block_id, 'waiting', count(*) FROM enrollments
            WHERE shop_id = :shop AND state = 'waiting' GROUP BY sequence_id, block_id"""),
            {"shop": shop_id})
        conn.execute(text("""
            INSERT INTO block_counters (sequence_id, block_id, name, value)
            SELECT e.sequence_id, m.block_id, c.name, sum(c.value)
            FROM messages m JOIN enrollments e ON e.id = m.enrollment_id
            CROSS JOIN LATERAL (VALUES ('sent', 1), ('opened', CASE WHEN m.opens > 0 THEN 1 ELSE 0 END),
                                       ('clicked', CASE WHEN m.clicks > 0 THEN 1 ELSE 0 END)) c(name, value)
            WHERE m.shop_id = :shop GROUP BY e.sequence_id, m.block_id, c.name"""),
            {"shop": shop_id})
        conn.execute(text("""
            INSERT INTO block_counters (sequence_id, block_id, name, value)
            SELECT e.sequence_id, e.block_id, 'reviewed', count(*)
            FROM reviews r JOIN enrollments e ON e.order_id = r.order_id
            WHERE r.shop_id = :shop GROUP BY e.sequence_id, e.block_id"""), {"shop": shop_id})
        log(f"counters: {time.perf_counter() - t:.1f}s")
    with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return shop_id, [p[0] for p in plan]


def time_page(client, url: str, runs: int, must_contain: str) -> list[float]:
    for _ in range(5):  # warm the connection pool, template cache and PostgreSQL's caches
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert must_contain in response.get_data(as_text=True), (url, must_contain)
    timings = []
    for _ in range(runs):
        t = time.perf_counter()
        response = client.get(url)
        response.get_data()
        timings.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    with bench_runtime(args.keep) as runtime:
        log(f"seeding {args.enrollments:,} enrollments across {len(TEMPLATES)} sequences")
        t = time.perf_counter()
        shop_id, sequence_ids = seed(runtime, args.enrollments)
        log(f"seeded in {time.perf_counter() - t:.1f}s")
        with runtime.engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM enrollments WHERE shop_id = :s"),
                                 {"s": shop_id}).scalar()
            first = conn.execute(text("SELECT count(*) FROM enrollments WHERE sequence_id = :s"),
                                 {"s": sequence_ids[0]}).scalar()
        assert count == args.enrollments, count

        app = create_app(runtime=runtime)
        client = app.test_client()
        with client.session_transaction() as session:
            session["dev_shop_id"] = shop_id  # the development login, as the demo uses it
        recruited = f"{first:,}"  # both pages show the first sequence's recruited figure
        lists = time_page(client, "/sequences", args.runs, recruited)
        pages = time_page(client, f"/sequences/{sequence_ids[0]}", args.runs, recruited)
        for name, runs in (("Sequences page", lists), ("sequence page", pages)):
            runs.sort()
            log(f"{name}: p50 {statistics.median(runs):.1f} ms, "
                f"p90 {runs[int(len(runs) * 0.9)]:.1f} ms over {len(runs)} requests")
        print(f"RESULT bench=pages enrollments={count} list_p50_ms={statistics.median(lists):.1f} "
              f"sequence_p50_ms={statistics.median(pages):.1f}", flush=True)


if __name__ == "__main__":
    main()
