"""The scheduler tick: advance every enrollment that is due at `now`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass
class TickResult:
    advanced: int = 0
    messages_queued: int = 0

    def __bool__(self) -> bool:
        return bool(self.advanced or self.messages_queued)


def tick(runtime, now: datetime) -> TickResult:
    """Advance due enrollments. The engine issue implements the block semantics."""
    return TickResult()
