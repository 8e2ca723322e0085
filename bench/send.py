"""Send bench: 5,000 queued review emails through an RQ worker running the real send job (claim,
re-checks, render MJML with tracked links, SMTP, record) into a local aiosmtpd sink, against
5,000 pre-rendered messages of the same size sent by a bare smtplib loop to the same sink.

    python bench/send.py [--messages N] [--worker simple|forking] [--smtp-connections N] [--keep]

Needs PostgreSQL (TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/test: a new
database is created next to it and dropped at the end) and Redis (TEST_REDIS_URL, default
redis://127.0.0.1:6379; a free db number is taken and flushed). The SMTP sink runs in its own
process, so it does not compete with the sender for the GIL. Last line:

    RESULT bench=send messages=5000 per_s=… raw_per_s=… ratio=…

Target: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import multiprocessing
import smtplib
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select, text  # noqa: E402

from okapp import migrate  # noqa: E402
from okapp.config import Config  # noqa: E402
from okapp.emails.render import render_message  # noqa: E402
from okapp.models import BlockKind, Message, MessageState, Shop  # noqa: E402
from okapp.runtime import Runtime, set_current  # noqa: E402
from okapp.sequences.lifecycle import start_sequence  # noqa: E402
from okapp.sequences.scheduler import enqueue_sends  # noqa: E402
from okapp.sequences.templates import create_sequence  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scheduler import drop_database, log, make_database, take_redis_db  # noqa: E402

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
PRODUCTS = 200
ITEMS_PER_ORDER = 3


# -- the SMTP sink, in a child process -----------------------------------------------------------

def _sink_main(port: int, counter, ready) -> None:
    from aiosmtpd.controller import Controller

    class Count:
        async def handle_DATA(self, server, session, envelope):
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    controller = Controller(Count(), hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


class Sink:
    def __init__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        ctx = multiprocessing.get_context("spawn")
        self.counter = ctx.Value("i", 0)
        ready = ctx.Event()
        self.process = ctx.Process(target=_sink_main, args=(self.port, self.counter, ready),
                                   daemon=True)
        self.process.start()
        if not ready.wait(30):
            raise SystemExit("the SMTP sink did not start")

    @property
    def count(self) -> int:
        return self.counter.value

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?starttls=off&timeout=30"

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


# -- data ----------------------------------------------------------------------------------------

def seed(runtime: Runtime, count: int) -> list[int]:
    """One shop with a catalogue, a running Review Request sequence, and `count` orders whose
    request email is queued at the SEND block (as the scheduler leaves them)."""
    with runtime.session_scope() as s:
        shop = Shop(domain="bench-send.myshopify.com", name="Bench Outfitters",
                    email="owner@bench.example", timezone="America/New_York", country="US",
                    installed_at=NOW - timedelta(days=90),
                    settings={"postal_address": "1 Bench Street, Springfield, IL 62701"})
        s.add(shop)
        s.flush()
        sequence = create_sequence(s, shop, "review_request", NOW - timedelta(days=60))
        start_sequence(s, sequence, NOW - timedelta(days=60))
        sequence.lookback_state = ""
        send = next(b for b in sequence.blocks if b.kind == BlockKind.SEND.value)
        shop_id, sequence_id, send_id = shop.id, sequence.id, send.id
        template_id = send.config["email_template_id"]
    now = NOW.replace(tzinfo=None)
    with runtime.engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO products (shop_id, gid, title, handle, image_url, status, product_type,
                tags, price, updated_at)
            SELECT :shop, 'gid://shopify/Product/' || g, 'Trail product number ' || g, 'p' || g,
                'https://cdn.shopify.example/s/files/1/0000/products/p' || g || '.jpg?v=1700000000',
                'ACTIVE', 'Outdoor', '[]', 10 + g, :now
            FROM generate_series(1, :n) g"""), {"shop": shop_id, "n": PRODUCTS, "now": now})
        conn.execute(text("""
            INSERT INTO orders (shop_id, gid, name, email, customer_gid, customer_first_name,
                customer_last_name, customer_locale, shipping_country, financial_status,
                fulfillment_status, refunded, partially_refunded, test, currency, total_price,
                placed_at, fulfilled_at, synced_at)
            SELECT :shop, 'gid://shopify/Order/' || g, '#' || (1000 + g),
                'customer' || g || '@example.com', '', 'Jane', 'Doe', 'en', 'US', 'PAID',
                'FULFILLED', false, false, false, 'USD', 60, :f, :f, :f
            FROM generate_series(1, :n) g"""),
            {"shop": shop_id, "n": count, "f": now - timedelta(days=8)})
        conn.execute(text("""
            INSERT INTO line_items (order_id, gid, product_gid, variant_gid, title, variant_title,
                image_url, quantity, refunded_quantity, price, requires_shipping, gift_card,
                fulfilled_quantity)
            SELECT o.id, 'li' || o.id || '-' || k,
                'gid://shopify/Product/' || (1 + (o.id * 7 + k * 13) % :p), '',
                'Trail product number ' || (1 + (o.id * 7 + k * 13) % :p), 'Medium', '', 1, 0,
                10 + (1 + (o.id * 7 + k * 13) % :p), true, false, 1
            FROM orders o CROSS JOIN generate_series(1, :k) k WHERE o.shop_id = :shop"""),
            {"shop": shop_id, "p": PRODUCTS, "k": ITEMS_PER_ORDER})
        conn.execute(text("""
            INSERT INTO enrollments (shop_id, sequence_id, order_id, block_id, email, state,
                due_at, exit_reason, lookback, recruited_at, updated_at, entered_at)
            SELECT o.shop_id, :seq, o.id, :send, o.email, 'done', NULL, '', false,
                :now - interval '8 days', :now, :now
            FROM orders o WHERE o.shop_id = :shop"""),
            {"seq": sequence_id, "send": send_id, "now": now, "shop": shop_id})
        conn.execute(text("""
            INSERT INTO messages (shop_id, enrollment_id, block_id, email_template_id, kind,
                recipient, subject, message_id_header, state, attempts, queued_at, skip_reason,
                error, opens, clicks)
            SELECT e.shop_id, e.id, :send, :tpl, 'request', e.email, '',
                '<okapp.' || e.shop_id || '.' || e.id || '.' || :send || '@okapp.localhost>',
                'queued', 0, :now, '', '', 0, 0
            FROM enrollments e WHERE e.sequence_id = :seq"""),
            {"seq": sequence_id, "send": send_id, "tpl": template_id, "now": now})
    with runtime.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    with runtime.session_scope() as s:
        return list(s.scalars(select(Message.id).where(Message.shop_id == shop_id)
                              .order_by(Message.id)))


