"""A whole okapp deployment for the fault suite, and the checks every scenario ends with.

Real processes (gunicorn, RQ workers, schedulers, a Redis server of our own), PostgreSQL, an
aiosmtpd SMTP server and the Shopify simulator. Orders flow as in production: the simulator
fulfils an order and sends the signed webhook; the web process stores it; a worker applies it and
recruits the order; a scheduler advances it; a worker sends the email.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select

from okapp import migrate
from okapp.config import Config
from okapp.models import (
    BlockKind,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
    Order,
    Shop,
    Suppression,
    WebhookEvent,
)
from okapp.runtime import Runtime, set_current
from okapp.sequences.blocks import anchor_choices, update_block
from okapp.sequences.lifecycle import start_sequence
from okapp.sequences.templates import create_sequence
from okapp.sequences.timing import shop_today
from okapp.shopify.simulator.server import Simulator
from tests.faults.smtp import FaultySmtp
from tests.faults.stack import Stack, wait_until

SUB = "faults"
DOMAIN = f"{SUB}.myshopify.com"
# The reminder template: request, then (not reviewed) a reminder: two emails per order.
TEMPLATE = "review_request_reminder"
EMAILS_PER_ORDER = 2


class World:
    def __init__(self, tmp: Path, database_url: str, workers: int = 2, schedulers: int = 1,
                 env: dict | None = None, smtp_timeout: float = 3,
                 template: str = TEMPLATE, emails_per_order: int = EMAILS_PER_ORDER,
                 sim_options: dict | None = None):
        self.tmp = tmp
        self.database_url = database_url
        self.smtp = FaultySmtp()
        self.stack = Stack(tmp, database_url, self.smtp.port, env=env, smtp_timeout=smtp_timeout)
        self.n_workers, self.n_schedulers = workers, schedulers
        self.sim: Simulator | None = None
        self.runtime: Runtime | None = None
        self.orders: list[dict] = []  # simulator orders, in the order they were made
        self.rng = random.Random(11)
        self.template, self.emails_per_order = template, emails_per_order
        self.sim_options = sim_options or {}

    # --- bringing it up -------------------------------------------------------------------

    def start(self) -> World:
        env = self.stack.env
        engine_rt = Runtime(Config(env="test", database_url=self.database_url))
        migrate.upgrade(engine_rt.engine)
        engine_rt.dispose()
        self.smtp.start()
        self.stack.start_redis()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the simulator's access log
        self.sim = Simulator(env["SHOPIFY_API_KEY"], env["SHOPIFY_API_SECRET"],
                             app_url=self.stack.web_url, **self.sim_options)
        self.sim.start(port=self.stack.sim_port)
        self.sim.generate(SUB, products=6, orders=0, name="Fault Shop",
                          email="owner@faults.example")
        self.stack.start_web()
        for n in range(self.n_workers):
            self.stack.start_worker(f"worker{n}")
        for n in range(self.n_schedulers):
            self.stack.start_scheduler(f"scheduler{n}")
        self.runtime = Runtime(Config(
            env="test", database_url=self.database_url, redis_url=env["REDIS_URL"],
            secret_key=env["SECRET_KEY"], instance_path=self.tmp / "test-instance",
            shopify_api_key=env["SHOPIFY_API_KEY"], shopify_api_secret=env["SHOPIFY_API_SECRET"]))
        set_current(self.runtime)
        self.install()
        self.configure_sequence()
        return self

    def stop(self) -> None:
        self.stack.stop_all()
        if self.sim:
            self.sim.stop()
        self.smtp.stop()
        if self.runtime:
            set_current(None)
            self.runtime.dispose()

    def install(self) -> None:
        """Open the app from the admin: the ID token is exchanged for an offline token."""
        url = f"{self.stack.web_url}/sequences"
        params = {"embedded": "1", "shop": DOMAIN, "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZmF1bHRz",
                  "id_token": self.sim.id_token(SUB)}
        response = httpx.get(url, params=params, timeout=30)
        assert response.status_code == 200, response.text[:500]
        wait_until(self._installed, 30, "the shop to be installed with an access token")

    def _installed(self) -> bool:
        with self.runtime.session_scope() as s:
            shop = s.scalar(select(Shop).where(Shop.domain == DOMAIN))
            return bool(shop and shop.access_token and shop.country)

    def configure_sequence(self) -> None:
        """The reminder template with no waiting, a send window of the whole day, and no
        spacing between emails, so every step happens within the test's seconds."""
        now = datetime.now(UTC)
        with self.runtime.session_scope() as s:
            shop = s.scalar(select(Shop).where(Shop.domain == DOMAIN))
            shop.settings = {**(shop.settings or {}), "send_window_start": "00:00",
                             "send_window_end": "00:00", "min_days_between_emails": 0}
            sequence = create_sequence(s, shop, self.template, now, name="Fault suite")
            for block in sequence.blocks:
                if block.kind == BlockKind.WAIT.value:
                    anchors = [key for key, _ in anchor_choices(block)]
                    anchor = "previous_email" if "previous_email" in anchors else "fulfillment"
                    update_block(s, block, {"anchor": anchor,
                                            "domestic_days": "0", "international_days": "0"}, now)
                elif block.kind == BlockKind.RECRUIT.value:
                    update_block(s, block, {"start_date": shop_today(shop, now).isoformat()}, now)
            start_sequence(s, sequence, now)
            self.sequence_id = sequence.id

    # --- orders ---------------------------------------------------------------------------

    def add_orders(self, n: int) -> list[dict]:
        """`n` paid, unfulfilled orders of distinct new customers in the simulator."""
        shop = self.sim.shop(SUB)
        made = []
        with self.sim.store.lock:
            for _ in range(n):
                k = len(self.orders) + len(made)
                customer = {"id": 500_000 + k, "first_name": f"Cust{k}", "last_name": "Fault",
                            "email": f"cust{k}@faults.example"}
                products = [p for p in shop.products if not p["gift_card"]]
                order = self.sim.store.add_order(
                    shop, created=datetime.now(UTC) - timedelta(hours=2), customer=customer,
                    country="US", items=[(self.rng.choice(products), 1)],
                    email=customer["email"])
                made.append(order)
        self.orders.extend(made)
        return made

    def fulfill(self, order: dict, send: bool = True) -> tuple[bytes, dict] | None:
        """Fulfil in the simulator. With send=False the webhook is returned, not delivered."""
        if send:
            self.sim.fulfill(SUB, order["id"])
            return None
        with self.sim.store.lock:
            from okapp.shopify.simulator import admin_api
            from okapp.shopify.simulator.store import unfulfilled

            sim_order = self.sim.shop(SUB).order(order["id"])
            parcel = self.sim.store.add_fulfillment(sim_order, unfulfilled(sim_order),
                                                    datetime.now(UTC))
            payload = admin_api.fulfillment_payload(sim_order, parcel)
        return self.sim.signed_webhook(SUB, "fulfillments/create", payload)

    def post_webhook(self, body: bytes, headers: dict) -> int:
        try:
            return httpx.post(f"{self.stack.web_url}/webhooks", content=body, headers=headers,
                              timeout=10).status_code
        except httpx.HTTPError:
            return 0

    # --- reading the outcome --------------------------------------------------------------

    def counts(self) -> dict:
        with self.runtime.session_scope() as s:
            states = dict(s.execute(select(Message.state, func.count()).group_by(Message.state)).all())
            waiting = s.scalar(select(func.count()).select_from(Enrollment).where(
                Enrollment.state == EnrollmentState.WAITING.value))
            enrolled = s.scalar(select(func.count()).select_from(Enrollment))
            unapplied = s.scalar(select(func.count()).select_from(WebhookEvent).where(
                WebhookEvent.processed_at.is_(None)))
        return {"enrolled": enrolled, "waiting": waiting, "unapplied_webhooks": unapplied,
                **states}

    def wait_settled(self, expected_enrollments: int, timeout: float = 120) -> dict:
        """Until every expected order is enrolled and nothing is waiting, queued or sending."""
        def settled():
            c = self.counts()
            busy = (c["waiting"] or c["unapplied_webhooks"] or c.get("queued")
                    or c.get("sending"))
            return c if c["enrolled"] >= expected_enrollments and not busy else None
        try:
            return wait_until(settled, timeout, f"{expected_enrollments} orders to settle",
                              interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnosis()}") from None

    def diagnosis(self) -> str:
        """What is not settled, and why, for a failing scenario's message."""
        from okapp.models import RecruitSkip

        now = datetime.now(UTC)
        lines = [f"counts: {self.counts()}"]
        with self.runtime.session_scope() as s:
            for e in s.scalars(select(Enrollment).where(
                    Enrollment.state == EnrollmentState.WAITING.value).limit(10)):
                lines.append(f"waiting enrollment {e.id}: block {e.block and e.block.kind} "
                             f"due in {(e.due_at - now).total_seconds() if e.due_at else None}s")
            for m in s.scalars(select(Message).where(Message.state.in_(
                    [MessageState.QUEUED.value, MessageState.SENDING.value])).limit(10)):
                job_id = self.runtime.redis.get(f"okapp:send-job:{m.id}")
                job = job_id and self.runtime.redis.hget(f"rq:job:{job_id.decode()}", "status")
                lines.append(f"message {m.id} {m.state} queued {m.queued_at} claimed "
                             f"{m.claimed_at} job={job} error={m.error[:120]!r}")
            enrolled = set(s.scalars(select(Enrollment.order_id)))
            for o in s.scalars(select(Order)):
                if o.id not in enrolled:
                    skip = s.scalar(select(RecruitSkip.reason).where(RecruitSkip.order_id == o.id))
                    lines.append(f"order {o.name} not enrolled: skip={skip} "
                                 f"fulfilled_at={o.fulfilled_at}")
            known = {o.gid for o in s.scalars(select(Order))}
            missing = [o["name"] for o in self.orders
                       if f"gid://shopify/Order/{o['id']}" not in known]
            lines.append(f"orders never stored: {missing[:20]}")
            for ev in s.scalars(select(WebhookEvent).where(
                    WebhookEvent.processed_at.is_(None)).limit(10)):
                lines.append(f"unapplied webhook {ev.id} {ev.topic} attempts={ev.attempts} "
                             f"error={ev.error[:160]!r}")
        for name in self.stack.procs:
            if self.stack.procs[name].poll() is not None:
                lines.append(f"process {name} exited with {self.stack.procs[name].returncode}")
        return "\n".join(lines)

    def check(self, eligible: list[dict], must_be_sent: bool = True,
              none_after: datetime | None = None) -> Counter:
        """The promise, checked from the SMTP server's mail and the database."""
        received = Counter(self.smtp.message_ids())
        twice = {mid: n for mid, n in received.items() if n > 1}
        assert not twice, (f"{len(twice)} emails sent more than once, e.g. "
                           f"{dict(list(twice.items())[:5])}")
        with self.runtime.session_scope() as s:
            messages = s.scalars(select(Message)).all()
            suppressed = {row.address for row in s.scalars(select(Suppression))}
            by_order = Counter()
            for m in messages:
                assert m.state not in (MessageState.QUEUED.value, MessageState.SENDING.value), (
                    f"message {m.id} stuck in {m.state}")
                if m.state == MessageState.SENT.value:
                    assert received[m.message_id_header] == 1, (
                        f"message {m.id} recorded sent but the SMTP server got "
                        f"{received[m.message_id_header]} copies")
                    by_order[m.enrollment.order.gid] += 1
                elif m.state == MessageState.SKIPPED.value:
                    assert m.skip_reason, f"skipped message {m.id} has no reason"
                    assert m.message_id_header not in received, f"skipped {m.id} was delivered"
                elif m.state == MessageState.FAILED.value:
                    assert m.error, f"failed message {m.id} has no error"
            db_ids = {m.message_id_header for m in messages}
            stray = set(received) - db_ids
            assert not stray, f"mail the database has no record of: {stray}"
            for _, to in self.smtp.received:
                assert to not in self.smtp.reject, f"a rejected address received mail: {to}"
            for m in messages:
                if m.recipient in suppressed and m.state == MessageState.SENT.value:
                    assert m.sent_at is not None
                    sup = s.scalar(select(Suppression).where(Suppression.address == m.recipient))
                    assert m.sent_at <= sup.created_at, f"mail to {m.recipient} after suppression"
                if none_after is not None and m.state == MessageState.SENT.value:
                    assert m.sent_at <= none_after, f"message {m.id} sent after uninstall"
            if must_be_sent:
                orders = {o.gid: o for o in s.scalars(select(Order))}
                for sim_order in eligible:
                    gid = f"gid://shopify/Order/{sim_order['id']}"
                    assert gid in orders, f"order {sim_order['name']} never reached the app"
                    assert by_order[gid] == self.emails_per_order, (
                        f"order {sim_order['name']} got {by_order[gid]} emails, "
                        f"expected {self.emails_per_order}")
        return received
