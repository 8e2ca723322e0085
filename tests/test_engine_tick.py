"""The scheduler tick and the send job, end to end on the real database and Redis."""

from __future__ import annotations

from datetime import timedelta

from okapp.models import BlockKind, EnrollmentState, MessageState
from okapp.sequences.recruit import consider_order
from okapp.sequences.scheduler import job_id, tick
from tests.engine_support import NOW, blocks_of, counters, events, messages, running, work
from tests.factories import make_order


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
    assert runtime.queue("sends").job_ids == [job_id(message.id)]
    assert not tick(runtime, NOW + timedelta(minutes=1))  # nothing twice

    assert work(runtime) == 1
    [message] = messages(session)
    assert message.state == MessageState.SENT.value, message.error
    emls = list(config.outbox_path.glob("*.eml"))
    assert len(emls) == 1
    assert message.message_id_header in emls[0].read_text()
    session.refresh(enrollment)
    assert enrollment.state == EnrollmentState.DONE.value
    assert events(session, enrollment) == ["recruited", "waiting", "waited", "queued", "done",
                                           "sent"]
    assert counters(session, sequence) == {
        (sequence.blocks[0].id, "recruited"): 1, (send.id, "queued"): 1, (send.id, "sent"): 1}
