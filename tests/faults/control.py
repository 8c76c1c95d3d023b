"""Support for the control-plane fault tests: client load that runs in the background while a
fault is injected, the client contract across a process outage, and recovery stopwatches."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from tests.faults.load import Answer, Record, open_loop
from tests.operator.e2e import wait_for

# What a client of the Elasticsearch API may get besides a result (es-api.md: timeouts, conflicts
# such as "not allocated to any nodes", queue full, unavailable).
ALLOWED = {200, 408, 409, 429, 503}


class BackgroundLoad:
    """Requests at a fixed rate (`load.open_loop`, in one-second windows) from a thread of its own,
    until `stop()`: the test injects a fault meanwhile and reads every answer afterwards.

    Open loop rather than closed: while a process is down a closed loop spins on refused
    connections and takes the CPU the restarting process needs (2 cores, shared)."""

    def __init__(self, url: str, body: Any, rate: float = 20.0, timeout: float = 30.0, window: float = 1.0) -> None:
        self.url, self.body, self.rate, self.timeout, self.window = url, body, rate, timeout, window
        self.record = Record()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-load", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                window = asyncio.run(open_loop(self.url, self.body, rate=self.rate, duration=self.window,
                                               timeout=self.timeout))
                self.record.answers.extend(window.answers)
        except BaseException as err:  # reported by stop(): a broken load generator must fail the test
            self.error = err

    def __enter__(self) -> "BackgroundLoad":
        self._thread.start()
        return self

    def stop(self) -> Record:
        self._stop.set()
        self._thread.join(timeout=self.timeout + self.window + 10)
        assert not self._thread.is_alive(), "the load generator did not stop"
        if self.error is not None:
            raise self.error
        return self.record

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self.stop()

    def flowing(self, timeout: float = 30.0) -> "BackgroundLoad":
        """Wait for the first answered request, so that the fault meets running traffic."""
        wait_for(lambda: self.first_ok_after(0.0) is not None, timeout=timeout, interval=0.05, what="load answered")
        return self

    def first_ok_after(self, since: float) -> float | None:
        """Seconds from `since` until the first 200 answer to a request sent after it."""
        done = [a.sent + a.latency for a in list(self.record.answers) if a.status == 200 and a.sent >= since]
        return min(done) - since if done else None


def prompt_connection_failure(answer: Answer) -> bool:
    """No response, but at once: a refused or reset connection, not a client-side timeout (a hang)."""
    return answer.status is None and answer.failure is not None and "Timeout" not in answer.failure


def contract_problems(record: Record, outages: Iterable[tuple[float, float]] = (),
                      allowed: set[int] = ALLOWED) -> list[str]:
    """`Record.problems`, except during an outage of the process the clients talk to: a request
    that overlaps one (sent before it ended, answered after it began) may get no response, since
    nobody is there to give one, but then it must fail promptly with a connection error."""
    windows = list(outages)
    problems = []
    for answer in record.answers:
        done = answer.sent + answer.latency
        in_outage = any(answer.sent < end and done >= start for start, end in windows)
        if answer.status is None and in_outage:
            if not prompt_connection_failure(answer):
                problems.append(f"a hang, not a connection error, during an outage: {answer.failure} "
                                f"after {answer.latency:.2f}s")
            continue
        problems.extend(Record([answer]).problems(allowed))
    return problems


def stopwatch(predicate: Callable[[], Any], since: float, timeout: float = 120.0, what: str = "") -> float:
    """Wait until `predicate()` holds; seconds from `since` (the fault) until it did."""
    wait_for(predicate, timeout=timeout, interval=0.1, what=what)
    return time.monotonic() - since


def summary(record: Record) -> dict[str, object]:
    """Answer counts by status (None: no response, by failure type) and the distinct Elasticsearch
    errors, for the recovery report."""
    counts: dict[str, int] = {}
    errors: dict[str, int] = {}
    for answer in record.answers:
        key = str(answer.status) if answer.status is not None else f"no response ({answer.failure})"
        counts[key] = counts.get(key, 0) + 1
        if answer.status not in (None, 200) and answer.error_type:
            error = f"{answer.status} {answer.error_type}: {answer.body['error'].get('reason', '')[:100]}"
            errors[error] = errors.get(error, 0) + 1
    return {"requests": len(record.answers), "answers": counts, **({"errors": errors} if errors else {})}


def processes_of(marker: Path) -> dict[int, str]:
    """Our processes that carry `marker` (a data directory) in their command line or environment,
    by pid: how a test proves a stack left nothing behind, and finds what to end if it did."""
    found = {}
    needle = str(marker).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                blob = cmdline + (entry / "environ").read_bytes()
            except OSError:
                continue
            if needle in blob:
                found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found
