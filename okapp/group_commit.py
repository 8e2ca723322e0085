"""Group commit: threads that want to write at the same moment share one statement.

A web worker answering a burst of webhooks has several threads each wanting one INSERT. Written
one by one, every delivery pays a pool checkout, a statement and a commit, and the server pays a
commit per row. With `GroupCommit` the first thread to arrive writes; the threads that arrive
while it writes queue up, and when it is done the first of them writes the whole queue in one go.
Nobody waits for more than the write in progress and its own, and a quiet moment costs nothing
extra: a thread alone writes at once.

Every thread gets its own item's outcome, or the exception of the write its item was in (that
write stored nothing, being one statement), so each caller can answer as if it had written alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class _Entry:
    __slots__ = ("item", "outcome", "error", "leads", "ready")

    def __init__(self, item):
        self.item = item
        self.outcome = None
        self.error: BaseException | None = None
        self.leads = False
        # Released when this entry's write is done, or when it is this entry's turn to write.
        self.ready = threading.Lock()
        self.ready.acquire()


class GroupCommit(Generic[Item, Outcome]):
    """`submit(item)` from any thread; `write(items)` runs with up to `max_batch` items at a time
    and returns one outcome per item, in order."""

    def __init__(self, write: Callable[[list[Item]], Sequence[Outcome]], max_batch: int = 64):
        self._write = write
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Entry] = []
        self._writing = False

    def submit(self, item: Item) -> Outcome:
        entry = _Entry(item)
        with self._lock:
            self._queue.append(entry)
            leads = not self._writing
            self._writing = True
        if not leads:
            entry.ready.acquire()
            if not entry.leads:
                return _outcome(entry)
        self._write_queue_head()
        return _outcome(entry)

    def _write_queue_head(self) -> None:
        """Run by the leader, whose entry is first in the queue: write the head of the queue,
        wake its entries, then hand the lead to the next waiting entry (or put it down)."""
        with self._lock:
            batch = self._queue[:self.max_batch]
            del self._queue[:self.max_batch]
        try:
            outcomes = self._write([entry.item for entry in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"write returned {len(outcomes)} outcomes for "
                                   f"{len(batch)} items")
            for entry, outcome in zip(batch, outcomes, strict=True):
                entry.outcome = outcome
        except BaseException as exc:  # every waiter must hear of it, or it would wait forever
            for entry in batch:
                entry.error = exc
        finally:
            for entry in batch[1:]:
                entry.ready.release()
            with self._lock:
                if self._queue:
                    following = self._queue[0]
                    following.leads = True
                    following.ready.release()
                else:
                    self._writing = False


def _outcome(entry: _Entry):
    if entry.error is not None:
        raise entry.error
    return entry.outcome
