"""What every process needs, built once from a Config: engine, sessions, Redis, queues.

The Flask app keeps one in `app.extensions["okapp"]`; workers and the scheduler build their own
with `Runtime.from_env()`. Nothing here imports Flask.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import redis
from rq import Queue
from sqlalchemy.orm import Session, sessionmaker

from okapp import crypto, queues
from okapp.config import Config
from okapp.db import make_engine, make_session_factory, session_scope

if TYPE_CHECKING:
    from okapp.shopify.intake import DeliveryStore


class Runtime:
    def __init__(self, config: Config):
        self.config = config
        crypto.configure(config.secret_key)
        config.instance_path.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(config.database_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)

    @classmethod
    def from_env(cls) -> Runtime:
        return cls(Config.from_env())

    @cached_property
    def redis(self) -> redis.Redis:
        return queues.connect(self.config.redis_url, self.config.instance_path)

    @cached_property
    def deliveries(self) -> DeliveryStore:
        """Webhook intake's own connections (okapp.shopify.intake)."""
        from okapp.shopify.intake import DeliveryStore  # okapp.shopify imports this module

        return DeliveryStore(self.config.database_url)

    def queue(self, name: str = "default") -> Queue:
        return queues.queue(self.redis, name)

    def session_scope(self, hold_connection: bool = False):
        return session_scope(self.sessions, hold_connection)

    def dispose(self) -> None:
        if "deliveries" in self.__dict__:
            self.deliveries.close()
        self.engine.dispose()


_current: Runtime | None = None


def current() -> Runtime:
    """The process's runtime: RQ jobs call this, since they run outside any Flask app."""
    global _current
    if _current is None:
        _current = Runtime.from_env()
    return _current


def set_current(runtime: Runtime | None) -> None:
    global _current
    _current = runtime
