"""Applying stored webhooks on the `webhooks` queue, and re-queueing any that were missed."""

from __future__ import annotations

import logging
from datetime import timedelta

from rq import Retry
from sqlalchemy import select, update

from okapp.db import utcnow
from okapp.models import WebhookEvent
from okapp.runtime import Runtime, current
from okapp.shopify.webhooks import COMPLIANCE_TOPICS, REDACTED_PAYLOAD, apply_event

log = logging.getLogger(__name__)

RETRY = Retry(max=5, interval=[5, 30, 120, 600, 1800])
STALE_AFTER = timedelta(minutes=5)


def enqueue(runtime: Runtime, event_id: int) -> None:
    runtime.queue("webhooks").enqueue(
        process_webhook, event_id, job_id=f"webhook-{event_id}", retry=RETRY,
        job_timeout=120, result_ttl=0, failure_ttl=7 * 24 * 3600)


def process_webhook(event_id: int) -> str:
    """Apply one stored webhook exactly once; a failure is recorded and retried by RQ."""
    runtime = current()
    now = utcnow()
    with runtime.session_scope() as session:
        event = session.get(WebhookEvent, event_id)
        if event is None or event.processed_at is not None:
            return "already processed"
        event.attempts += 1
    try:
        with runtime.session_scope() as session:
            event = session.get(WebhookEvent, event_id, with_for_update=True)
            if event.processed_at is not None:
                return "already processed"
            outcome = apply_event(runtime, session, event, now)
            event.processed_at = now
            event.error = ""
            if event.topic in COMPLIANCE_TOPICS:
                event.payload = REDACTED_PAYLOAD  # it names the customer; the work is done
            return outcome
    except Exception as exc:
        with runtime.session_scope() as session:
            session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id)
                            .values(error=f"{type(exc).__name__}: {exc}"[:2000]))
        raise


def requeue_stale(runtime: Runtime, now=None) -> int:
    """Events stored but never applied (a lost enqueue, a crashed worker) go back on the queue."""
    cutoff = (now or utcnow()) - STALE_AFTER
    with runtime.session_scope() as session:
        ids = session.scalars(select(WebhookEvent.id).where(
            WebhookEvent.processed_at.is_(None), WebhookEvent.received_at < cutoff,
            WebhookEvent.attempts < 6).limit(1000)).all()
    queue = runtime.queue("webhooks")
    for event_id in ids:
        job = queue.fetch_job(f"webhook-{event_id}")
        if job is None or job.get_status(refresh=True) in ("failed", "stopped", "canceled", None):
            if job is not None:
                job.delete()
            enqueue(runtime, event_id)
    return len(ids)
