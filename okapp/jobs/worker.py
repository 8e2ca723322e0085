"""`okapp worker`: an RQ worker over okapp's queues.

A SimpleWorker runs each job in this process instead of forking a child per job: a fork costs
about 0.4 s per email here, and a forked child would inherit the parent's pooled database
connections. Job timeouts still apply (RQ's SIGALRM death penalty), and a worker that dies is
covered by the scheduler's repairs (`okapp.sequences.scheduler`).

Queues are taken round-robin, not by priority: a backlog of webhooks must not starve the sends,
nor a burst of sends the webhooks (the soak showed sends stalled behind webhook drains).
"""

from __future__ import annotations

from rq import SimpleWorker
from rq.worker import DequeueStrategy

from okapp.queues import QUEUE_NAMES
from okapp.runtime import Runtime

DEQUEUE = DequeueStrategy.ROUND_ROBIN


def run_worker(runtime: Runtime, queue_names: list[str] | None = None, burst: bool = False) -> bool:
    names = queue_names or list(QUEUE_NAMES)
    unknown = set(names) - set(QUEUE_NAMES)
    if unknown:
        raise ValueError(f"unknown queues {sorted(unknown)}; queues are {', '.join(QUEUE_NAMES)}")
    queues = [runtime.queue(name) for name in names]
    worker = SimpleWorker(queues, connection=runtime.redis)
    return worker.work(burst=burst, with_scheduler=True,
                       dequeue_strategy=DEQUEUE)
