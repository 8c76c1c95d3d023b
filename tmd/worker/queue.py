"""The bounded inference queue between the HTTP layer and the allocation lanes.

One entry per document, as Elasticsearch queues each document of a request separately
(es-api.md §5.2). A request's documents are admitted together or not at all: a request that
would overflow the queue is rejected at once (429) instead of leaving some of its documents
to be computed for nobody. A lane may take several documents at once (dynamic batching);
all but the first of them keep counting against `queue_capacity` until computed, so the
worker holds at most `queue_capacity` + one document per busy lane, batching or not. The queue also carries the lanes' control: a lane asking for work
may instead be told to retire (fewer allocations) or that the worker has drained (shutdown).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from tmd.api.errors import RejectedExecution

QUEUE_FULL = "inference process queue is full. Unable to execute command"
SHUT_DOWN = "inference process worker service has shutdown"

T = TypeVar("T")


class InferenceQueue(Generic[T]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._executing = 0
        self._batches = 0  # batches being computed: each holds `_executing` documents between them
        self._retire = 0  # lanes asked to stop after their current item
        self._accepting = True
        self._draining = False  # stop lanes once the queue is empty

    def offer(self, items: Sequence[T]) -> None:
        """Queue all of `items` or raise RejectedExecution (full, or shutting down)."""
        if not self._accepting:
            raise RejectedExecution(SHUT_DOWN)
        with self._cond:
            # A batch's documents beyond its first still hold their queue slots until computed, so
            # batching never lets more documents in than queue_capacity plus one per busy lane.
            if len(self._items) + self._executing - self._batches + len(items) > self.capacity:
                raise RejectedExecution(QUEUE_FULL)
            self._items.extend(items)
            if len(items) == 1:
                self._cond.notify()
            else:
                self._cond.notify(len(items))

    def take(self) -> T | None:
        """The next item for a lane, or None when the lane must exit (retired or drained)."""
        batch = self.take_batch(1)
        return batch[0] if batch else None

    def take_batch(self, limit: int, delay: float = 0.0) -> list[T] | None:
        """Up to `limit` items for a lane, or None when the lane must exit (retired or drained).

        Blocks for the first item; then takes what is queued, and waits up to `delay` seconds
        for more while fewer than `limit` are held (never while draining, so shutdown is prompt).
        """
        items = self._items
        with self._cond:
            while True:
                if self._retire > 0:
                    self._retire -= 1
                    return None
                if items:
                    break
                if self._draining:
                    return None
                self._cond.wait()
            batch = [items.popleft()]
            deadline = None
            while len(batch) < limit:
                if items:
                    for _ in range(min(limit - len(batch), len(items))):
                        batch.append(items.popleft())
                    continue
                if delay <= 0 or self._draining:
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + delay
                if now >= deadline:
                    break
                self._cond.wait(deadline - now)
            self._executing += len(batch)
            self._batches += 1
            return batch

    def done(self, n: int = 1) -> None:
        """A lane finished the batch of `n` items it took."""
        with self._cond:
            self._executing -= n
            self._batches -= 1

    def retire(self, lanes: int) -> None:
        with self._cond:
            self._retire += lanes
            self._cond.notify_all()

    def unretire(self, lanes: int) -> int:
        """Cancel up to `lanes` pending retirements; returns how many were cancelled."""
        with self._cond:
            cancelled = min(lanes, self._retire)
            self._retire -= cancelled
            return cancelled

    def close_intake(self) -> None:
        """New requests are rejected from now on; safe to call from a signal handler (no lock)."""
        self._accepting = False

    def drain(self) -> None:
        """Let lanes exit once every queued item is done."""
        self._accepting = False
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def queued(self) -> int:
        return len(self._items)

    @property
    def pending(self) -> int:
        """Queued plus being computed: Elasticsearch's number_of_pending_requests."""
        return len(self._items) + self._executing
