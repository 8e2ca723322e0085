"""`okapp worker`: an RQ worker over okapp's queues."""

from __future__ import annotations

from rq import Worker

from okapp.queues import QUEUE_NAMES
from okapp.runtime import Runtime


def run_worker(runtime: Runtime, queue_names: list[str] | None = None, burst: bool = False) -> bool:
    names = queue_names or list(QUEUE_NAMES)
    unknown = set(names) - set(QUEUE_NAMES)
    if unknown:
        raise ValueError(f"unknown queues {sorted(unknown)}; queues are {', '.join(QUEUE_NAMES)}")
    queues = [runtime.queue(name) for name in names]
    worker = Worker(queues, connection=runtime.redis)
    return worker.work(burst=burst, with_scheduler=True)
