"""Fixed-window submission limits kept in Redis, so every web process shares the same counts.

The review page is public: a leaked link or a script must not be able to fill the database or the
disk. Each submission counts against its link and against the client's address.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    window_seconds: int


PER_LINK = Limit("review-link", max_hits=20, window_seconds=3600)
PER_ADDRESS = Limit("review-address", max_hits=60, window_seconds=3600)


def _key(limit: Limit, subject: str, window: int) -> str:
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]  # tokens are long; keys stay short
    return f"okapp:ratelimit:{limit.name}:{digest}:{window}"


def hit(conn: redis.Redis, limit: Limit, subject: str, now_ts: float) -> int:
    """Count one hit; returns 0 when allowed, else the seconds until the window resets."""
    window = int(now_ts) // limit.window_seconds
    key = _key(limit, subject, window)
    pipe = conn.pipeline()
    pipe.incr(key)
    pipe.expire(key, limit.window_seconds + 60)
    count, _ = pipe.execute()
    if count <= limit.max_hits:
        return 0
    return max(1, (window + 1) * limit.window_seconds - int(now_ts))


def check_all(conn: redis.Redis, hits: list[tuple[Limit, str]], now_ts: float) -> int:
    """Count a hit against every (limit, subject); the longest wait if any is exceeded."""
    return max((hit(conn, limit, subject, now_ts) for limit, subject in hits), default=0)
