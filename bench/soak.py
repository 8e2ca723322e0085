"""Soak: drive N orders (default 50,000) through the whole path against real processes.

webhook (the simulator fulfils and signs) -> gunicorn stores it -> an RQ worker applies it and
recruits the order -> schedulers advance it -> workers render and send over SMTP to an aiosmtpd
server -> the review link in a sample of the received emails opens the review page.

    python bench/soak.py [--orders 50000] [--workers 4] [--schedulers 2]

Needs PostgreSQL (as bench/scheduler.py: 127.0.0.1:5432/test or its environment setting). Last line:
RESULT bench=soak orders=<n> sent=<n> duplicates=<n> lost=<n> seconds=<s>
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scheduler import drop_database, make_database  # noqa: E402
from tests.faults.test_faults import _shopify_retries  # noqa: E402
from tests.faults.world import World  # noqa: E402

# The first tracked link of an email: a star or the button, redirecting to the review page.
TRACKED_LINK = re.compile(r'href="(https?://[^"]+/e/c/[^"]+)"')
MAINTENANCE_SECONDS = 60  # autovacuum's default naptime


def maintain(url: str, stop: threading.Event) -> None:
    """VACUUM ANALYZE every minute, as autovacuum does in production, when the server has it off
    (test machines often do): without it, tables grown from empty to 50,000 rows keep the
    statistics of an empty table and every applied webhook stays in the queue's index."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if conn.execute(text("SHOW autovacuum")).scalar() == "on":
            engine.dispose()
            return
    print(f"autovacuum is off on this server: the soak runs VACUUM ANALYZE every "
          f"{MAINTENANCE_SECONDS}s in its place", flush=True)
    while not stop.wait(MAINTENANCE_SECONDS):
        try:
            with engine.connect() as conn:
                conn.execute(text("VACUUM ANALYZE"))
        except Exception as exc:  # the database is dropped at the end; report anything else
            if not stop.is_set():
                print(f"VACUUM ANALYZE failed: {exc}", flush=True)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--plan", choices=("standard", "plus"), default="plus",
                        help="the shop's API rate limit: Standard 100 points/s, Plus 1000/s")
    args = parser.parse_args()
    if args.orders < 1:
        parser.error("--orders must be at least 1")

    admin_url, url = make_database()
    tmp = Path(tempfile.mkdtemp(prefix="okapp-soak-"))
    world = World(tmp, url, workers=args.workers, schedulers=args.schedulers,
                  template="review_request", emails_per_order=1,
                  env={"OKAPP_REPAIR_AFTER_SECONDS": "30"},
                  # The app's default SMTP timeout: the fault suite's 3 s is for its hangs, and
                  # here the SMTP server shares a busy process with the simulator.
                  smtp_timeout=30,
                  sim_options={"restore_rate": 1000.0 if args.plan == "plus" else 100.0,
                               "bucket_size": 10000.0 if args.plan == "plus" else 1000.0})
    world.smtp.keep = 50  # parse a sample, count them all
    stop_maintenance = threading.Event()
    maintenance = threading.Thread(target=maintain, args=(url, stop_maintenance), daemon=True)
    try:
        world.start()
        maintenance.start()
        print(f"stack up: web {world.stack.web_url}, {args.workers} workers, "
              f"{args.schedulers} schedulers", flush=True)
        orders = world.add_orders(args.orders)
        started = time.monotonic()
        done = Counter()

        def fulfil(order):
            world.fulfill(order)
            done["fulfilled"] += 1

        last = 0.0
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in pool.map(fulfil, orders):
                if time.monotonic() - last > 10:
                    last = time.monotonic()
                    print(f"  {time.monotonic() - started:7.1f}s fulfilled={done['fulfilled']} "
                          f"{world.counts()} mails={len(world.smtp.received)}", flush=True)
        retried = 0
        for _ in range(3):
            retried += sum(1 for d in world.sim.deliveries if not 200 <= d["status"] < 300)
            _shopify_retries(world)

        def progress():
            c = world.counts()
            print(f"  {time.monotonic() - started:7.1f}s {c} mails={len(world.smtp.received)}",
                  flush=True)
            busy = (c["waiting"] or c["unapplied_webhooks"] or c.get("queued")
                    or c.get("sending"))
            return not busy and c["enrolled"] >= len(orders)

        deadline = time.monotonic() + args.timeout
        while not progress():
            if time.monotonic() > deadline:
                print("timed out waiting for the run to settle", flush=True)
                break
            time.sleep(10)
        seconds = time.monotonic() - started

        received = Counter(world.smtp.message_ids())
        duplicates = sum(n - 1 for n in received.values() if n > 1)
        per_recipient = Counter(to for _, to in world.smtp.received)
        lost = sum(1 for o in orders if per_recipient[o["email"].lower()] == 0)
        links_ok = 0
        for mail in world.smtp.messages[:20]:
            html = mail.get_body(("html",)).get_content()
            match = TRACKED_LINK.search(html)
            if match is None:
                continue
            page = httpx.get(match.group(1).replace("&amp;", "&"), timeout=10,
                             follow_redirects=True)
            if page.status_code == 200 and "/r/" in str(page.url):
                links_ok += 1
        print(f"webhook deliveries retried: {retried}; review links opened: "
              f"{links_ok}/{min(20, len(world.smtp.messages))}", flush=True)
        print(f"RESULT bench=soak orders={len(orders)} sent={sum(received.values())} "
              f"duplicates={duplicates} lost={lost} seconds={seconds:.0f}", flush=True)
    finally:
        stop_maintenance.set()
        world.stop()
        if maintenance.is_alive():
            maintenance.join(timeout=600)
        drop_database(admin_url, url)


if __name__ == "__main__":
    main()
