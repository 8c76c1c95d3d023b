"""Client load for fault tests: every request's answer is recorded, so a test can prove that
each one got a response (a result or an Elasticsearch error) rather than a hang or a drop.

aiohttp rather than httpx: one event loop keeps hundreds of requests in flight on 2 cores
without a thread per connection, and its per-request cost leaves CPU to the servers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Answer:
    """What one request got: an HTTP status and body, or the exception that replaced them."""

    sent: float  # monotonic time the request was sent
    latency: float  # seconds until the answer (or the failure)
    status: int | None  # None when no HTTP response came back
    body: Any = None  # parsed JSON body, or the raw text when it was not JSON
    failure: str | None = None  # exception type name when no response came back

    @property
    def error_type(self) -> str | None:
        """The Elasticsearch error type of a non-200 answer (None when the body is not one)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("type")
        return None


@dataclass
class Record:
    """All answers of a load run, in the order they came back."""

    answers: list[Answer] = field(default_factory=list)

    def statuses(self) -> Counter[int | None]:
        return Counter(a.status for a in self.answers)

    def unanswered(self) -> list[Answer]:
        return [a for a in self.answers if a.status is None]

    def between(self, start: float, end: float) -> "Record":
        return Record([a for a in self.answers if start <= a.sent < end])

    def latencies(self, status: int = 200) -> list[float]:
        return sorted(a.latency for a in self.answers if a.status == status)

    def percentile(self, q: float, status: int = 200) -> float | None:
        values = self.latencies(status)
        return values[min(len(values) - 1, int(q * len(values)))] if values else None

    def problems(self, allowed: set[int]) -> list[str]:
        """Answers that break the contract: no response, a status outside `allowed`, or an
        error status whose body is not an Elasticsearch error."""
        out = []
        for a in self.answers:
            if a.status is None:
                out.append(f"no response ({a.failure}) after {a.latency:.2f}s")
            elif a.status not in allowed:
                out.append(f"status {a.status}: {str(a.body)[:200]}")
            elif a.status != 200 and (a.error_type is None or "reason" not in a.body["error"]
                                      or a.body.get("status") != a.status):
                out.append(f"status {a.status} without an Elasticsearch error body: {str(a.body)[:200]}")
        return out

    def summary(self) -> str:
        p50, p99 = self.percentile(0.5), self.percentile(0.99)
        fmt = lambda v: "-" if v is None else f"{v * 1000:.0f} ms"  # noqa: E731
        return (f"{len(self.answers)} requests: {dict(sorted(self.statuses().items(), key=str))}; "
                f"200s p50 {fmt(p50)} p99 {fmt(p99)}")


async def _one(session: aiohttp.ClientSession, url: str, body: Any, timeout: float) -> Answer:
    sent = time.monotonic()
    try:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            raw = await response.read()
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            return Answer(sent, time.monotonic() - sent, response.status, parsed)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
        return Answer(sent, time.monotonic() - sent, None, None, type(err).__name__)


async def closed_loop(url: str, body: Any, *, clients: int, duration: float, timeout: float = 30.0,
                      stop: asyncio.Event | None = None, record: Record | None = None,
                      headers: dict[str, str] | None = None) -> Record:
    """`clients` loops, each sending its next request when the previous one is answered, for
    `duration` seconds (or until `stop` is set). `record` may be read while the load runs."""
    record = record if record is not None else Record()
    deadline = time.monotonic() + duration
    stop = stop or asyncio.Event()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def loop() -> None:
            while time.monotonic() < deadline and not stop.is_set():
                record.answers.append(await _one(session, url, body, timeout))
        await asyncio.gather(*(loop() for _ in range(clients)))
    return record


async def open_loop(url: str, body: Any, *, rate: float, duration: float, timeout: float = 30.0,
                    max_in_flight: int = 2000, headers: dict[str, str] | None = None) -> Record:
    """Requests sent at a fixed `rate` per second for `duration` seconds whatever the answers
    (no coordinated omission: a slow server does not slow the arrivals). Bounded by
    `max_in_flight` open requests so an unanswering server cannot exhaust the client."""
    record = Record()
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    start = time.monotonic()
    count = int(rate * duration)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        tasks = []
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(_one(session, url, body, timeout)))
            tasks[-1].add_done_callback(lambda t: record.answers.append(t.result()))
        await asyncio.gather(*tasks)
    return record
