"""The send job: a batch of review emails, each sent at most once (DESIGN §4 Send, §10).

One job sends up to `SEND_BATCH` messages (okapp.sequences.scheduler.enqueue_sends), so RQ's
per-job cost and the claim are paid once per batch. It works through the batch in groups of
`SMTP_CONNECTIONS` messages, each group costing one commit:

1. Claim: `queued -> sending` for the whole batch in one conditional UPDATE ... RETURNING. Only
   one run wins each message; a duplicate job, an RQ retry, or a spare job from the scheduler's
   repair claims only what is still queued.
2. Render the group while the previous group is with the SMTP server.
3. Record the previous group's outcomes, then set `delivery_started_at` on the group in one
   statement that also re-checks what may have changed since each message was queued (`_BLOCKERS`:
   batch still holds it, shop installed, sequence running, order not cancelled or refunded,
   address not suppressed), and commit: the hand-off marks are on disk before SMTP.
4. Hand each marked message to SMTP on its own connection. A message the mark left out gets its
   reason recorded as `skipped` (a shop needing re-authorisation pauses it instead: back to
   `queued`, enqueued again later). On a transient error a message goes back to `queued` and,
   once the batch is done, the job raises so RQ retries it with backoff (the retry claims only
   what is queued again, so the others are neither blocked nor sent twice; `failed` after the
   last retry); on a permanent 5xx, `failed` and the address is suppressed; when the whole
   message went out and the server's answer never came, `failed` with "outcome unknown" (the
   server may have it: at most once).

A worker killed during a hand-off leaves its group `sending` with `delivery_started_at` set:
the scheduler marks it failed with "outcome unknown" rather than send a second copy (at most
once); the batch's messages not yet handed off are queued again
(`okapp.sequences.scheduler.rescue_sending`).
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from rq import get_current_job
from sqlalchemy import bindparam, case, func, literal, or_, select, update
from sqlalchemy.orm import Session, joinedload

from okapp.config import Config
from okapp.db import utcnow
from okapp.emails.render import NothingToReview, RenderedEmail, render_message
from okapp.emails.suppression import lookup_entries, suppress
from okapp.emails.transport import (
    DeliveryOutcomeUnknown,
    PermanentDeliveryError,
    TransientDeliveryError,
    deliver,
)
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
    Suppression,
)
from okapp.runtime import current
from okapp.sequences.items import products_for_orders
from okapp.sequences.journal import bump, bump_one, record

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


# What may have changed since the message was queued, as conditions on the message's shop,
# sequence and order, first match wins. Read afresh for every message, not from the batch's rows:
# an uninstall, a stopped sequence, a cancellation or a refund can land while a batch is busy.
_BLOCKERS = (
    ("shop_uninstalled", or_(Shop.installed_at.is_(None), Shop.uninstalled_at.is_not(None))),
    ("paused:shop_needs_reauth", Shop.needs_reauth.is_(True)),
    ("sequence_not_running", Sequence.status != SequenceStatus.RUNNING.value),
    ("order_cancelled", Order.cancelled_at.is_not(None)),
    ("order_refunded", or_(Order.refunded.is_(True), Order.partially_refunded.is_(True),
                           func.upper(Order.financial_status) == "REFUNDED",
                           func.upper(Order.financial_status) == "PARTIALLY_REFUNDED")),
)
# The address, its `*@domain` and its erased form (okapp.emails.suppression.lookup_entries), as
# three plain parameters so that one statement can mark many messages (executemany).
_SUPPRESSED = (select(Suppression.reason)
               .where(Suppression.shop_id == bindparam("f_shop"),
                      Suppression.address.in_([bindparam(f"f_entry{i}") for i in range(3)]))
               .limit(1).scalar_subquery())


def _about_the_message(*columns):
    return (select(*columns).select_from(Shop)
            .join(Sequence, Sequence.shop_id == Shop.id)
            .join(Order, Order.shop_id == Shop.id)
            .where(Shop.id == bindparam("f_shop"), Sequence.id == bindparam("f_sequence"),
                   Order.id == bindparam("f_order")))


_REASON_AT_SEND = _about_the_message(
    case(*((condition, reason) for reason, condition in _BLOCKERS),
         else_=literal("suppressed_") + _SUPPRESSED))
# The hand-off mark, set only while this batch still holds the message (see _still_ours) and
# nothing blocks it: the re-check and the mark in one statement.
_MARK = (
    update(Message)
    .where(Message.id == bindparam("m_id"), Message.state == MessageState.SENDING.value,
           Message.claimed_at == bindparam("m_claimed_at"),
           Message.delivery_started_at.is_(None),
           ~_about_the_message(literal(1)).where(or_(*(c for _r, c in _BLOCKERS))).exists(),
           _SUPPRESSED.is_(None))
    .values(subject=bindparam("m_subject"), delivery_started_at=bindparam("m_now"),
            attempts=Message.attempts + 1))


def _facts_params(message: Message) -> dict:
    return {"f_shop": message.shop_id, "f_sequence": message.enrollment.sequence_id,
            "f_order": message.enrollment.order_id,
            **{f"f_entry{i}": entry
               for i, entry in enumerate(lookup_entries(message.recipient) or ["", "", ""])}}


def skip_reason_at_send(session: Session, message: Message) -> str | None:
    """Why this message must not go out now, or None. `paused:` reasons keep it queued."""
    if lookup_entries(message.recipient) is None:
        return "suppressed_invalid_address"
    return session.connection().execute(_REASON_AT_SEND, _facts_params(message)).scalar_one()


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
    """Whether this batch still holds the message, locking its row until the outcome is
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


