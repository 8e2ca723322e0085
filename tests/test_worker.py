"""`okapp worker` serves its queues in turn, so no queue's backlog starves another."""

from __future__ import annotations

from okapp.jobs.worker import DEQUEUE
from okapp.runtime import current
from tests.engine_support import BurstWorker


def record(name: str) -> None:
    current().redis.rpush("okapp-test:ran", name)


def test_a_backlog_on_one_queue_does_not_starve_the_others(runtime):
    for n in range(4):
        runtime.queue("webhooks").enqueue(record, f"webhook{n}")
    for n in range(2):
        runtime.queue("sends").enqueue(record, f"send{n}")
    queues = [runtime.queue(name) for name in ("webhooks", "sends", "default")]
    BurstWorker(queues, connection=runtime.redis).work(burst=True, dequeue_strategy=DEQUEUE)
    ran = [item.decode() for item in runtime.redis.lrange("okapp-test:ran", 0, -1)]
    assert sorted(ran) == sorted([f"webhook{n}" for n in range(4)] + ["send0", "send1"])
    # The sends are not left until every webhook job is done.
    assert ran.index("send0") < ran.index("webhook2")