def prerender(runtime: Runtime, message_ids: list[int], n: int) -> list[tuple[str, str, bytes]]:
    """(from, to, bytes) of real rendered messages, for the bare loop: same size, same content."""
    out = []
    with runtime.session_scope() as s:
        for mid in message_ids[:n]:
            rendered = render_message(s, s.get(Message, mid), runtime.config, NOW)
            out.append((rendered.envelope_from, rendered.recipient, rendered.as_bytes()))
    return out


# -- the two runs --------------------------------------------------------------------------------

def run_worker(runtime: Runtime, kind: str) -> None:
    from rq import SimpleWorker, Worker

    worker_class = SimpleWorker if kind == "simple" else Worker
    worker = worker_class([runtime.queue("sends")], connection=runtime.redis)
    worker.work(burst=True, logging_level="WARNING")


def render_and_deliver(runtime: Runtime, message_ids: list[int]) -> float:
    """The email part alone, for the record: render (MJML, tracked links) and SMTP, no RQ and no
    state changes. Shows how much of the worker's time is the email and how much the job."""
    from okapp.emails.transport import close_connections, deliver

    start = time.perf_counter()
    with runtime.session_scope() as s:
        for mid in message_ids:
            deliver(runtime.config, render_message(s, s.get(Message, mid), runtime.config, NOW))
            s.expunge_all()
    close_connections()
    return time.perf_counter() - start


