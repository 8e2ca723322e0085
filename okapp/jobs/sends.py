"""The send job: a batch of review emails, each sent at most once (DESIGN §4 Send, §10).

One job sends up to `SEND_BATCH` messages (okapp.sequences.scheduler.enqueue_sends), so RQ's
per-job cost and the claim are paid once per batch, and each message costs one commit:

1. Claim: `queued -> sending` for the whole batch in one conditional UPDATE ... RETURNING. Only
   one run wins each message; a duplicate job, an RQ retry, or a spare job from the scheduler's
   repair claims only what is still queued.
2. Per message, re-check what may have changed since it was queued: sequence still running, shop
   still installed (a shop needing re-authorisation pauses: the message goes back to `queued` and
   the scheduler enqueues it again later), order not cancelled or refunded, address not
   suppressed, something left to review. A failed check records `skipped` with the reason.
3. Render, set `delivery_started_at`, and commit: that one commit also records the previous
   message's outcome, so the hand-off mark is on disk before SMTP and every outcome is too.
4. Hand to SMTP and record `sent`; on a transient error the message goes back to `queued` and,
   once the batch is done, the job raises so RQ retries it with backoff (the retry claims only
   what is queued again, so the others are neither blocked nor sent twice; `failed` after the
   last retry); on a permanent 5xx, `failed` and the address is suppressed.

A worker killed during a hand-off leaves that message `sending` with `delivery_started_at` set:
the scheduler marks it failed with "outcome unknown" rather than send a second copy (at most
once); the batch's messages not yet handed off are queued again
(`okapp.sequences.scheduler.rescue_sending`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from rq import get_current_job
from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from okapp.config import Config
from okapp.db import utcnow
from okapp.emails.render import NothingToReview, RenderedEmail, render_message
from okapp.emails.suppression import suppress, suppression_reason
from okapp.emails.transport import PermanentDeliveryError, TransientDeliveryError, deliver
from okapp.models import (
    EmailKind,
    EmailTemplate,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
    Order,
    Sequence,
    SequenceStatus,
    Shop,
)
from okapp.runtime import current
from okapp.sequences.journal import bump_one, record

log = logging.getLogger(__name__)


def _claim(session: Session, message_ids: list[int], now: datetime) -> list[Message]:
    """Claim the batch's queued messages and load them, in message order, with their
    enrollment, order and its line items, and sequence."""
    claimed = session.scalars(
        update(Message).where(Message.id.in_(message_ids),
                              Message.state == MessageState.QUEUED.value)
        .values(state=MessageState.SENDING.value, claimed_at=now, delivery_started_at=None)
        .returning(Message.id)
        .execution_options(synchronize_session=False)).all()
    if not claimed:
        return []
    return list(session.scalars(
        select(Message).where(Message.id.in_(claimed)).order_by(Message.id)
        .options(joinedload(Message.enrollment).joinedload(Enrollment.order)
                 .selectinload(Order.line_items),
                 joinedload(Message.enrollment).joinedload(Enrollment.sequence))))


def _load_shared(session: Session, messages: list[Message]) -> list:
    """The batch's shops and email templates, in two queries. The caller holds the list for
    the whole batch: the session's identity map keeps an object only while something refers to
    it, and while it does, the re-check's and render's `session.get` find it without a query."""
    if not messages:
        return []
    template_ids = {m.email_template_id for m in messages} - {None}
    return [*session.scalars(select(Shop).where(Shop.id.in_({m.shop_id for m in messages}))),
            *session.scalars(select(EmailTemplate).where(EmailTemplate.id.in_(template_ids)))]


def skip_reason_at_send(session: Session, message: Message) -> str | None:
    """Why this message must not go out now, or None. `paused:` reasons keep it queued.

    What can change while a batch is busy (an uninstall, a stopped sequence, a cancellation or a
    refund) is read afresh for every message, in one query, not from the batch's loaded rows."""
    enrollment: Enrollment = message.enrollment
    facts = session.execute(
        select(Shop.installed_at, Shop.uninstalled_at, Shop.needs_reauth, Sequence.status,
               Order.cancelled_at, Order.refunded, Order.partially_refunded,
               Order.financial_status)
        .where(Shop.id == message.shop_id, Sequence.id == enrollment.sequence_id,
               Order.id == enrollment.order_id)).one()
    if facts.installed_at is None or facts.uninstalled_at is not None:
        return "shop_uninstalled"
    if facts.needs_reauth:
        return "paused:shop_needs_reauth"
    if facts.status != SequenceStatus.RUNNING.value:
        return "sequence_not_running"
    status = (facts.financial_status or "").upper()
    if facts.cancelled_at is not None:
        return "order_cancelled"
    if facts.refunded or facts.partially_refunded or status in ("REFUNDED", "PARTIALLY_REFUNDED"):
        return "order_refunded"
    why = suppression_reason(session, message.shop_id, message.recipient)
    if why:
        return f"suppressed_{why}"
    return None


def _finish(session: Session, message: Message, state: MessageState, counter: str,
            **values) -> None:
    """Record the outcome on the message (the journal of explain() reads it there) and count
    it on its block."""
    session.execute(update(Message).where(Message.id == message.id)
                    .values(state=state.value, **values)
                    .execution_options(synchronize_session=False))
    bump_one(session, message.enrollment.sequence_id, message.block_id, counter)