def _render(session: Session, message: Message, config: Config, now: datetime,
            products_by_gid: dict) -> RenderedEmail | None:
    """A claimed message's email, or None when its order has nothing left to review."""
    try:
        return render_message(session, message, config, now, products_by_gid)
    except NothingToReview:
        return None


def _record_skip(session: Session, message: Message, reason: str, now: datetime) -> str:
    """Record why a held message is not sent; a `paused:` one goes back to the queue."""
    if reason.startswith("paused:"):
        session.execute(update(Message).where(Message.id == message.id).values(
            state=MessageState.QUEUED.value, claimed_at=None,
            error="paused until the merchant opens okapp again (re-authorisation)")
            .execution_options(synchronize_session=False))
        return reason
    _finish(session, message, MessageState.SKIPPED, f"skipped:{reason}", skip_reason=reason)
    if reason in ("order_cancelled", "order_refunded") or reason.startswith("suppressed"):
        _exit_enrollment(session, message.enrollment,
                         "suppressed" if reason.startswith("suppressed") else reason, now)
    return f"skipped: {reason}"


_SENT = (update(Message).where(Message.id == bindparam("m_id"))
         .values(state=MessageState.SENT.value, sent_at=bindparam("m_sent_at"), error=""))
_REVIEW_REQUESTED = (update(Order)
                     .where(Order.id == bindparam("o_id"), Order.review_requested_at.is_(None))
                     .values(review_requested_at=bindparam("o_at")))


def _mark_group(session: Session, group: list[tuple[Message, RenderedEmail]],
                now: datetime) -> list[tuple[Message, RenderedEmail]]:
    """Set the hand-off mark on each message that nothing blocks and the batch still holds, in
    one statement for the group (one round trip on PostgreSQL); returns the ones marked."""
    group = [(m, r) for m, r in group if lookup_entries(m.recipient) is not None]
    if not group:
        return []
    marked = session.connection().execute(_MARK, [
        {**_facts_params(m), "m_id": m.id, "m_claimed_at": m.claimed_at,
         "m_subject": r.subject[:998], "m_now": now} for m, r in group]).rowcount
    if marked == len(group):
        return group
    ids = set(session.scalars(select(Message.id).where(
        Message.id.in_([m.id for m, _r in group]), Message.state == MessageState.SENDING.value,
        Message.delivery_started_at == now)))
    return [(m, r) for m, r in group if m.id in ids]


@dataclass
class _HandOff:
    """A message on its way to the SMTP server, on the job's helper thread."""

    message: Message
    future: Future


