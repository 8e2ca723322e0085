"""What a bench needs around it: a PostgreSQL database and a Redis db of its own, migrated, and
removed again afterwards (built on bench/scheduler.py's helpers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.scheduler import drop_database, make_database, take_redis_db
from okapp import migrate
from okapp.config import Config
from okapp.runtime import Runtime, set_current


@contextmanager
def bench_runtime(keep: bool = False) -> Iterator[Runtime]:
    """A migrated Runtime on a new database; the database is dropped unless `keep`."""
    admin_url, url = make_database()
    redis_url, lock, lock_key = take_redis_db()
    runtime = None
    try:
        runtime = Runtime(Config(env="test", database_url=url, redis_url=redis_url,
                                 secret_key="bench-" + "x" * 40,
                                 instance_path=Path("/tmp") / f"okapp-bench-{os.getpid()}"))
        set_current(runtime)
        runtime.redis.flushdb()
        migrate.upgrade(runtime.engine)
        yield runtime
    finally:
        if runtime is not None:
            runtime.redis.flushdb()
            runtime.dispose()
        lock.delete(lock_key)
        if not keep:
            drop_database(admin_url, url)