def _exit_enrollment(session: Session, enrollment: Enrollment, reason: str, now: datetime) -> None:
    if enrollment.state != EnrollmentState.WAITING.value:
        return
    if enrollment.block_id is not None:
        bump_one(session, enrollment.sequence_id, enrollment.block_id, "waiting", -1)
        bump_one(session, enrollment.sequence_id, enrollment.block_id, f"exited:{reason}")
    enrollment.state, enrollment.exit_reason = EnrollmentState.EXITED.value, reason
    enrollment.due_at, enrollment.updated_at = None, now
    record(session, enrollment, enrollment.block, now, "exited", f"at send time: {reason}")


def _still_ours(session: Session, message: Message) -> bool:
    """Whether this batch still holds the message, locking its row until the hand-off mark is
    committed. A long batch (slow SMTP) can outlive the repair delay: the scheduler then gives the
    messages it has not reached back to the queue, another worker sends them, and this batch
    must leave them alone."""
    held = session.execute(
        update(Message).where(Message.id == message.id,
                              Message.state == MessageState.SENDING.value,
                              Message.claimed_at == message.claimed_at,
                              Message.delivery_started_at.is_(None))
        .values(claimed_at=message.claimed_at)
        .execution_options(synchronize_session=False)).rowcount
    return held == 1


def _prepare(session: Session, message: Message, config: Config,
             now: datetime) -> RenderedEmail | str:
    """Re-check and render a claimed message: the email to hand off, or the recorded outcome."""
    reason = skip_reason_at_send(session, message)
    if reason and reason.startswith("paused:"):
        session.execute(update(Message).where(Message.id == message.id).values(
            state=MessageState.QUEUED.value, claimed_at=None,
            error="paused until the merchant opens okapp again (re-authorisation)")
            .execution_options(synchronize_session=False))
        return reason
    if reason:
        _finish(session, message, MessageState.SKIPPED, f"skipped:{reason}", skip_reason=reason)
        if reason in ("order_cancelled", "order_refunded") or reason.startswith("suppressed"):
            _exit_enrollment(session, message.enrollment,
                             "suppressed" if reason.startswith("suppressed") else reason, now)
        return f"skipped: {reason}"
    try:
        rendered = render_message(session, message, config, now)
    except NothingToReview:
        _finish(session, message, MessageState.SKIPPED, "skipped:nothing_to_review",
                skip_reason="nothing_to_review")
        return "skipped: nothing_to_review"
    session.execute(update(Message).where(Message.id == message.id).values(
        subject=rendered.subject[:998], delivery_started_at=now, attempts=Message.attempts + 1)
        .execution_options(synchronize_session=False))
    return rendered


def _hand_off(session: Session, message: Message, config: Config, rendered: RenderedEmail,
              retries_left: int) -> str:
    """Deliver a message whose hand-off mark is committed, and record the outcome (committed
    with the next message's mark, or at the end of the batch)."""
    try:
        deliver(config, rendered)
    except TransientDeliveryError as exc:
        if not retries_left:
            _finish(session, message, MessageState.FAILED, "failed",
                    error=f"gave up after {message.attempts + 1} attempts: {exc}"[:2000])
            return f"failed: {exc}"
        # Back to queued so the retried job can claim it; the server took nothing.
        session.execute(update(Message).where(Message.id == message.id).values(
            state=MessageState.QUEUED.value, claimed_at=None, delivery_started_at=None,
            error=f"temporary failure, will retry: {exc}"[:2000])
            .execution_options(synchronize_session=False))
        return "retry"
    except PermanentDeliveryError as exc:
        _finish(session, message, MessageState.FAILED, "failed",
                error=f"rejected by the mail server: {exc}"[:2000])
        suppress(session, message.shop_id, message.recipient, "bounce", utcnow())
        return f"failed: {exc}"
    now = utcnow()
    _finish(session, message, MessageState.SENT, "sent", sent_at=now, error="")
    if message.kind == EmailKind.REQUEST.value:
        # Asked once, ever: kept on the order, so deleting the sequence does not forget it.
        session.execute(update(Order).where(Order.id == message.enrollment.order_id,
                                            Order.review_requested_at.is_(None))
                        .values(review_requested_at=now)
                        .execution_options(synchronize_session=False))
    return "sent"


class RetryLater(TransientDeliveryError):
    """Raised after a batch in which some messages had a transient error, so RQ retries it."""


def send_messages(message_ids: list[int]) -> dict[int, str]:
    """The RQ job. Returns what happened to each message it claimed (also the job's result,
    for logs); messages no longer queued are left alone."""
    runtime = current()
    config = runtime.config
    job = get_current_job()
    retries_left = job.retries_left if job is not None else 0
    outcomes: dict[int, str] = {}
    with runtime.session_scope() as session:
        claimed = _claim(session, message_ids, utcnow())
        _shared = _load_shared(session, claimed)
        for message in claimed:
            if not _still_ours(session, message):
                outcomes[message.id] = "left alone: repaired while this batch was busy"
                continue
            rendered = _prepare(session, message, config, utcnow())
            if isinstance(rendered, str):
                outcomes[message.id] = rendered
                continue
            # Committed: from here a crash leaves a record that the hand-off may have happened.
            session.commit()
            outcomes[message.id] = _hand_off(session, message, config, rendered, retries_left)
    retry = [mid for mid, outcome in outcomes.items() if outcome == "retry"]
    if retry:
        # RQ schedules the retry (okapp.sequences.scheduler.send_retry).
        raise RetryLater(f"temporary failure for messages {retry}; {outcomes}")
    return outcomes
