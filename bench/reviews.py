"""Reviews bench: the cost of one customer photo (a 12 MP phone JPEG and HEIC, decoded, checked and
re-encoded without metadata), of saving a review through the page, and of the merchant Reviews page
over a shop with many reviews (PostgreSQL + Redis).

    python bench/reviews.py [--reviews N] [--runs N]

Needs PostgreSQL (TEST_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/test: a new
database is created next to it and dropped at the end) and Redis (TEST_REDIS_URL). Last line:

    RESULT bench=reviews photo_jpeg_ms=… photo_heic_ms=… submit_ms=… page_ms=… reviews=…

Targets: photo_jpeg_ms <= 1500, photo_heic_ms <= 3000, submit_ms <= 100, page_ms <= 150.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from PIL import Image  # noqa: E402
from scheduler import drop_database, make_database, take_redis_db  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from okapp import create_app, migrate  # noqa: E402
from okapp.config import Config  # noqa: E402
from okapp.db import utcnow  # noqa: E402
from okapp.models import LineItem, Order, Product, Review, ReviewMedia, Shop  # noqa: E402
from okapp.reviews.media import MediaLimits, store_upload  # noqa: E402
from okapp.reviews.tokens import make_token  # noqa: E402
from okapp.runtime import Runtime, set_current  # noqa: E402
from okapp.views.auth import dev_login_url  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def phone_photo(fmt: str) -> bytes:
    """4032×3024 like a phone's main camera: smooth gradients plus sensor-like noise."""
    width, height = 4032, 3024
    base = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 24)
    image = Image.merge("RGB", (base, noise, Image.blend(base, noise, 0.5)))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    image.save(out, fmt, quality=90, exif=exif.tobytes())
    return out.getvalue()


def time_photo(fmt: str, runs: int, media_root: Path) -> float:
    data = phone_photo(fmt)
    limits = MediaLimits()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        store_upload(io.BytesIO(data), media_root, limits)
        timings.append((time.perf_counter() - start) * 1000)
    median = statistics.median(timings)
    log(f"{fmt}: {len(data) / 1e6:.1f} MB in, median {median:.0f} ms over {runs} runs")
    return median


def seed(runtime: Runtime, reviews: int) -> tuple[Shop, Order, Product]:
    rng = random.Random(7)
    with runtime.session_scope() as s:
        shop = Shop(domain="bench.myshopify.com", name="Bench", installed_at=utcnow())
        s.add(shop)
        s.flush()
        products = [Product(shop_id=shop.id, gid=f"gid://shopify/Product/{i}", title=f"P{i}",
                            price=Decimal("20")) for i in range(200)]
        s.add_all(products)
        s.flush()
        product_ids = [p.id for p in products]
        now = utcnow()
        orders = [{"shop_id": shop.id, "gid": f"gid://shopify/Order/{i}", "name": f"#{i}",
                   "email": f"c{i}@example.com"} for i in range(reviews)]
        order_ids = list(s.scalars(insert(Order).returning(Order.id), orders))
        rows = [{"shop_id": shop.id, "product_id": rng.choice(product_ids), "order_id": oid,
                 "email": f"c{i}@example.com", "reviewer_name": "Jane D.",
                 "rating": rng.choice((1, 2, 3, 4, 5, 5, 5, 4)), "title": "Title",
                 "body": "Body " * 30, "status": rng.choice(("pending", "published", "rejected")),
                 "created_at": now - timedelta(minutes=i), "updated_at": now}
                for i, oid in enumerate(order_ids)]
        review_ids = list(s.scalars(insert(Review).returning(Review.id), rows))
        s.execute(insert(ReviewMedia), [
            {"review_id": rid, "kind": "photo", "path": f"reviews/xx/{rid}.jpg",
             "content_type": "image/jpeg", "size_bytes": 1000, "created_at": now}
            for rid in review_ids if rng.random() < 0.1])
        # The order a customer reviews through the page.
        product = products[0]
        order = Order(shop_id=shop.id, gid="gid://shopify/Order/bench", name="#bench",
                      email="bench@example.com", customer_first_name="Ben")
        order.line_items.append(LineItem(gid="gid://shopify/LineItem/bench",
                                         product_gid=product.gid, title="P0",
                                         price=Decimal("20")))
        s.add(order)
        s.flush()
        s.expunge_all()
    return shop, order, product


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviews", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        photo_jpeg = time_photo("JPEG", args.runs, Path(tmp))
        photo_heic = time_photo("HEIF", max(1, args.runs // 2), Path(tmp))

    admin_url, url = make_database()
    redis_url, lock, lock_key = take_redis_db()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Config(env="test", database_url=url, redis_url=redis_url,
                            instance_path=Path(tmp), media_root=Path(tmp) / "media",
                            secret_key="bench-" + "k" * 40)
            runtime = Runtime(config)
            set_current(runtime)
            migrate.upgrade(runtime.engine)
            log(f"seeding {args.reviews:,} reviews")
            shop, order, product = seed(runtime, args.reviews)
            app = create_app(runtime=runtime)
            client = app.test_client()

            token = make_token(config.secret_key, shop.id, order.id)
            submit = []
            for i in range(20):
                start = time.perf_counter()
                response = client.post(f"/r/{token}", data={
                    f"rating-{product.id}": str(1 + i % 5), f"body-{product.id}": f"Run {i}"},
                    environ_base={"REMOTE_ADDR": f"10.0.0.{i}"})
                submit.append((time.perf_counter() - start) * 1000)
                assert response.status_code in (303, 429), response.status_code
            submit_ms = statistics.median(submit)
            log(f"submit a review: median {submit_ms:.1f} ms")

            with app.test_request_context():
                client.get(dev_login_url("", shop.domain, "/reviews"))
            page = []
            for query in ("", "rating=5", "media=with", "status=pending&media=without",
                          "rating=1&status=rejected", "page=40") * 4:
                start = time.perf_counter()
                response = client.get(f"/reviews?{query}", headers={"HX-Request": "true"})
                page.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200
            page_ms = statistics.median(page)
            log(f"Reviews page over {args.reviews:,}: median {page_ms:.1f} ms, "
                f"max {max(page):.1f} ms")
            runtime.redis.flushdb()  # this run's own db number
            runtime.dispose()
    finally:
        lock.delete(lock_key)
        drop_database(admin_url, url)
    print(f"RESULT bench=reviews photo_jpeg_ms={photo_jpeg:.0f} photo_heic_ms={photo_heic:.0f} "
          f"submit_ms={submit_ms:.1f} page_ms={page_ms:.1f} reviews={args.reviews}")


if __name__ == "__main__":
    main()
