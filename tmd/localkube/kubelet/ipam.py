"""Loopback pod IPs, unique across the whole cluster and persisted across restarts.

Linux routes all of 127.0.0.0/8 to `lo`, so every pod can bind its own address without setup.
By default pods get 127.0.0.2, 127.0.0.3, …; a cluster may be given its own subnet (tests do, so
that clusters running side by side on one machine never hand out the same address). Assignments
live in one JSON file guarded by `fcntl.flock`, so kubelets in one process or in several agree,
and a restarted cluster gives a pod back the address it had (the file's subnet wins on restart).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

DEFAULT_SUBNET = "127.0.0.0/8"


def next_free(taken: set[str], subnet: str = DEFAULT_SUBNET) -> str:
    """Lowest free address of the subnet from its .2 (.1 is the host's: API server, node address),
    skipping .0 and .255 in every /24 for readability."""
    network = ipaddress.IPv4Network(subnet)
    return _next_from(taken, network, network.network_address + 2)[0]


def _next_from(taken: set[str], network: ipaddress.IPv4Network,
               cursor: ipaddress.IPv4Address) -> tuple[str, ipaddress.IPv4Address]:
    """`next_free` from a cursor, returning the cursor for the next call (linear for a batch)."""
    last = network.broadcast_address - 1
    while cursor <= last:
        if int(cursor) & 0xFF not in (0, 255) and str(cursor) not in taken:
            return str(cursor), cursor + 1
        cursor += 1
    raise RuntimeError(f"no addresses left in pod subnet {network}")


class IPAM:
    def __init__(self, path: Path, subnet: str = DEFAULT_SUBNET) -> None:
        network = ipaddress.IPv4Network(subnet)
        if not network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise ValueError(f"pod subnet {subnet} is not a loopback subnet (127.0.0.0/8)")
        self.path = Path(path)
        self.subnet = str(network)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(self.path.read_text()) if self.path.exists() else {"subnet": self.subnet, "assignments": {}}
                before = json.dumps(state, sort_keys=True)
                yield state
                if json.dumps(state, sort_keys=True) != before or not self.path.exists():
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def assign(self, pod_uid: str) -> str:
        """The pod's address: the one it already has, else the lowest free one."""
        with self._locked() as state:
            assignments = state["assignments"]
            if pod_uid not in assignments:
                assignments[pod_uid] = next_free(set(assignments.values()), state["subnet"])
            return assignments[pod_uid]

    def assign_many(self, pod_uids: list[str]) -> dict[str, str]:
        """`assign` for many pods under one lock and one write (simulated nodes start hundreds at once).
        Pods left out of the answer got no address: the subnet is full."""
        with self._locked() as state:
            assignments = state["assignments"]
            taken = set(assignments.values())
            network = ipaddress.IPv4Network(state["subnet"])
            cursor = network.network_address + 2
            for uid in pod_uids:
                if uid not in assignments:
                    try:
                        ip, cursor = _next_from(taken, network, cursor)
                    except RuntimeError:
                        break
                    assignments[uid] = ip
                    taken.add(ip)
            return {uid: assignments[uid] for uid in pod_uids if uid in assignments}

    def release_many(self, pod_uids: list[str]) -> None:
        with self._locked() as state:
            for uid in pod_uids:
                state["assignments"].pop(uid, None)

    def release(self, pod_uid: str) -> None:
        with self._locked() as state:
            state["assignments"].pop(pod_uid, None)

    def assignments(self) -> dict[str, str]:
        with self._locked() as state:
            return dict(state["assignments"])
