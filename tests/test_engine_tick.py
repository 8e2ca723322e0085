"""The scheduler tick and the send job, end to end on the real database and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rq.job import Job, JobStatus
from sqlalchemy import select

from okapp.emails.suppression import suppress, suppression_reason
from okapp.jobs import sends
from okapp.jobs.sends import send_messages
from okapp.models import (
    BlockKind,
    EnrollmentState,
    JourneyStep,
    MessageState,
    Review,
    ReviewMedia,
    Shop,
)
from okapp.sequences.blocks import update_block
from okapp.sequences.enrollments import not_arrived_yet
from okapp.sequences.lifecycle import start_sequence, stop_sequence
from okapp.sequences.recruit import consider_order
from okapp.sequences.scheduler import job_id, tick
from tests.engine_support import NOW, blocks_of, counters, events, messages, running, work
from tests.factories import make_order, make_product
from tests.smtp_sink import smtp_sink_fixture  # noqa: F401


def test_review_request_is_sent_once_when_due(session, runtime, shop, config):
    sequence = running(session, shop)
    order = make_order(session, shop, fulfilled_at=NOW - timedelta(days=7, hours=1))
    enrollment = consider_order(session, order, NOW - timedelta(days=7))
    session.commit()
    wait, send = blocks_of(sequence, BlockKind.WAIT)[0], blocks_of(sequence, BlockKind.SEND)[0]
    assert enrollment.block_id == wait.id
    # 7 days on New York's wall clock: 10:00 EDT on 26 Oct -> 10:00 EST on 2 Nov (25 hours
    # of UTC more than 7 x 24 h... minus none: the clocks went back one hour in between).
    assert enrollment.due_at == NOW

    assert not tick(runtime, NOW - timedelta(minutes=1))  # not due yet
    result = tick(runtime, NOW)
    assert (result.advanced, result.messages_queued) == (1, 1)
    [message] = messages(session)
    assert message.state == MessageState.QUEUED.value and message.block_id == send.id
    assert runtime.queue("sends").job_ids == [job_id([message.id])]
    assert not tick(runtime, NOW + timedelta(minutes=1))  # nothing twice

    assert work(runtime) == 1
    [message] = messages(session)
    assert message.state == MessageState.SENT.value, message.error
    emls = list(config.outbox_path.glob("*.eml"))
    assert len(emls) == 1
    assert message.message_id_header in emls[0].read_text()
    session.refresh(enrollment)
    assert enrollment.state == EnrollmentState.DONE.value
    assert events(session, enrollment) == ["recruited", "waiting"]  # the message is the rest
    assert counters(session, sequence) == {
        (sequence.blocks[0].id, "recruited"): 1, (send.id, "queued"): 1, (send.id, "sent"): 1}


# -- helpers ---------------------------------------------------------------------------------

def journey(session, shop, template="review_request", **order_kw):
    """A running sequence and one recruited order whose first email is due at NOW."""
    sequence = running(session, shop, template)
    order_kw.setdefault("fulfilled_at", NOW - timedelta(days=7, hours=1))
    product = make_product(session, shop)
    order = make_order(session, shop, [product], **order_kw)
    enrollment = consider_order(session, order, NOW - timedelta(days=7))
    session.commit()
    return sequence, order, enrollment, product


def review(session, shop, order, product, rating, at, media=False):
    r = Review(shop_id=shop.id, product_id=product.id, order_id=order.id, email=order.email,
               rating=rating, created_at=at, updated_at=at)
    if media:
        r.media.append(ReviewMedia(kind="photo", path="x.jpg", content_type="image/jpeg",
                                   size_bytes=10, created_at=at))
    session.add(r)
    session.commit()


def kinds_sent(session):
    return [m.kind for m in messages(session) if m.state == MessageState.SENT.value]


def step(runtime, at):
    result = tick(runtime, at)
    work(runtime)
    return result


# -- each template's branches ------------------------------------------------------------------

def test_reminder_goes_only_to_customers_who_have_not_reviewed(session, runtime, shop):
    sequence, order, enrollment, product = journey(session, shop, "review_request_reminder")
    other_seq_order = make_order(session, shop, fulfilled_at=NOW - timedelta(days=7, hours=1))
    other = consider_order(session, other_seq_order, NOW - timedelta(days=7))
    session.commit()
    step(runtime, NOW)
    assert kinds_sent(session) == ["request", "request"]
    review(session, shop, order, product, 5, NOW + timedelta(days=1))
    step(runtime, NOW + timedelta(days=5))
    assert sorted(kinds_sent(session)) == ["reminder", "request", "request"]
    [reminder] = messages(session, kind="reminder")
    assert reminder.enrollment_id == other.id
    session.refresh(enrollment)
    assert enrollment.state == EnrollmentState.DONE.value
    assert "split" in events(session, enrollment)
    split = blocks_of(sequence, BlockKind.SPLIT)[0]
    assert session.scalar(select(JourneyStep.detail).where(
        JourneyStep.enrollment_id == enrollment.id, JourneyStep.block_id == split.id)) == \
        "reviewed: yes"


def test_two_reminders_then_the_journey_ends(session, runtime, shop):
    sequence, order, enrollment, _ = journey(session, shop, "review_request_two_reminders")
    step(runtime, NOW)
    step(runtime, NOW + timedelta(days=5))
    assert not step(runtime, NOW + timedelta(days=11))  # second wait: 7 days after the reminder
    step(runtime, NOW + timedelta(days=12))
    assert kinds_sent(session) == ["request", "reminder", "second_reminder"]
    session.refresh(enrollment)
    assert enrollment.state == EnrollmentState.DONE.value


def test_two_reminders_stop_once_reviewed(session, runtime, shop):
    sequence, order, enrollment, product = journey(session, shop, "review_request_two_reminders")
    step(runtime, NOW)
    step(runtime, NOW + timedelta(days=5))
    review(session, shop, order, product, 2, NOW + timedelta(days=6))
    step(runtime, NOW + timedelta(days=12))
    assert kinds_sent(session) == ["request", "reminder"]


@pytest.mark.parametrize("rating, media, expected", [
    (None, False, ["request", "reminder"]),
    (5, False, ["request", "media_request"]),
    (4, False, ["request", "media_request"]),
    (5, True, ["request"]),
    (3, False, ["request"]),
])
def test_photo_template_branches(session, runtime, shop, rating, media, expected):
    sequence, order, enrollment, product = journey(session, shop, "review_request_photo_reminder")
    step(runtime, NOW)
    if rating is not None:
        review(session, shop, order, product, rating, NOW + timedelta(days=2), media=media)
    step(runtime, NOW + timedelta(days=7))
    assert kinds_sent(session) == expected
    session.refresh(enrollment)
    assert enrollment.state == EnrollmentState.DONE.value


def test_a_review_written_before_recruitment_does_not_count(session, runtime, shop):
    sequence, order, enrollment, product = journey(session, shop, "review_request_reminder")
    review(session, shop, order, product, 5, NOW - timedelta(days=30))
    step(runtime, NOW)
    step(runtime, NOW + timedelta(days=5))
    assert kinds_sent(session) == ["request", "reminder"]


# -- send window, gap between emails, exits -----------------------------------------------------

def test_due_at_night_is_sent_when_the_window_opens(session, runtime, shop):
    # Fulfilled at 02:00 New York time: due a week later at 02:00, sent at 09:00.
    fulfilled = datetime(2026, 10, 27, 6, 0, tzinfo=UTC)
    sequence, order, enrollment, _ = journey(session, shop, fulfilled_at=fulfilled)
    night = datetime(2026, 11, 3, 7, 0, tzinfo=UTC)  # 02:00 EST
    assert enrollment.due_at == night
    result = tick(runtime, night)
    assert result.advanced == 1 and result.messages_queued == 0
    session.refresh(enrollment)
    assert enrollment.due_at == datetime(2026, 11, 3, 14, 0, tzinfo=UTC)  # 09:00 EST
    assert events(session, enrollment)[-1] == "deferred"
    assert tick(runtime, datetime(2026, 11, 3, 14, 0, tzinfo=UTC)).messages_queued == 1


def test_second_order_of_an_address_is_deferred_not_dropped(session, runtime, shop):
    running(session, shop)
    first = make_order(session, shop, fulfilled_at=NOW - timedelta(days=7, hours=1),
                       email="same@example.com")
    second = make_order(session, shop, fulfilled_at=NOW - timedelta(days=7, hours=1),
                        email="same@example.com")
    one = consider_order(session, first, NOW - timedelta(days=7))
    two = consider_order(session, second, NOW - timedelta(days=7))
    session.commit()
    assert tick(runtime, NOW).messages_queued == 1
    session.refresh(two)
    session.refresh(one)
    later = two if one.state == EnrollmentState.DONE.value else one
    assert later.due_at == NOW + timedelta(days=5)
    assert events(session, later)[-1] == "deferred"
    assert tick(runtime, NOW + timedelta(days=5)).messages_queued == 1
    assert len(messages(session)) == 2


def test_two_lanes_holding_orders_of_one_address_take_turns(session, runtime, shop):
    running(session, shop)
    for _ in range(2):
        order = make_order(session, shop, fulfilled_at=NOW - timedelta(days=7, hours=1),
                           email="twice@example.com")
        consider_order(session, order, NOW - timedelta(days=7))
    session.commit()
    # One enrollment per batch and two lanes: each lane holds one of the two orders at once.
    result = tick(runtime, NOW, batch_size=1, lanes=2)
    assert (result.advanced, result.messages_queued) == (2, 1)
    assert len(messages(session)) == 1


@pytest.mark.parametrize("change, reason", [
    (lambda s, o, shop: setattr(o, "cancelled_at", NOW), "order_cancelled"),
    (lambda s, o, shop: setattr(o, "refunded", True), "order_refunded"),
    (lambda s, o, shop: suppress(s, shop.id, o.email, "complaint", NOW), "suppressed"),
])
def test_exit_reasons_at_the_tick(session, runtime, shop, change, reason):
    sequence, order, enrollment, _ = journey(session, shop)
    change(session, order, shop)
    session.commit()
    tick(runtime, NOW)
    session.refresh(enrollment)
    assert (enrollment.state, enrollment.exit_reason) == (EnrollmentState.EXITED.value, reason)
    assert messages(session) == []
    wait = blocks_of(sequence, BlockKind.WAIT)[0]
    assert counters(session, sequence)[(wait.id, f"exited:{reason}")] == 1
    assert (wait.id, "waiting") not in counters(session, sequence)


# -- the send job's re-checks and outcomes ------------------------------------------------------

def _queued(session, runtime, shop, **kw):
    sequence, order, enrollment, product = journey(session, shop, **kw)
    tick(runtime, NOW)
    [message] = messages(session)
    return sequence, order, enrollment, message


@pytest.mark.parametrize("change, reason", [
    (lambda s, seq, o, shop: stop_sequence(s, seq, NOW), "sequence_not_running"),
    (lambda s, seq, o, shop: setattr(o, "cancelled_at", NOW), "order_cancelled"),
    (lambda s, seq, o, shop: setattr(o, "financial_status", "REFUNDED"), "order_refunded"),
    (lambda s, seq, o, shop: suppress(s, shop.id, o.email, "bounce", NOW), "suppressed_bounce"),
    (lambda s, seq, o, shop: setattr(shop, "uninstalled_at", NOW), "shop_uninstalled"),
    (lambda s, seq, o, shop: [setattr(li, "refunded_quantity", li.quantity)
                              for li in o.line_items], "nothing_to_review"),
])
def test_send_time_rechecks_skip_with_a_reason(session, runtime, shop, config, change, reason):
    sequence, order, enrollment, message = _queued(session, runtime, shop)
    change(session, sequence, order, shop)
    session.commit()
    work(runtime)
    [message] = messages(session)
    assert (message.state, message.skip_reason) == (MessageState.SKIPPED.value, reason)
    assert not list(config.outbox_path.glob("*.eml"))
    send = blocks_of(sequence, BlockKind.SEND)[0]
    assert counters(session, sequence)[(send.id, f"skipped:{reason}")] == 1


def test_shop_needing_reauth_pauses_sends_until_it_is_back(session, runtime, shop, config):
    sequence, order, enrollment, message = _queued(session, runtime, shop)
    shop.needs_reauth = True
    session.commit()
    work(runtime)
    [message] = messages(session)
    assert message.state == MessageState.QUEUED.value and "paused" in message.error
    shop.needs_reauth = False
    session.commit()
    result = tick(runtime, NOW + timedelta(minutes=11))  # the job is gone: enqueued again
    assert result.requeued == 1
    work(runtime)
    assert messages(session)[0].state == MessageState.SENT.value


def test_permanent_rejection_fails_and_suppresses(session, runtime, shop, config, smtp_sink):
    config.smtp_url = smtp_sink.url
    sequence, order, enrollment, message = _queued(session, runtime, shop)
    smtp_sink.refuse[order.email] = "550 5.1.1 no such user"
    work(runtime)
    [message] = messages(session)
    assert message.state == MessageState.FAILED.value and "550" in message.error
    assert suppression_reason(session, shop.id, order.email) == "bounce"
    assert smtp_sink.count == 0


def _queued_batch(session, runtime, shop, count):
    """`count` messages queued by one tick, so in one send job."""
    sequence, order, enrollment, product = journey(session, shop)
    orders = [order]
    for _ in range(count - 1):
        orders.append(make_order(session, shop, [product],
                                 fulfilled_at=NOW - timedelta(days=7, hours=1)))
        consider_order(session, orders[-1], NOW - timedelta(days=7))
    session.commit()
    tick(runtime, NOW)
    batch = messages(session)
    assert runtime.queue("sends").job_ids == [job_id([m.id for m in batch])]
    return sequence, orders, batch


def test_transient_error_retries_only_that_message_of_the_batch(session, runtime, shop, config,
                                                                smtp_sink):
    config.smtp_url = smtp_sink.url
    sequence, orders, batch = _queued_batch(session, runtime, shop, 3)
    smtp_sink.refuse[orders[1].email] = "451 4.7.1 try again later"
    assert work(runtime) == 1
    first, second, third = messages(session)
    assert (first.state, third.state) == (MessageState.SENT.value, MessageState.SENT.value)
    assert second.state == MessageState.QUEUED.value and "451" in second.error
    assert smtp_sink.count == 2
    job = Job.fetch(job_id([m.id for m in batch]), connection=runtime.redis)
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 4
    # The retry (run now instead of after its backoff) claims and delivers only that one.
    del smtp_sink.refuse[orders[1].email]
    runtime.queue("sends").enqueue_job(job)
    work(runtime)
    assert [m.state for m in messages(session)] == [MessageState.SENT.value] * 3
    assert smtp_sink.count == 3
    send = blocks_of(sequence, BlockKind.SEND)[0]
    assert counters(session, sequence)[(send.id, "sent")] == 3


def test_transient_error_on_the_last_retry_fails(session, runtime, shop, config, smtp_sink):
    config.smtp_url = smtp_sink.url
    sequence, order, enrollment, message = _queued(session, runtime, shop)
    smtp_sink.refuse[order.email] = "451 4.7.1 try again later"
    job = Job.fetch(job_id([message.id]), connection=runtime.redis)
    job.retries_left = 0
    job.save()
    work(runtime)
    [message] = messages(session)
    assert message.state == MessageState.FAILED.value and "gave up after 1" in message.error


def test_an_answer_lost_after_the_whole_message_fails_it_without_a_retry(
        session, runtime, shop, config, smtp_sink):
    """The server took the message, then its answer was lost: sending again could deliver a
    second copy, so the message is failed, outcome unknown, and the job is not retried."""
    config.smtp_url = smtp_sink.url.replace("timeout=5", "timeout=0.5")
    smtp_sink.slow["DATA"] = 1.5
    sequence, order, enrollment, message = _queued(session, runtime, shop)
    job = Job.fetch(job_id([message.id]), connection=runtime.redis)
    assert job.retries_left  # a transient error would be retried
    work(runtime)
    [message] = messages(session)
    assert message.state == MessageState.FAILED.value
    assert message.error.startswith("outcome unknown") and "two copies" in message.error
    # Finished, its result discarded: a job scheduled for a retry would still be stored.
    assert not Job.exists(job.id, connection=runtime.redis)
    assert smtp_sink.count == 1


def test_a_duplicate_job_sends_nothing_more(session, runtime, shop, config):
    sequence, order, enrollment, message = _queued(session, runtime, shop)
    assert send_messages([message.id]) == {message.id: "sent"}
    assert send_messages([message.id]) == {}
    assert len(list(config.outbox_path.glob("*.eml"))) == 1


def test_overlapping_batches_send_each_message_once(session, runtime, shop, config):
    sequence, orders, (a, b, c) = _queued_batch(session, runtime, shop, 3)
    assert send_messages([a.id, b.id]) == {a.id: "sent", b.id: "sent"}
    assert send_messages([b.id, c.id]) == {c.id: "sent"}
    assert work(runtime) == 1  # the tick's job for all three: nothing left to claim
    assert len(list(config.outbox_path.glob("*.eml"))) == 3


def test_worker_dying_mid_batch_is_resolved_at_most_once(session, runtime, shop, config,
                                                        monkeypatch):
    # One connection, so the moment of death is exact; with more, up to that many messages are
    # in flight at once (tests/faults: a killed worker leaves at most that many unknown).
    monkeypatch.setattr(runtime.config, "smtp_connections", 1)
    sequence, orders, batch = _queued_batch(session, runtime, shop, 3)
    real_deliver, calls = sends.deliver, []

    def deliver_then_die(config, rendered):
        calls.append(rendered.recipient)
        if len(calls) == 2:
            raise SystemExit("worker killed during the hand-off")  # the process dies here
        real_deliver(config, rendered)

    monkeypatch.setattr(sends, "deliver", deliver_then_die)
    with pytest.raises(SystemExit):
        send_messages([m.id for m in batch])
    monkeypatch.setattr(sends, "deliver", real_deliver)
    sent, handing_off, claimed = messages(session)
    assert sent.state == MessageState.SENT.value  # its outcome went with the next hand-off mark
    assert handing_off.state == MessageState.SENDING.value and handing_off.delivery_started_at
    assert claimed.state == MessageState.SENDING.value and claimed.delivery_started_at is None
    runtime.redis.flushdb()  # the worker died with its job
    result = tick(runtime, datetime.now(UTC) + timedelta(minutes=11))  # claimed on the wall clock
    assert (result.resent, result.unknown) == (1, 1)
    work(runtime)
    states = [m.state for m in messages(session)]
    assert states == [MessageState.SENT.value, MessageState.FAILED.value, MessageState.SENT.value]
    assert "outcome unknown" in messages(session)[1].error
    assert len(list(config.outbox_path.glob("*.eml"))) == 2


def test_a_batch_outlived_by_the_repair_leaves_the_rest_to_others(session, runtime, shop, config,
                                                                  monkeypatch):
    """SMTP so slow that the repair delay passes mid-batch: the repair queues the messages the
    batch has not reached, another job sends them, and the slow batch does not send them again."""
    monkeypatch.setattr(runtime.config, "smtp_connections", 1)  # one hand-off at a time
    sequence, orders, batch = _queued_batch(session, runtime, shop, 3)
    real_deliver, calls = sends.deliver, []

    def slow_deliver(config, rendered):
        calls.append(rendered.recipient)
        if len(calls) == 1:  # the first hand-off takes longer than the repair delay
            tick(runtime, datetime.now(UTC) + timedelta(seconds=config.repair_after_seconds + 1))
            runtime.redis.flushdb()  # (the repair's re-enqueued job runs below, by hand)
            assert send_messages([m.id for m in batch[1:]]) == {
                batch[1].id: "sent", batch[2].id: "sent"}
        real_deliver(config, rendered)

    monkeypatch.setattr(sends, "deliver", slow_deliver)
    outcomes = send_messages([m.id for m in batch])
    assert outcomes[batch[0].id] == "sent"
    assert outcomes[batch[1].id].startswith("left alone")
    assert outcomes[batch[2].id].startswith("left alone")
    assert [m.state for m in messages(session)] == [MessageState.SENT.value] * 3
    assert len(list(config.outbox_path.glob("*.eml"))) == 3


def test_an_uninstall_during_a_batch_stops_the_rest_of_it(session, runtime, shop, config,
                                                          monkeypatch):
    """The send-time re-check reads the shop afresh for every message of a batch."""
    monkeypatch.setattr(runtime.config, "smtp_connections", 1)  # one hand-off at a time
    sequence, orders, batch = _queued_batch(session, runtime, shop, 3)
    real_deliver, calls = sends.deliver, []

    def deliver_then_uninstall(config, rendered):
        calls.append(rendered.recipient)
        real_deliver(config, rendered)
        if len(calls) == 1:  # the app/uninstalled webhook is applied meanwhile
            with runtime.session_scope() as other:
                other.get(Shop, shop.id).uninstalled_at = datetime.now(UTC)

    monkeypatch.setattr(sends, "deliver", deliver_then_uninstall)
    outcomes = send_messages([m.id for m in batch])
    assert list(outcomes.values()) == ["sent", "skipped: shop_uninstalled",
                                       "skipped: shop_uninstalled"]
    assert len(list(config.outbox_path.glob("*.eml"))) == 1


def test_stuck_sending_is_resolved_at_most_once(session, runtime, shop, config):
    sequence, order, enrollment, message = _queued(session, runtime, shop)
    other_order = make_order(session, shop, fulfilled_at=NOW - timedelta(days=7, hours=1))
    consider_order(session, other_order, NOW - timedelta(days=7))
    session.commit()
    tick(runtime, NOW)
    never_handed, handed = messages(session)
    runtime.redis.flushdb()  # the workers died with their jobs
    never_handed.state, never_handed.claimed_at = MessageState.SENDING.value, NOW
    handed.state, handed.claimed_at = MessageState.SENDING.value, NOW
    handed.delivery_started_at = NOW
    session.commit()
    assert not tick(runtime, NOW + timedelta(minutes=5))  # not stuck yet
    result = tick(runtime, NOW + timedelta(minutes=11))
    assert (result.resent, result.unknown) == (1, 1)
    work(runtime)
    never_handed, handed = messages(session)
    assert never_handed.state == MessageState.SENT.value
    assert handed.state == MessageState.FAILED.value and "outcome unknown" in handed.error
    assert len(list(config.outbox_path.glob("*.eml"))) == 1


def test_queued_message_whose_job_vanished_is_enqueued_again(session, runtime, shop):
    sequence, orders, batch = _queued_batch(session, runtime, shop, 2)
    assert tick(runtime, NOW + timedelta(minutes=11)).requeued == 0  # its job is still there
    runtime.redis.delete(Job.key_for(job_id([m.id for m in batch])))
    assert tick(runtime, NOW + timedelta(minutes=11)).requeued == 2
    assert tick(runtime, NOW + timedelta(minutes=11)).requeued == 0  # enqueued once
    runtime.redis.flushdb()  # Redis lost everything, the message-to-job keys too
    assert tick(runtime, NOW + timedelta(minutes=11)).requeued == 2
    work(runtime)
    assert [m.state for m in messages(session)] == [MessageState.SENT.value] * 2


# -- edits, stop and restart, not arrived yet ----------------------------------------------------

def test_editing_a_running_wait_moves_enrollments_still_in_it(session, runtime, shop):
    sequence, order, enrollment, _ = journey(session, shop)
    wait = blocks_of(sequence, BlockKind.WAIT)[0]
    update_block(session, wait, {"anchor": "fulfillment", "domestic_days": "10",
                                 "international_days": "14"}, NOW - timedelta(days=2))
    session.commit()
    session.refresh(enrollment)
    assert enrollment.due_at == NOW + timedelta(days=3)
    assert not tick(runtime, NOW)


def test_stop_keeps_places_and_restart_resumes(session, runtime, shop):
    sequence, order, enrollment, _ = journey(session, shop)
    stop_sequence(session, sequence, NOW - timedelta(hours=1))
    session.commit()
    assert not tick(runtime, NOW + timedelta(hours=1))
    session.refresh(enrollment)
    assert enrollment.state == EnrollmentState.WAITING.value
    restart = start_sequence(session, sequence, NOW + timedelta(hours=2))
    assert restart.resumed
    sequence.lookback_state = ""  # the (empty) import of orders fulfilled meanwhile is done
    session.commit()
    assert tick(runtime, NOW + timedelta(hours=2)).messages_queued == 1
    session.refresh(enrollment)
    assert enrollment.state == EnrollmentState.DONE.value


def test_not_arrived_yet_pushes_the_next_step_once(session, runtime, shop):
    sequence, order, enrollment, _ = journey(session, shop, "review_request_reminder")
    step(runtime, NOW)
    session.refresh(enrollment)
    due = enrollment.due_at  # the reminder's wait
    assert not_arrived_yet(session, enrollment, NOW + timedelta(days=1)) == due + timedelta(days=7)
    assert not_arrived_yet(session, enrollment, NOW + timedelta(days=1)) is None
    session.commit()
    assert "not_arrived" in events(session, enrollment)
    assert not tick(runtime, due)
    assert tick(runtime, due + timedelta(days=7)).messages_queued == 1


def test_blocked_messages_inside_a_group_of_hand_offs(session, runtime, shop, config,
                                                     monkeypatch):
    """With two SMTP connections the job marks and hands off two messages at a time; a blocked
    message inside a group is skipped with its reason and the rest still go, each once."""
    monkeypatch.setattr(runtime.config, "smtp_connections", 2)
    sequence, orders, batch = _queued_batch(session, runtime, shop, 5)
    suppress(session, shop.id, orders[1].email, "unsubscribe", NOW)
    orders[3].cancelled_at = NOW
    session.commit()
    outcomes = send_messages([m.id for m in batch])
    assert [outcomes[m.id] for m in batch] == [
        "sent", "skipped: suppressed_unsubscribe", "sent", "skipped: order_cancelled", "sent"]
    states = [m.state for m in messages(session)]
    assert states == ["sent", "skipped", "sent", "skipped", "sent"]
    send = blocks_of(sequence, BlockKind.SEND)[0]
    assert counters(session, sequence)[(send.id, "sent")] == 3
    assert len(list(config.outbox_path.glob("*.eml"))) == 3
    assert all(o.review_requested_at is not None for i, o in enumerate(orders) if i in (0, 2, 4))
    assert orders[1].review_requested_at is None
