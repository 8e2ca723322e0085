"""Many schedulers and workers at once send every email exactly once (DESIGN §4, §10).

10,000 due enrollments on PostgreSQL (1,000 on SQLite, which serialises writers), 2 scheduler
processes (`okapp scheduler`) and 4 RQ worker processes running together, delivering to a real
SMTP server (aiosmtpd). Every message must arrive once: counted by Message-ID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, insert, select

from okapp.db import utcnow
from okapp.models import (
    BlockKind,
    Enrollment,
    LineItem,
    Message,
    MessageState,
    Order,
    Product,
)
from tests.conftest import BACKEND
from tests.engine_support import blocks_of, running
from tests.factories import make_shop

ROOT = Path(__file__).resolve().parent.parent
DUE = int(os.environ.get("OKAPP_CONCURRENCY_DUE", 10_000 if BACKEND == "postgres" else 1_000))
WORKER = """
import sys
from rq import SimpleWorker
from okapp.runtime import Runtime, set_current
runtime = Runtime.from_env()
set_current(runtime)
# In-process jobs (no fork per job): the same code path, 10,000 jobs in well under a minute.
SimpleWorker([runtime.queue("sends")], connection=runtime.redis).work(with_scheduler=True)
"""


class CountingHandler:
    """Keeps the Message-ID of every email received (not the body: 10,000 of them)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.message_ids: list[str] = []
        self.parser = BytesHeaderParser()

    async def handle_DATA(self, server, session, envelope):
        headers = self.parser.parsebytes(envelope.original_content or envelope.content)
        with self.lock:
            self.message_ids.append(headers["Message-ID"])
        return "250 Message accepted for delivery"


@pytest.fixture
def counting_smtp():
    handler = CountingHandler()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False,
                            data_size_limit=0)
    controller.start()
    yield handler, f"smtp://127.0.0.1:{port}?starttls=off&timeout=30"
    controller.stop()


def seed(session, count: int):
    """A shop whose running Review Request sequence has `count` enrollments due now."""
    shop = make_shop(session, settings={"send_window_start": "00:00",
                                        "send_window_end": "00:00"})  # any hour of the day
    now = utcnow()
    sequence = running(session, shop, start="2020-01-01", started=now - timedelta(days=30))
    wait = blocks_of(sequence, BlockKind.WAIT)[0]
    product = Product(shop_id=shop.id, gid="gid://shopify/Product/1", title="Linen Throw",
                      image_url="https://cdn.example/p.jpg", price=Decimal("39"))
    session.add(product)
    session.flush()
    fulfilled = now - timedelta(days=8)
    session.execute(insert(Order), [{
        "shop_id": shop.id, "gid": f"gid://shopify/Order/{n}", "name": f"#{n}",
        "email": f"c{n}@example.com", "customer_first_name": "Ann", "shipping_country": "US",
        "financial_status": "PAID", "fulfillment_status": "FULFILLED", "placed_at": fulfilled,
        "fulfilled_at": fulfilled, "total_price": Decimal("39"), "currency": "USD",
    } for n in range(count)])
    order_ids = session.scalars(select(Order.id).where(Order.shop_id == shop.id)
                                .order_by(Order.id)).all()
    session.execute(insert(LineItem), [{
        "order_id": oid, "gid": f"li{oid}", "product_gid": product.gid, "title": "Linen Throw",
        "price": Decimal("39"), "quantity": 1, "fulfilled_quantity": 1,
    } for oid in order_ids])
    session.execute(insert(Enrollment), [{
        "shop_id": shop.id, "sequence_id": sequence.id, "order_id": oid, "block_id": wait.id,
        "email": f"c{n}@example.com", "state": "waiting", "due_at": now - timedelta(minutes=1),
        "recruited_at": fulfilled, "updated_at": fulfilled, "entered_at": fulfilled,
    } for n, oid in enumerate(order_ids)])
    session.commit()
    return shop


@pytest.mark.slow
def test_two_schedulers_and_four_workers_deliver_each_email_exactly_once(
        session, config, counting_smtp, tmp_path):
    handler, smtp_url = counting_smtp
    seed(session, DUE)
    env = {**os.environ, "OKAPP_ENV": "test", "DATABASE_URL": config.database_url,
           "REDIS_URL": config.redis_url, "SMTP_URL": smtp_url, "SECRET_KEY": config.secret_key,
           "APP_URL": config.app_url, "OKAPP_INSTANCE_PATH": str(tmp_path / "instance"),
           "PYTHONPATH": str(ROOT)}
    commands = [[sys.executable, "-m", "okapp.cli", "scheduler", "--interval", "0.5"]] * 2 \
        + [[sys.executable, "-c", WORKER]] * 4
    procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for cmd in commands]
    try:
        deadline = time.monotonic() + 270
        while time.monotonic() < deadline:
            session.expire_all()
            done = session.scalar(select(func.count(Message.id)).where(
                Message.state.in_([MessageState.SENT.value, MessageState.FAILED.value,
                                   MessageState.SKIPPED.value])))
            if done == DUE:
                break
            for proc in procs:
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            time.sleep(1)
        time.sleep(2)  # anything still in flight would show up as a duplicate now
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    received = handler.message_ids
    assert len(received) == len(set(received)), f"{len(received) - len(set(received))} duplicates"
    states = dict(session.execute(select(Message.state, func.count(Message.id))
                                  .group_by(Message.state)).all())
    assert states == {MessageState.SENT.value: DUE}
    assert set(received) == set(session.scalars(select(Message.message_id_header)))
    assert session.scalar(select(func.count(Enrollment.id)).where(
        Enrollment.state == "done")) == DUE
