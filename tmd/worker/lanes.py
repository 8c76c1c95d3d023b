"""Allocation lanes: `number_of_allocations` threads that each run one inference at a time.

All lanes share the one TorchScript module. TorchScript releases the GIL while the graph
runs, so lanes compute in parallel (benchmarks/worker_throughput.py measures it). Each lane
calls `torch.set_num_threads(threads)` on its own thread: with torch's OpenMP backend that
sets the calling thread's OpenMP team size (`omp_set_num_threads` is per thread; checked:
a thread's setting leaves the main thread's unchanged) and the default for threads started
later, so every lane runs its intra-op work on `threads` threads. The number of lanes changes live: new
lanes start at once; surplus lanes leave after the batch they are computing, so no request
is dropped. A lane takes up to `max_batch_size` documents at a time (dynamic batching,
tmd.worker.batching), waiting at most `max_batch_delay` seconds for more; both change live.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import torch

from tmd.worker.queue import InferenceQueue

log = logging.getLogger("tmd.worker.lanes")
T = TypeVar("T")


class AllocationLanes(Generic[T]):
    def __init__(self, queue: InferenceQueue[T], work: Callable[[list[T]], None], *, threads: int,
                 max_batch_size: int = 1, max_batch_delay: float = 0.0) -> None:
        self._queue = queue
        self._work = work
        self.threads_per_allocation = threads
        self.max_batch_size = max_batch_size
        self.max_batch_delay = max_batch_delay
        self._target = 0
        self._lanes: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._exited = threading.Condition(self._lock)
        self._serial = 0

    @property
    def number_of_allocations(self) -> int:
        return self._target

    def set_allocations(self, n: int) -> None:
        if n < 1:
            raise ValueError("number_of_allocations must be at least 1")
        with self._lock:
            delta = n - self._target
            self._target = n
            if delta > 0:
                delta -= self._queue.unretire(delta)  # lanes about to retire stay instead
                for _ in range(delta):
                    self._start_lane()
            elif delta < 0:
                self._queue.retire(-delta)
        log.info("number_of_allocations=%d threads_per_allocation=%d", n, self.threads_per_allocation)

    def _start_lane(self) -> None:
        self._serial += 1
        lane = threading.Thread(target=self._run, name=f"allocation-{self._serial}", daemon=True)
        self._lanes.add(lane)
        lane.start()

    def _run(self) -> None:
        torch.set_num_threads(self.threads_per_allocation)
        try:
            while (batch := self._queue.take_batch(self.max_batch_size, self.max_batch_delay)) is not None:
                try:
                    self._work(batch)
                except BaseException:  # the work function answers its own errors; never lose a lane
                    log.exception("inference lane failed on a batch")
                finally:
                    self._queue.done(len(batch))
        finally:
            with self._lock:
                self._lanes.discard(threading.current_thread())
                self._exited.notify_all()

    def live_lanes(self) -> int:
        with self._lock:
            return len(self._lanes)

    def wait_for_surplus_to_leave(self, timeout: float) -> bool:
        """Block until no more lanes run than the target (each leaves after its current batch)."""
        with self._exited:
            return self._exited.wait_for(lambda: len(self._lanes) <= self._target, timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for every lane to exit (after `InferenceQueue.drain`)."""
        with self._lock:
            lanes = list(self._lanes)
        for lane in lanes:
            lane.join(timeout)
