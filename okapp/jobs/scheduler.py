"""`okapp scheduler`: a loop that calls the engine's tick(now).

Any number of these may run at once: the tick claims due rows with row locks and unique keys, so
two loops never advance the same enrollment twice (DESIGN §4, §10).
"""

from __future__ import annotations

import logging
import signal
import threading

from okapp.db import utcnow
from okapp.runtime import Runtime
from okapp.sequences.journal import fold_counters
from okapp.sequences.scheduler import tick

log = logging.getLogger(__name__)


def run_once(runtime: Runtime, now=None):
    return tick(runtime, now or utcnow())


def run_forever(runtime: Runtime, interval: float, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        try:
            result = run_once(runtime)
            if result:
                log.info("tick: %s", result)
        except Exception:  # one bad tick must not end the loop; the next one retries
            log.exception("scheduler tick failed")
        try:
            with runtime.session_scope() as session:
                fold_counters(session)
        except Exception:
            log.exception("folding the block counters failed")
        try:
            # Webhooks stored but never applied (their job was lost with Redis, or the web
            # process could not enqueue it) go back on the queue.
            from okapp.jobs.webhooks import requeue_stale

            requeue_stale(runtime)
        except Exception:
            log.exception("re-queueing unapplied webhooks failed")
        try:
            # Re-read recent orders from Shopify now and then (missed webhooks); once per
            # interval across every scheduler, however many run.
            from okapp.jobs.sync import reconcile_all

            reconcile_all(runtime)
        except Exception:
            log.exception("enqueueing the Shopify reconciliation failed")
        stop.wait(interval)
