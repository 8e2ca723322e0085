"""The scheduler tick: advance every enrollment that is due at `now` (DESIGN §4, §10).

One tick claims due enrollments in batches with set-based SQL on the partial `ix_enrollments_due`
index (`FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite the claiming UPDATE takes the database's
write lock), advances them with the engine rules, writes the outcomes with a few statements per
batch, commits, and only then enqueues the new messages, one send job per `SEND_BATCH` of them,
in one Redis round trip per batch. Each transaction is short; any number of schedulers may run
at once: a row is claimed by one of them, and a message is unique on (enrollment, block) whatever happens.

The tick also repairs what crashes leave behind: a message queued whose job is gone is enqueued
again, and a message stuck in `sending` (its worker died) is resolved (see `rescue_sending`).

Known cost: the due query filters on running sequences after the index, so the overdue rows of
a stopped sequence are walked (not worked) by every tick until it restarts.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rq import Retry
from rq.job import Job, JobStatus
from rq.utils import now as rq_now
from sqlalchemy import Integer, bindparam, select, text, update
from sqlalchemy.orm import Session

from okapp.db import UTCDateTime
from okapp.models import Enrollment, Message, MessageState
from okapp.sequences.advance import advance
from okapp.sequences.journal import bump
from okapp.sequences.stats import attribute_reviews
from okapp.sequences.store import load_context, load_travellers, pg_array, save_outcomes

BATCH_SIZE = 2000
LANES = 2  # threads per tick on PostgreSQL
SEND_JOB = "okapp.jobs.sends.send_messages"
SEND_BATCH = 100  # messages per send job: claim, loads and RQ's bookkeeping are paid once
SEND_TIMEOUT = 600  # seconds; RQ kills a send job that runs longer
SEND_RETRY = Retry(max=5, interval=[30, 120, 600, 1800, 3600])  # transient SMTP errors
def send_retry(config) -> Retry:
    """Backoff for transient SMTP errors (`OKAPP_SEND_RETRY_INTERVALS`)."""
    intervals = list(config.send_retry_intervals)
    return Retry(max=len(intervals), interval=intervals)


def repair_after(config) -> timedelta:
    """A message `sending` longer than this has lost its worker (the job timeout is far shorter),
    and a queued message whose job is missing this long after queueing is enqueued again."""
    return timedelta(seconds=config.repair_after_seconds)

RESCUE_LIMIT = 500


@dataclass
class TickResult:
    advanced: int = 0
    messages_queued: int = 0
    requeued: int = 0  # queued messages whose job had vanished, enqueued again
    resent: int = 0  # `sending` messages never handed to SMTP, queued again
    unknown: int = 0  # `sending` messages interrupted during hand-off, marked failed
    reviews_credited: int = 0  # new reviews counted in the statistics
    batches: int = 0

    def __bool__(self) -> bool:
        return bool(self.advanced or self.messages_queued or self.requeued or self.resent
                    or self.unknown)

    def __str__(self) -> str:
        return (f"advanced={self.advanced} queued={self.messages_queued} requeued={self.requeued} "
                f"resent={self.resent} unknown={self.unknown}")


def job_id(message_ids: list[int]) -> str:
    """Deterministic: enqueueing the same batch twice names the same job."""
    return f"send-messages-{message_ids[0]}-{message_ids[-1]}-{len(message_ids)}"


JOB_OF_MESSAGE = "okapp:send-job:"  # + message id: the job it was last enqueued in (repairs)


_DUE_SQL = """
    SELECT e.id FROM enrollments e
    WHERE e.state = 'waiting' AND e.due_at <= :now
      AND e.sequence_id IN (
          SELECT s.id FROM sequences s JOIN shops sh ON sh.id = s.shop_id
          WHERE s.status = 'running' AND sh.uninstalled_at IS NULL)
      AND (e.due_at, e.id) > (:after_due, :after_id)
    ORDER BY e.due_at, e.id
    LIMIT :limit
