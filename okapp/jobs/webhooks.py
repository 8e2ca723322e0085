"""Applying stored webhooks on the `webhooks` queue.

The `webhook_events` table is the queue: the endpoint only stores a row and raises a flag in
Redis; the first flag of a quiet moment enqueues one `drain` job, which takes unprocessed events
oldest first (row locks with SKIP LOCKED, so several workers share the work) and applies each in
its own transaction. A failed event records its error and is retried later (`requeue_stale`,
called by every scheduler loop) up to MAX_ATTEMPTS times; so is an event whose drain was lost
with Redis or never signalled because Redis was down.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from weakref import WeakKeyDictionary

from sqlalchemy import select, tuple_

from okapp.db import utcnow
from okapp.models import WebhookEvent
from okapp.runtime import Runtime, current
from okapp.shopify.webhooks import COMPLIANCE_TOPICS, REDACTED_PAYLOAD, apply_event

log = logging.getLogger(__name__)

DRAIN_FLAG = "okapp:webhooks:drain-pending"
SWEEP_GATE = "okapp:webhooks:sweep"  # one stale-event sweep per repair period, across schedulers
DRAIN_FLAG_TTL = 300  # a lost drain job is replaced after this long at the latest
MAX_ATTEMPTS = 8


# A process that has signalled skips signalling again for this long: under a burst of deliveries
# that saves a Redis round trip per webhook. Safe because a drain keeps looking for new events
# until at least this long after it started (see `drain`), and the drain a signal ensures starts
# after that signal: every event a skipped signal stood for is seen by that drain.
SIGNAL_QUIET_SECONDS = 0.25
_signalled_at: WeakKeyDictionary[Runtime, float] = WeakKeyDictionary()


def signal_drain(runtime: Runtime) -> None:
    """New events are stored: make sure a drain job is on its way (one Redis call when it is,
    none when this process did that a moment ago)."""
    now = time.monotonic()
    if now - _signalled_at.get(runtime, -SIGNAL_QUIET_SECONDS) < SIGNAL_QUIET_SECONDS:
        return
    if runtime.redis.set(DRAIN_FLAG, "1", nx=True, ex=DRAIN_FLAG_TTL):
        runtime.queue("webhooks").enqueue(drain, job_timeout=1800, result_ttl=0,
                                          failure_ttl=7 * 24 * 3600)
    _signalled_at[runtime] = now  # only once Redis took it: a failed signal is not skipped


# A drain job stops after this many events or seconds and hands the rest to a new job, so that
# a backlog of webhooks (slow under Shopify's rate limit) never keeps every worker from the sends.
# Workers take their queues in turn, job by job (okapp.jobs.worker): a drain about as long as a
# send job shares a worker about evenly (the soak starved sends behind 10-second drains).
DRAIN_BATCH = 200
DRAIN_SECONDS = 1.0


def drain(limit: int | None = DRAIN_BATCH) -> int:
    """Apply stored events, up to `limit` (None: until none is left) and DRAIN_SECONDS; when more
    are waiting, a new drain is signalled, which queues behind the jobs already waiting. Returns
    how many were handled."""
    runtime = current()
    started = time.monotonic()
    deadline = started + DRAIN_SECONDS
    # Lowered before looking, so an event stored from now on raises it again: none is missed.
    runtime.redis.delete(DRAIN_FLAG)
    skip: set[int] = set()
    # Where the last look stopped: the next one starts there. From the start of the queue, every
    # look would step over the events applied a moment ago, which stay in the index until vacuum.
    after: tuple | None = None
    handled = 0
    while (limit is None or handled < limit) and time.monotonic() < deadline:
        taken = _apply_next(runtime, skip, after)
        if taken is None and after is not None:
            # Once more from the start: an event can commit after a later one was taken.
            taken = _apply_next(runtime, skip, None)
        after = taken
        if taken is None:
            # Events whose signal was skipped (SIGNAL_QUIET_SECONDS) may still be arriving.
            wait = started + SIGNAL_QUIET_SECONDS - time.monotonic()
            if wait <= 0:
                return handled
            time.sleep(min(wait, 0.05))
            continue
        handled += 1
    signal_drain(runtime)  # the batch is full: the rest in another job
    return handled


def _apply_next(runtime: Runtime, skip: set[int], after: tuple | None) -> tuple | None:
    """Apply the oldest waiting event after `after` (received_at, id); returns that key of the
    event it took, or None when there was none."""
    now = utcnow()
    with runtime.session_scope() as session:
        query = (select(WebhookEvent)
                 .where(WebhookEvent.processed_at.is_(None),
                        WebhookEvent.attempts < MAX_ATTEMPTS)
                 .order_by(WebhookEvent.received_at, WebhookEvent.id).limit(1))
        if after is not None:
            query = query.where(tuple_(WebhookEvent.received_at, WebhookEvent.id) > after)
        if skip:
            query = query.where(WebhookEvent.id.not_in(skip))
        event = session.scalar(query.with_for_update(skip_locked=True))
        if event is None:
            return None
        taken = (event.received_at, event.id)
        event.attempts += 1
        try:
            with session.begin_nested():
                outcome = apply_event(runtime, session, event, now)
        except Exception as exc:  # recorded on the event; retried by a later drain
            log.warning("webhook %s (%s) failed: %s", event.id, event.topic, exc)
            event.error = f"{type(exc).__name__}: {exc}"[:2000]
            skip.add(event.id)
            return taken
        event.processed_at = now
        event.error = ""
        if event.topic in COMPLIANCE_TOPICS:
            event.payload = REDACTED_PAYLOAD  # it names the customer; the work is done
        log.info("webhook %s (%s): %s", event.id, event.topic, outcome)
        return taken


def requeue_stale(runtime: Runtime, now=None) -> int:
    """Events stored a while ago and still not applied (a failure, a lost job): drain again.

    At most once per repair period across all schedulers: during a backlog older than that
    period, a drain on every scheduler loop would fill the `webhooks` queue, which workers serve
    first, and starve the sends."""
    period = runtime.config.repair_after_seconds
    if not runtime.redis.set(SWEEP_GATE, "1", nx=True, ex=period):
        return 0
    cutoff = (now or utcnow()) - timedelta(seconds=period)
    with runtime.session_scope() as session:
        waiting = len(session.scalars(select(WebhookEvent.id).where(
            WebhookEvent.processed_at.is_(None), WebhookEvent.received_at < cutoff,
            WebhookEvent.attempts < MAX_ATTEMPTS).limit(1000)).all())
    if waiting:
        runtime.redis.delete(DRAIN_FLAG)
        signal_drain(runtime)
    return waiting
