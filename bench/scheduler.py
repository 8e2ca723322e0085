"""Scheduler bench: one tick over 1,000,000 enrollments of which 100,000 are due (PostgreSQL +
Redis), an empty tick, and the same work done by a naive loop (one ORM object and one enqueue
call at a time) on a sample.

    python bench/scheduler.py [--total N] [--due N] [--sample N] [--keep]

Needs PostgreSQL (TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/test: a new
database is created next to it and dropped at the end) and Redis (TEST_REDIS_URL, default
redis://127.0.0.1:6379; a free db number is taken and flushed). Also prints the cost of the
statistics a sequence page shows. Last line:

    RESULT bench=scheduler due=… total=… tick_s=… empty_tick_ms=… naive_ratio=…

Targets: tick_s <= 10, empty_tick_ms <= 50, naive_ratio >= 10.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis as redis_lib  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402

from okapp.models import (  # noqa: E402
    Block,
    BlockKind,
    Enrollment,
    EnrollmentState,
    Message,
    Order,
    Product,
    Sequence,
    Shop,
)
from okapp.runtime import Runtime  # noqa: E402
from okapp.sequences import stats  # noqa: E402
from okapp.sequences.blocks import children  # noqa: E402
from okapp.sequences.lifecycle import start_sequence  # noqa: E402
from okapp.sequences.scheduler import SEND_JOB, job_id, tick  # noqa: E402
from okapp.sequences.store import message_id_header  # noqa: E402
from okapp.sequences.templates import create_sequence  # noqa: E402

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # 10:00 in New York: inside the send window
PG = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_database() -> tuple[str, str]:
    admin_url = PG.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"okapp_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url, admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, url: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def take_redis_db() -> tuple[str, redis_lib.Redis, str]:
    base = REDIS.rsplit("/", 1)[0]
    lock = redis_lib.Redis.from_url(REDIS)
    for number in range(15, 0, -1):
        key = f"okapp-test-db:{number}"
        if lock.set(key, f"bench-{os.getpid()}", nx=True, ex=3600):
            return f"{base}/{number}", lock, key
    raise SystemExit("no free Redis db number (1-15)")


def seed(runtime: Runtime, total: int, due: int, sample: int) -> tuple[int, int, int]:
    """One shop, one running Review Request sequence with `total` enrollments waiting in its
    WAIT block, `due` of them due at NOW; a second shop whose `sample` enrollments are for the
    naive loop (not due until it runs)."""
    with runtime.session_scope() as s:
        ids = []
        for n in (1, 2):
            shop = Shop(domain=f"bench-{n}.myshopify.com", name=f"Bench {n}", email="o@b.example",
                        timezone="America/New_York", country="US", installed_at=NOW)
            s.add(shop)
            s.flush()
            s.add(Product(shop_id=shop.id, gid=f"gid://shopify/Product/{n}", title="Thing",
                          price=Decimal("20")))
            sequence = create_sequence(s, shop, "review_request", NOW - timedelta(days=60))
            sequence.blocks[0].config = {"start_date": "2026-01-01", "end_date": ""}
            start_sequence(s, sequence, NOW - timedelta(days=60))
            sequence.lookback_state = ""
            wait = next(b for b in sequence.blocks if b.kind == BlockKind.WAIT.value)
            ids.append((shop.id, sequence.id, wait.id))
    (shop1, seq1, wait1), (shop2, seq2, wait2) = ids
    fulfilled = NOW - timedelta(days=8)
    with runtime.engine.begin() as conn:
        for shop_id, count, offset in ((shop1, total, 0), (shop2, sample, total)):
            conn.execute(text("""
                INSERT INTO orders (shop_id, gid, name, email, customer_gid, customer_first_name,
                    customer_last_name, customer_locale, shipping_country, financial_status,
                    fulfillment_status, refunded, partially_refunded, test, currency, total_price,
                    placed_at, fulfilled_at, synced_at)
                SELECT :shop, 'gid://shopify/Order/' || (g + :off), '#' || (g + :off),
                    'c' || (g + :off) || '@example.com', '', 'Jane', '', 'en', 'US', 'PAID',
                    'FULFILLED', false, false, false, 'USD', 20, :f, :f, :f
                FROM generate_series(1, :n) g"""),
                {"shop": shop_id, "off": offset, "n": count, "f": fulfilled.replace(tzinfo=None)})
            conn.execute(text("""
                INSERT INTO line_items (order_id, gid, product_gid, variant_gid, title,
                    variant_title, image_url, quantity, refunded_quantity, price,
                    requires_shipping, gift_card, fulfilled_quantity)
                SELECT o.id, 'li' || o.id, 'gid://shopify/Product/' || :n, '', 'Thing', '', '',
                    1, 0, 20, true, false, 1
                FROM orders o WHERE o.shop_id = :shop"""), {"shop": shop_id, "n": shop_id})
        now = NOW.replace(tzinfo=None)
        # Due rows spread over the last hour; the rest are due over the next 30 days.
        conn.execute(text("""
            INSERT INTO enrollments (shop_id, sequence_id, order_id, block_id, email, state,
                due_at, exit_reason, lookback, recruited_at, updated_at, entered_at)
            SELECT o.shop_id, :seq, o.id, :wait, o.email, 'waiting',
                CASE WHEN row_number() OVER (ORDER BY o.id) <= :due
                     THEN :now - make_interval(secs => (o.id % 3600))
                     ELSE :now + make_interval(hours => 1 + (o.id % 720)) END,
                '', false, :now - interval '8 days', :now - interval '8 days',
                :now - interval '8 days'
            FROM orders o WHERE o.shop_id = :shop"""),
            {"seq": seq1, "wait": wait1, "due": due, "now": now, "shop": shop1})
        conn.execute(text("""
            INSERT INTO enrollments (shop_id, sequence_id, order_id, block_id, email, state,
                due_at, exit_reason, lookback, recruited_at, updated_at, entered_at)
            SELECT o.shop_id, :seq, o.id, :wait, o.email, 'waiting', :later, '', false,
                :now - interval '8 days', :now - interval '8 days', :now - interval '8 days'
            FROM orders o WHERE o.shop_id = :shop"""),
            {"seq": seq2, "wait": wait2, "now": now, "later": now + timedelta(days=300),
             "shop": shop2})
        for seq, wait, count in ((seq1, wait1, total), (seq2, wait2, sample)):
            conn.execute(text("INSERT INTO block_counters (sequence_id, block_id, name, value) "
                              "VALUES (:s, :b, 'waiting', :n)"), {"s": seq, "b": wait, "n": count})
    with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return seq1, seq2, shop2


def naive_loop(runtime: Runtime, sequence_id: int, now: datetime) -> int:
    """What a first version would do: one enrollment at a time as ORM objects, one transaction
    and one enqueue call each."""
    queue = runtime.queue("sends")
    done = 0
    while True:
        with runtime.session_scope() as s:
            enrollment = s.scalars(
                select(Enrollment).where(Enrollment.sequence_id == sequence_id,
                                         Enrollment.state == EnrollmentState.WAITING.value,
                                         Enrollment.due_at <= now)
                .order_by(Enrollment.due_at).limit(1).with_for_update(skip_locked=True)).first()
            if enrollment is None:
                return done
            block: Block = enrollment.block
            order: Order = enrollment.order
            _shop = s.get(Shop, enrollment.shop_id)
            send = children(block)[0]
            message = Message(
                shop_id=enrollment.shop_id, enrollment_id=enrollment.id, block_id=send.id,
                email_template_id=send.config.get("email_template_id"), kind="request",
                recipient=order.email, queued_at=now,
                message_id_header=message_id_header(enrollment.id, send.id, enrollment.shop_id,
                                                    runtime.config.mail_from))
            s.add(message)
            enrollment.block_id, enrollment.state = send.id, EnrollmentState.DONE.value
            enrollment.due_at, enrollment.updated_at = None, now
            s.flush()
            mid = message.id
        queue.enqueue(SEND_JOB, [mid], job_id=job_id([mid]))
        done += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    from bench.harness import bench_runtime  # built on the helpers above

    with bench_runtime(keep=args.keep) as runtime:
        log(f"seeding {args.total:,} enrollments ({args.due:,} due) + {args.sample:,} sample")
        t = time.perf_counter()
        seq1, seq2, _shop2 = seed(runtime, args.total, args.due, args.sample)
        log(f"seeded in {time.perf_counter() - t:.1f}s")

        t = time.perf_counter()
        result = tick(runtime, NOW)
        tick_s = time.perf_counter() - t
        queued = runtime.queue("sends").count
        log(f"tick: {result} in {tick_s:.2f}s; jobs in the sends queue: {queued:,}")
        if result.messages_queued != args.due or queued != args.due:
            raise SystemExit(f"expected {args.due} messages and jobs, got "
                             f"{result.messages_queued} and {queued}")

        empties = []
        for i in range(7):
            t = time.perf_counter()
            empty = tick(runtime, NOW + timedelta(seconds=i + 1))
            empties.append((time.perf_counter() - t) * 1000)
            assert not empty.advanced, empty
        empty_ms = statistics.median(empties)
        log(f"empty tick: median {empty_ms:.1f} ms over {len(empties)}")

        with runtime.engine.begin() as conn:
            conn.execute(text("UPDATE enrollments SET due_at = :now WHERE sequence_id = :s"),
                         {"now": (NOW - timedelta(minutes=5)).replace(tzinfo=None), "s": seq2})
        t = time.perf_counter()
        n = naive_loop(runtime, seq2, NOW)
        naive_s = time.perf_counter() - t
        naive_per_row = naive_s / max(n, 1)
        tick_per_row = tick_s / max(result.advanced, 1)
        ratio = naive_per_row / tick_per_row
        log(f"naive loop: {n:,} rows in {naive_s:.2f}s = {naive_per_row * 1000:.2f} ms/row; "
            f"tick {tick_per_row * 1000:.3f} ms/row")

        with runtime.session_scope() as s:
            shop_id = s.scalar(select(Enrollment.shop_id).where(Enrollment.sequence_id == seq1)
                               .limit(1))
            sequence = s.get(Sequence, seq1)
            timings = {}
            for name, fn in (("sequence_counts", lambda: stats.sequence_counts(s, shop_id)),
                             ("block_counts", lambda: stats.block_counts(s, sequence))):
                runs = []
                for _ in range(5):
                    t = time.perf_counter()
                    fn()
                    runs.append((time.perf_counter() - t) * 1000)
                timings[name] = statistics.median(runs)
            log("stats on 1 shop: " + ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()))
        print(f"RESULT bench=scheduler due={args.due} total={args.total} tick_s={tick_s:.2f} "
              f"empty_tick_ms={empty_ms:.1f} naive_ratio={ratio:.1f}", flush=True)


if __name__ == "__main__":
    main()
