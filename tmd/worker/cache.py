"""The inference cache: model outputs keyed by the prepared (tokenized) input, bounded in bytes.

Elasticsearch keeps this cache inside the native process (es-api.md §5.5); here it sits in front
of the model in the same process. It stores the raw model output, not the rendered result, so
a hit still goes through the task's postprocessing with the new request's text (two texts that
tokenize alike share an entry, and the answer is rendered for the text that was sent).

Eviction is LRU. Elasticsearch uses an LFU cache; es-api.md §11 leaves the choice to us. LRU
needs no frequency aging (an LFU without aging keeps yesterday's popular inputs forever), every
operation is O(1) on an OrderedDict under one short lock, and for search-time traffic, where
repeats cluster in time, it holds the entries that are about to be asked for again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import torch

# Bookkeeping per entry (dict slot, key object, tensor headers): charged so a cache of many
# tiny outputs is still bounded by its nominal size.
ENTRY_OVERHEAD_BYTES = 128


def output_nbytes(output: Any) -> int:
    """Bytes held by a model output: a tensor, or a tuple/list/dict of them."""
    if isinstance(output, torch.Tensor):
        return output.element_size() * output.nelement()
    if isinstance(output, (tuple, list)):
        return sum(output_nbytes(item) for item in output)
    if isinstance(output, dict):
        return sum(output_nbytes(item) for item in output.values())
    return 0


class InferenceCache:
    """A thread-safe LRU map from cache key to model output, at most `capacity_bytes` in total."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = max(0, int(capacity_bytes))
        self._entries: OrderedDict[bytes, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    def get(self, key: bytes) -> Any | None:
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: bytes, output: Any) -> bool:
        """Store an output; False when it alone is larger than the whole cache."""
        size = output_nbytes(output) + len(key) + ENTRY_OVERHEAD_BYTES
        if not self.enabled or size > self.capacity_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (output, size)
            self._bytes += size
            while self._bytes > self.capacity_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def used_bytes(self) -> int:
        return self._bytes