def _record_outcomes(session: Session, hand_offs: list[_HandOff], retries_left: int,
                     outcomes: dict[int, str]) -> None:
    """Wait for the hand-offs and record their outcomes (committed with the next group's marks,
    or at the end of the batch)."""
    sent: list[Message] = []
    for hand_off in hand_offs:
        message = hand_off.message
        try:
            hand_off.future.result()
        except TransientDeliveryError as exc:
            if not retries_left:
                _finish(session, message, MessageState.FAILED, "failed",
                        error=f"gave up after {message.attempts + 1} attempts: {exc}"[:2000])
                outcomes[message.id] = f"failed: {exc}"
                continue
            # Back to queued so the retried job can claim it; the server took nothing.
            session.execute(update(Message).where(Message.id == message.id).values(
                state=MessageState.QUEUED.value, claimed_at=None, delivery_started_at=None,
                error=f"temporary failure, will retry: {exc}"[:2000])
                .execution_options(synchronize_session=False))
            outcomes[message.id] = "retry"
        except DeliveryOutcomeUnknown as exc:
            _finish(session, message, MessageState.FAILED, "failed",
                    error=f"outcome unknown: {exc}; not sent again so the customer never gets "
                          f"two copies"[:2000])
            outcomes[message.id] = f"failed: {exc}"
        except PermanentDeliveryError as exc:
            _finish(session, message, MessageState.FAILED, "failed",
                    error=f"rejected by the mail server: {exc}"[:2000])
            suppress(session, message.shop_id, message.recipient, "bounce", utcnow())
            outcomes[message.id] = f"failed: {exc}"
        else:
            sent.append(message)
            outcomes[message.id] = "sent"
    if not sent:
        return
    now = utcnow()
    connection = session.connection()
    connection.execute(_SENT, [{"m_id": m.id, "m_sent_at": now} for m in sent])
    bump(session, Counter((m.enrollment.sequence_id, m.block_id, "sent") for m in sent))
    # Asked once, ever: kept on the order, so deleting the sequence does not forget it.
    requests = [{"o_id": m.enrollment.order_id, "o_at": now} for m in sent
                if m.kind == EmailKind.REQUEST.value]
    if requests:
        connection.execute(_REVIEW_REQUESTED, requests)


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
    depth = config.smtp_connections
    with (runtime.session_scope(hold_connection=True) as session,
          ThreadPoolExecutor(depth, "okapp-smtp") as smtp):
        claimed = _claim(session, message_ids, utcnow())
        _shared = _load_shared(session, claimed)
        products = products_for_orders(session, {m.enrollment.order for m in claimed})
        # Leaving the executor waits for hand-offs still under way, even when the job fails;
        # their marks are committed, so the repair would record those outcomes as unknown.
        in_flight: list[_HandOff] = []
        for start in range(0, len(claimed), depth):
            group, now = claimed[start:start + depth], utcnow()
            # Rendered while the previous group is with the SMTP server.
            rendered = [(m, _render(session, m, config, now, products[m.enrollment.order_id]))
                        for m in group]
            _record_outcomes(session, in_flight, retries_left, outcomes)
            marked = _mark_group(session, [(m, r) for m, r in rendered if r is not None], now)
            if marked:
                # Committed: from here a crash leaves a record that the hand-off may have happened.
                session.commit()
            in_flight = [_HandOff(m, smtp.submit(deliver, config, r)) for m, r in marked]
            marked_ids = {m.id for m, _r in marked}
            for message, email in rendered:
                if message.id in marked_ids:
                    continue
                reason = skip_reason_at_send(session, message) or (
                    "nothing_to_review" if email is None else None)
                if reason and _still_ours(session, message):
                    outcomes[message.id] = _record_skip(session, message, reason, now)
                else:
                    outcomes[message.id] = "left alone: repaired while this batch was busy"
        _record_outcomes(session, in_flight, retries_left, outcomes)
    retry = [mid for mid, outcome in outcomes.items() if outcome == "retry"]
    if retry:
        # RQ schedules the retry (okapp.sequences.scheduler.send_retry).
        raise RetryLater(f"temporary failure for messages {retry}; {outcomes}")
    return outcomes