"""
_START = (datetime(1970, 1, 1, tzinfo=UTC), 0)


def claim_due(session: Session, now: datetime, limit: int,
              after: tuple[datetime, int] = _START) -> list[tuple[int, datetime]]:
    """Lock and return up to `limit` due enrollments (id, due_at) that no other tick holds,
    in due order, starting after `after`: a tick walks the index forward instead of scanning
    again the rows its previous batches already moved."""
    params = {"now": now, "limit": limit, "after_due": after[0], "after_id": after[1]}
    if session.get_bind().dialect.name == "postgresql":
        sql = _DUE_SQL.replace("SELECT e.id", "SELECT e.id, e.due_at") + \
            " FOR UPDATE OF e SKIP LOCKED"
    else:
        # SQLite: an UPDATE first takes the write lock, so concurrent ticks queue behind this
        # one and then see the rows it advanced.
        sql = (f"UPDATE enrollments SET updated_at = updated_at WHERE id IN ({_DUE_SQL}) "
               "RETURNING id, due_at")
    query = text(sql).bindparams(bindparam("now", type_=UTCDateTime()),
                                 bindparam("after_due", type_=UTCDateTime())) \
        .columns(id=Integer, due_at=UTCDateTime)
    rows = session.execute(query, params).all()
    return sorted(((r.id, r.due_at) for r in rows), key=lambda r: (r[1], r[0]))


# Writes a batch of RQ jobs in one round trip: each job's hash is a template made by RQ itself
# (`Job.to_dict()` of a real job with the same options) plus its own `data` and `description`,
# then its id goes on the queue, as `Queue.enqueue_many` would do, at a fraction of the cost
# (the bench's tick enqueues 100,000 messages). Each message also gets a key naming its job,
# kept as long as a failed job, so the repairs can tell a queued message whose job is gone.
_ENQUEUE_LUA = """
local queue_key, prefix, map_prefix = ARGV[1], ARGV[2], ARGV[3]
local map_ttl, nfields = tonumber(ARGV[4]), tonumber(ARGV[5])
local template = {}
for i = 1, nfields * 2 do template[i] = ARGV[5 + i] end
local first = 6 + nfields * 2
for i = first, #ARGV, 4 do
  local key = prefix .. ARGV[i]
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(template))
  redis.call('HSET', key, 'data', ARGV[i + 1], 'description', ARGV[i + 2])
  redis.call('RPUSH', queue_key, ARGV[i])
  for mid in string.gmatch(ARGV[i + 3], '%d+') do
    redis.call('SET', map_prefix .. mid, ARGV[i], 'EX', map_ttl)
  end
