"""Loopback pod IPs (127.0.0.N), unique across the whole cluster and persisted across restarts.

Linux routes all of 127.0.0.0/8 to `lo`, so every pod can bind its own address without setup.
Assignments live in one JSON file guarded by `fcntl.flock`, so kubelets in one process or in
several agree, and a restarted cluster gives a pod back the address it had.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

FIRST = ipaddress.IPv4Address("127.0.0.2")  # 127.0.0.1 stays the host's (API server, node address)
LAST = ipaddress.IPv4Address("127.255.255.254")


def next_free(taken: set[str]) -> str:
    """Lowest address from FIRST that is free, skipping .0 and .255 in every /24 for readability."""
    ip = FIRST
    while ip <= LAST:
        last_octet = int(ip) & 0xFF
        if last_octet not in (0, 255) and str(ip) not in taken:
            return str(ip)
        ip += 1
    raise RuntimeError("no loopback addresses left")


class IPAM:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, str]]:
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                assignments = json.loads(self.path.read_text()) if self.path.exists() else {}
                before = dict(assignments)
                yield assignments
                if assignments != before:
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(assignments, indent=1, sort_keys=True))
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def assign(self, pod_uid: str) -> str:
        """The pod's address: the one it already has, else the lowest free one."""
        with self._locked() as assignments:
            if pod_uid not in assignments:
                assignments[pod_uid] = next_free(set(assignments.values()))
            return assignments[pod_uid]

    def release(self, pod_uid: str) -> None:
        with self._locked() as assignments:
            assignments.pop(pod_uid, None)

    def assignments(self) -> dict[str, str]:
        with self._locked() as assignments:
            return dict(assignments)
