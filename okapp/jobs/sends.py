"""The send job: one review email, sent at most once (DESIGN §4 Send, §10).

1. Claim: `queued -> sending` in one conditional UPDATE. Only one run of the job wins; a duplicate
   job, an RQ retry of a job whose worker died, or a spare job from the scheduler's repair finds
   nothing to claim and returns.
2. Re-check what may have changed since the message was queued: sequence still running, shop
   still installed (a shop needing re-authorisation pauses: the message goes back to `queued` and
   the scheduler enqueues it again later), order not cancelled or refunded, address not
   suppressed, something left to review. A failed check records `skipped` with the reason.
3. Render (the email engineer's `render_message`), commit `delivery_started_at`, hand to SMTP.
4. Record `sent`; or, on a transient error, back to `queued` and raise so RQ retries with backoff
   (`failed` after the last retry); on a permanent 5xx, `failed` and the address is suppressed.

A worker killed between 3 and 4 leaves `sending` with `delivery_started_at` set: the scheduler
marks it failed with "outcome unknown" rather than send a second copy (at most once); killed
before 3, it is queued again (`okapp.sequences.scheduler.rescue_sending`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from rq import get_current_job
from sqlalchemy import update
from sqlalchemy.orm import Session, joinedload

from okapp.db import utcnow
from okapp.emails.render import NothingToReview, render_message
from okapp.emails.suppression import suppress, suppression_reason
from okapp.emails.transport import PermanentDeliveryError, TransientDeliveryError, deliver
from okapp.models import (
    EmailKind,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
    Order,
    SequenceStatus,
    Shop,
)
from okapp.runtime import current
from okapp.sequences.journal import bump_one, record

log = logging.getLogger(__name__)


def _claim(session: Session, message_id: int, now: datetime) -> bool:
    claimed = session.execute(
        update(Message).where(Message.id == message_id,
                              Message.state == MessageState.QUEUED.value)
        .values(state=MessageState.SENDING.value, claimed_at=now, delivery_started_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    return claimed == 1


def _load(session: Session, message_id: int) -> Message:
    """The message with its enrollment, order and sequence, in one query."""
    return session.get(Message, message_id, options=[
        joinedload(Message.enrollment).joinedload(Enrollment.order),
        joinedload(Message.enrollment).joinedload(Enrollment.sequence)])


def skip_reason_at_send(session: Session, message: Message) -> str | None:
    """Why this message must not go out now, or None. `paused:` reasons keep it queued."""
    enrollment: Enrollment = message.enrollment
    shop = session.get(Shop, message.shop_id)
    if not shop.is_installed:
        return "shop_uninstalled"
    if shop.needs_reauth:
        return "paused:shop_needs_reauth"
    if enrollment.sequence.status != SequenceStatus.RUNNING.value:
        return "sequence_not_running"
    order = enrollment.order
    status = (order.financial_status or "").upper()
    if order.cancelled_at is not None:
        return "order_cancelled"
    if order.refunded or order.partially_refunded or status in ("REFUNDED", "PARTIALLY_REFUNDED"):
        return "order_refunded"
    why = suppression_reason(session, shop.id, message.recipient)
    if why:
        return f"suppressed_{why}"
    return None


def _finish(session: Session, message_id: int, sequence_id: int, block_id: int,
            state: MessageState, counter: str, **values) -> None:
    """Record the outcome on the message (the journal of explain() reads it there) and count
    it on its block."""
    session.execute(update(Message).where(Message.id == message_id)
                    .values(state=state.value, **values)
                    .execution_options(synchronize_session=False))
    bump_one(session, sequence_id, block_id, counter)


def _exit_enrollment(session: Session, enrollment: Enrollment, reason: str, now: datetime) -> None:
    if enrollment.state != EnrollmentState.WAITING.value:
        return
    if enrollment.block_id is not None:
        bump_one(session, enrollment.sequence_id, enrollment.block_id, "waiting", -1)
        bump_one(session, enrollment.sequence_id, enrollment.block_id, f"exited:{reason}")
    enrollment.state, enrollment.exit_reason = EnrollmentState.EXITED.value, reason
    enrollment.due_at, enrollment.updated_at = None, now
    record(session, enrollment, enrollment.block, now, "exited", f"at send time: {reason}")


def send_message(message_id: int) -> str:
    """The RQ job. Returns what happened (also the job's result, for logs)."""
    runtime = current()
    config = runtime.config
    # One transaction claims, re-checks, renders and marks the hand-off: a concurrent run of the
    # same job waits on the row lock, then finds the message no longer queued.
    with runtime.session_scope() as session:
        now = utcnow()
        if not _claim(session, message_id, now):
            return "not queued: already handled"
        message = _load(session, message_id)
        where = (message.id, message.enrollment.sequence_id, message.block_id)
        reason = skip_reason_at_send(session, message)
        if reason and reason.startswith("paused:"):
            message.state, message.claimed_at = MessageState.QUEUED.value, None
            message.error = "paused until the merchant opens okapp again (re-authorisation)"
            return reason
        if reason:
            _finish(session, *where, MessageState.SKIPPED, f"skipped:{reason}",
                    skip_reason=reason)
            if reason in ("order_cancelled", "order_refunded") or reason.startswith("suppressed"):
                _exit_enrollment(session, message.enrollment,
                                 "suppressed" if reason.startswith("suppressed") else reason, now)
            return f"skipped: {reason}"
        try:
            rendered = render_message(session, message, config, now)
        except NothingToReview:
            _finish(session, *where, MessageState.SKIPPED, "skipped:nothing_to_review",
                    skip_reason="nothing_to_review")
            return "skipped: nothing_to_review"
        message.subject = rendered.subject[:998]
        message.delivery_started_at = now
        message.attempts += 1
    # Committed: from here a crash leaves a record that the hand-off may have happened.
    try:
        deliver(config, rendered)
    except TransientDeliveryError as exc:
        return _transient(runtime, where, exc)
    except PermanentDeliveryError as exc:
        with runtime.session_scope() as session:
            _finish(session, *where, MessageState.FAILED, "failed",
                    error=f"rejected by the mail server: {exc}"[:2000])
            suppress(session, message.shop_id, message.recipient, "bounce", utcnow())
        return f"failed: {exc}"
    with runtime.session_scope() as session:
        now = utcnow()
        _finish(session, *where, MessageState.SENT, "sent", sent_at=now, error="")
        if message.kind == EmailKind.REQUEST.value:
            # Asked once, ever: kept on the order, so deleting the sequence does not forget it.
            session.execute(update(Order).where(Order.id == message.enrollment.order_id,
                                                Order.review_requested_at.is_(None))
                            .values(review_requested_at=now)
                            .execution_options(synchronize_session=False))
    return "sent"


def _transient(runtime, where: tuple[int, int, int], exc: Exception) -> str:
    job = get_current_job()
    retries_left = job.retries_left if job is not None else 0
    with runtime.session_scope() as session:
        message = session.get(Message, where[0])
        if retries_left:
            # Back to queued so the retried job can claim it; the server took nothing.
            message.state, message.claimed_at = MessageState.QUEUED.value, None
            message.delivery_started_at = None
            message.error = f"temporary failure, will retry: {exc}"[:2000]
        else:
            _finish(session, *where, MessageState.FAILED, "failed",
                    error=f"gave up after {message.attempts} attempts: {exc}"[:2000])
    if retries_left:
        raise exc  # RQ schedules the retry (okapp.sequences.scheduler.SEND_RETRY)
    return f"failed: {exc}"