end
return (#ARGV - first + 1) / 4
"""
ENQUEUE_CHUNK = 1000  # messages per script call
JOB_FAILURE_TTL = 7 * 24 * 3600


def enqueue_sends(queue, message_ids: list[int], retry: Retry = SEND_RETRY) -> None:
    """One `send_messages` job per `SEND_BATCH` messages (in id order, deterministic ids), in
    one script call per chunk."""
    if not message_ids:
        return
    ids = sorted(message_ids)
    template = queue.create_job(SEND_JOB, args=([0],), job_id=job_id([0]), timeout=SEND_TIMEOUT,
                                retry=retry, result_ttl=0, failure_ttl=JOB_FAILURE_TTL,
                                status=JobStatus.QUEUED)
    template.origin = queue.name
    template.enqueued_at = rq_now()
    fields = {k: v for k, v in template.to_dict().items() if k not in ("data", "description")}
    flat: list = [f for pair in fields.items() for f in pair]
    dumps = template.serializer.dumps
    script = queue.connection.register_script(_ENQUEUE_LUA)
    queue.connection.sadd(queue.redis_queues_keys, queue.key)
    for i in range(0, len(ids), ENQUEUE_CHUNK):
        args: list = [queue.key, Job.redis_job_namespace_prefix, JOB_OF_MESSAGE,
                      JOB_FAILURE_TTL, len(fields), *flat]
        chunk = ids[i:i + ENQUEUE_CHUNK]
        for j in range(0, len(chunk), SEND_BATCH):
            batch = chunk[j:j + SEND_BATCH]
            args += (job_id(batch), zlib.compress(dumps((SEND_JOB, None, (batch,), {}))),
                     f"send messages {batch[0]}..{batch[-1]} ({len(batch)})",
                     ",".join(map(str, batch)))
        script(args=args)


def lock_addresses(session: Session, travellers) -> None:
    """Hold each batch address until commit (PostgreSQL advisory locks, taken in one sorted
    statement, so never in a deadlocking order): two schedulers or lanes that hold different
    orders of the same customer take turns, and the second sees the first one's email when it
    checks the gap between review emails."""
    if session.get_bind().dialect.name != "postgresql" or not travellers:
        return
    keys = sorted({f"{t.shop_id}:{t.email}" for t in travellers})
    # unnest yields the sorted keys in array order, so the locks are taken in that order.
    session.execute(text("SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) "
                         "FROM unnest(CAST(:keys AS text[])) AS k"),
                    {"keys": pg_array(keys)})


def relax_commit(session: Session) -> None:
    """Do not wait for the WAL flush when a tick's batch commits (PostgreSQL). Safe for sending
    once: a send job claims its message with an ordinary commit, which flushes the WAL written
    before it, so no email goes out whose message row a crash could still take back; a crash
    only loses the last batches' moves, and the next tick makes them again."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))


def tick(runtime, now: datetime, batch_size: int = BATCH_SIZE,
         lanes: int | None = None) -> TickResult:
    """Advance everything due at `now`; returns what was done.

    On PostgreSQL the due rows are worked by `LANES` threads at once, each claiming its own
    batches (SKIP LOCKED keeps them apart, as between two scheduler processes): while one waits
    on the database or Redis, another computes."""
    if lanes is None:
        lanes = LANES if runtime.engine.dialect.name == "postgresql" else 1
    results = [TickResult() for _ in range(lanes)]
    if lanes == 1:
        _advance_due(runtime, now, batch_size, results[0])
    else:
        errors: list[BaseException] = []

        def lane(result: TickResult) -> None:
            try:
                _advance_due(runtime, now, batch_size, result)
            except BaseException as exc:  # handed to the calling thread below
                errors.append(exc)

        threads = [threading.Thread(target=lane, args=(r,), name=f"tick-lane-{i}")
                   for i, r in enumerate(results)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    result = TickResult()
    for lane_result in results:
        result.advanced += lane_result.advanced
        result.messages_queued += lane_result.messages_queued
        result.batches += lane_result.batches
    rescue_sending(runtime, now, result)
    requeue_orphans(runtime, now, result)
    with runtime.session_scope() as session:
        result.reviews_credited = attribute_reviews(session, now)
    return result


def _advance_due(runtime, now: datetime, batch_size: int, result: TickResult) -> None:
    """Claim, advance and save due enrollments batch by batch until none is left."""
    queue = runtime.queue("sends")
    mail_from = runtime.config.mail_from
    shops: dict = {}
    blocks: dict = {}
    after = _START
    while True:
        with runtime.session_scope() as session:
            relax_commit(session)
            claimed = claim_due(session, now, batch_size, after)
            if not claimed:
                return
            after = claimed[-1][1], claimed[-1][0]
            ids = [row[0] for row in claimed]
            travellers = load_travellers(session, ids)
            lock_addresses(session, travellers)
            ctx = load_context(session, now, travellers, shops=shops, blocks=blocks)
            shops, blocks = ctx.shops, ctx.blocks
            outcomes = [advance(t, ctx, arriving=False) for t in travellers]
            created = save_outcomes(session, travellers, outcomes, now, mail_from)
        enqueue_sends(queue, created, send_retry(runtime.config))  # after commit: a job never runs before its row exists
        result.batches += 1
        result.advanced += len(ids)
        result.messages_queued += len(created)
        if len(ids) < batch_size:
            return


def _lock(session: Session, query):
    """Lock the selected messages (not the enrollments joined in) and skip those another
    scheduler holds."""
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(of=Message, skip_locked=True)
    return query


def rescue_sending(runtime, now: datetime, result: TickResult) -> None:
    """Resolve messages whose worker died while they were `sending`.

    The choice (at most once): a message never handed to SMTP (`delivery_started_at` unset) is
    queued and sent again; one whose hand-off had started may or may not have reached the
    recipient, so it is NOT sent again: it is marked failed with an error saying the outcome is
    unknown. A customer gets at most one copy of each email, and the record says so when unsure.
    """
    with runtime.session_scope() as session:
        stuck = session.execute(_lock(session, select(
            Message.id, Message.delivery_started_at, Message.shop_id, Message.block_id,
            Enrollment.sequence_id)
            .join(Enrollment, Enrollment.id == Message.enrollment_id)
            .where(Message.state == MessageState.SENDING.value,
                   Message.claimed_at < now - repair_after(runtime.config))
            .order_by(Message.claimed_at).limit(RESCUE_LIMIT))).all()
        if not stuck:
            return
        again = [r.id for r in stuck if r.delivery_started_at is None]
        unknown = [r for r in stuck if r.delivery_started_at is not None]
        if again:
            session.execute(update(Message).where(Message.id.in_(again)).values(
                state=MessageState.QUEUED.value, claimed_at=None,
                error="the worker stopped before handing the email to SMTP; queued again"))
        if unknown:
            session.execute(update(Message).where(Message.id.in_([r.id for r in unknown])).values(
                state=MessageState.FAILED.value,
                error="outcome unknown: the worker stopped while handing the email to SMTP; "
                      "not sent again so the customer never gets two copies"))
            deltas: dict = {}
            for r in unknown:
                key = (r.sequence_id, r.block_id, "failed")
                deltas[key] = deltas.get(key, 0) + 1
            bump(session, deltas)
    enqueue_sends(runtime.queue("sends"), again, send_retry(runtime.config))
    result.resent += len(again)
    result.unknown += len(unknown)


_LIVE_JOB = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}


def requeue_orphans(runtime, now: datetime, result: TickResult) -> None:
    """Enqueue again the queued messages whose job is gone (a scheduler died between commit and
    enqueue, Redis lost its data, or a paused shop's job ended): each message's job is found
    through its `JOB_OF_MESSAGE` key. A job claims only what is still queued, so a spare job does
    no harm."""
    with runtime.session_scope() as session:
        ids = list(session.scalars(
            select(Message.id).where(Message.state == MessageState.QUEUED.value,
                                     Message.queued_at < now - repair_after(runtime.config))
            .order_by(Message.queued_at).limit(RESCUE_LIMIT)))
    if not ids:
        return
    conn = runtime.redis
    jobs = conn.mget([f"{JOB_OF_MESSAGE}{mid}" for mid in ids])
    with conn.pipeline() as pipe:
        for job in jobs:
            pipe.hget(Job.key_for(job.decode() if job else "none"), "status")
        statuses = pipe.execute()
    orphans = [mid for mid, status in zip(ids, statuses, strict=True)
               if status is None or status.decode() not in _LIVE_JOB]
    enqueue_sends(runtime.queue("sends"), orphans, send_retry(runtime.config))
    result.requeued += len(orphans)