def raw_loop(sink: Sink, messages: list[tuple[str, str, bytes]], count: int) -> float:
    smtp = smtplib.SMTP("127.0.0.1", sink.port, timeout=30)
    start = time.perf_counter()
    for i in range(count):
        mail_from, to, data = messages[i % len(messages)]
        smtp.sendmail(mail_from, [to], data)
    elapsed = time.perf_counter() - start
    smtp.quit()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--worker", choices=("simple", "forking"), default="simple",
                        help="RQ SimpleWorker (runs jobs in the worker process) or Worker (forks per job)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--smtp-connections", type=int, default=Config.smtp_connections,
                        help="the SMTP_CONNECTIONS setting (default: the app's default)")
    args = parser.parse_args()
    if args.messages < 1 or args.smtp_connections < 1:
        parser.error("--messages and --smtp-connections must be at least 1")

    admin_url, url = make_database()
    redis_url, lock, lock_key = take_redis_db()
    sink = Sink()
    runtime = None
    try:
        import tempfile

        instance = Path(tempfile.mkdtemp(prefix="okapp-bench-send-"))
        config = Config(env="test", database_url=url, redis_url=redis_url,
                        instance_path=instance, outbox_path=instance / "outbox",
                        secret_key="bench-" + "s" * 40, app_url="https://reviews.okapp.example",
                        smtp_url=sink.url, smtp_connections=args.smtp_connections)
        runtime = Runtime(config)
        set_current(runtime)
        runtime.redis.flushdb()
        migrate.upgrade(runtime.engine)
        log(f"seeding {args.messages} queued messages")
        ids = seed(runtime, args.messages)
        samples = prerender(runtime, ids, 50)
        sizes = sorted(len(d) for _f, _t, d in samples)
        log(f"message size: median {sizes[len(sizes) // 2]:,} bytes")

        enqueue_sends(runtime.queue("sends"), ids)
        log(f"worker ({args.worker}) sending {len(ids)} messages")
        start = time.perf_counter()
        run_worker(runtime, args.worker)
        worker_s = time.perf_counter() - start
        with runtime.session_scope() as s:
            states = dict(s.execute(select(Message.state, func.count())
                                    .group_by(Message.state)).all())
        received = sink.count
        log(f"worker: {worker_s:.2f}s, states {states}, sink received {received}")
        if states.get(MessageState.SENT.value) != len(ids) or received != len(ids):
            raise SystemExit(f"not every message was sent: {states}, sink {received}")

        before = sink.count
        raw_s = raw_loop(sink, samples, len(ids))
        deadline = time.time() + 30
        while sink.count < before + len(ids) and time.time() < deadline:
            time.sleep(0.05)
        log(f"bare smtplib: {raw_s:.2f}s")
        email_s = render_and_deliver(runtime, ids)
        log(f"render + track + deliver alone (no RQ, no state changes): {email_s:.2f}s, "
            f"{len(ids) / email_s:.1f}/s, ratio {raw_s / email_s:.3f}")
        per_s, raw_per_s = len(ids) / worker_s, len(ids) / raw_s
        print(f"RESULT bench=send messages={len(ids)} per_s={per_s:.1f} "
              f"raw_per_s={raw_per_s:.1f} ratio={per_s / raw_per_s:.3f}", flush=True)
    finally:
        sink.stop()
        if runtime is not None:
            runtime.redis.flushdb()
            runtime.dispose()
        lock.delete(lock_key)
        if not args.keep:
            drop_database(admin_url, url)


if __name__ == "__main__":
    main()
