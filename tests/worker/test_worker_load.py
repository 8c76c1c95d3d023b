"""The worker under load: a full queue, timeouts, live allocation changes, SIGTERM draining.

Every request must get an answer (200, 429 or 408), none hangs or is lost, and the worker's
counters must add up to what the clients saw.
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from tests.worker.conftest import Worker, spawn_worker, start_all, write_slow_model
from tmd.tinymodels import text_embedding

QUEUE_FULL = "inference process queue is full. Unable to execute command"


@pytest.fixture(scope="module")
def slow_dir(tmp_path_factory):
    return write_slow_model(tmp_path_factory.mktemp("slow") / "model", seconds=0.2)


@pytest.fixture(scope="module")
def slow(workers, slow_dir) -> Worker:
    return start_all(workers, [(slow_dir, ("--queue-capacity", "2", "--cache-size", "0", "--max-batch-size", "8"), None)])[0]


@pytest.fixture(scope="module")
def slow_batching(workers, slow_dir) -> Worker:
    """Batches of up to 4, gathered for up to 30 ms: a burst is computed a few documents per pass."""
    args = ("--queue-capacity", "8", "--cache-size", "0", "--max-batch-size", "4", "--max-batch-delay", "30ms")
    return start_all(workers, [(slow_dir, args, None)])[0]


@pytest.fixture(scope="module")
def fast(workers, tmp_path_factory) -> Worker:
    model_dir = text_embedding(dim=32).write(tmp_path_factory.mktemp("fast") / "model")
    return start_all(workers, [(model_dir, ("--queue-capacity", "10000", "--cache-size", "0"), None)])[0]


async def burst(url: str, bodies: list[dict], params: dict | None = None) -> list[httpx.Response]:
    """Send every body at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:
        return await asyncio.gather(*(client.post("/infer", json=b, params=params) for b in bodies))


def counters(worker: Worker) -> dict[str, int]:
    node = worker.stats()["node"]
    return {k: node.get(k, 0) for k in ("inference_count", "rejected_execution_count", "timeout_count", "error_count")}


def test_full_queue_rejects_the_rest(slow) -> None:
    before = counters(slow)
    responses = asyncio.run(burst(slow.url, [{"docs": [{"input": f"words {i}"}]} for i in range(50)]))
    statuses = [r.status_code for r in responses]
    ok = [r for r in responses if r.status_code == 200]
    rejected = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(rejected) == 50, sorted(set(statuses))
    assert ok and rejected
    for r in ok:
        assert r.json() == {"inference_results": [{"predicted_value": [[1.0, 1.0]]}]}
    for r in rejected:
        assert r.json()["error"]["type"] == "es_rejected_execution_exception"
        assert r.json()["error"]["reason"] == QUEUE_FULL and r.json()["status"] == 429
    after = counters(slow)
    assert after["inference_count"] - before["inference_count"] == len(ok)
    assert after["rejected_execution_count"] - before["rejected_execution_count"] == len(rejected)
    assert after["timeout_count"] == before["timeout_count"] and slow.stats()["node"]["number_of_pending_requests"] == 0


def test_timeouts_answer_408_and_queued_ones_are_skipped(slow) -> None:
    before = counters(slow)

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=slow.url, timeout=60.0) as client:
            busy = asyncio.create_task(client.post("/infer", json={"docs": [{"input": "busy"}]}))
            await asyncio.sleep(0.05)  # the lane is now computing "busy" for ~200 ms
            by_query = client.post("/infer", params={"timeout": "20ms"}, json={"docs": [{"input": "late"}]})
            by_body = client.post("/infer", json={"docs": [{"input": "later"}], "timeout": "30ms"})
            return [await busy, *await asyncio.gather(by_query, by_body)]

    busy, by_query, by_body = asyncio.run(scenario())
    assert busy.status_code == 200
    for r, given in ((by_query, "20ms"), (by_body, "30ms")):
        assert r.status_code == 408, r.text
        assert r.json()["error"] == {**r.json()["error"], "type": "status_exception",
                                     "reason": f"timeout [{given}] waiting for inference result"}
    time.sleep(0.5)  # let the lane reach (and skip) the abandoned documents
    after = counters(slow)
    assert after["timeout_count"] - before["timeout_count"] == 2
    assert after["inference_count"] - before["inference_count"] == 1  # the timed-out ones never ran
    assert slow.stats()["node"]["number_of_pending_requests"] == 0


def test_burst_with_batching_answers_every_request_and_counters_add_up(slow_batching) -> None:
    """200, 408 and 429 together under one burst: every document is counted exactly once."""
    before = counters(slow_batching)
    bodies = [{"docs": [{"input": f"words {i}"}, {"input": "more words"}], "timeout": "450ms"} for i in range(30)]
    responses = asyncio.run(burst(slow_batching.url, bodies))
    by_status: dict[int, int] = {}
    for r in responses:
        by_status[r.status_code] = by_status.get(r.status_code, 0) + 1
        if r.status_code == 200:
            assert r.json() == {"inference_results": [{"predicted_value": [[1.0, 1.0]]}] * 2}
        elif r.status_code == 429:
            assert r.json()["error"]["reason"] == QUEUE_FULL
        else:
            assert r.status_code == 408 and r.json()["error"]["reason"] == "timeout [450ms] waiting for inference result"
    assert set(by_status) <= {200, 408, 429} and by_status.get(200) and by_status.get(429), by_status
    time.sleep(1.0)  # let the lane reach (and skip) any abandoned documents
    after = counters(slow_batching)
    delta = {k: after[k] - before[k] for k in after}
    assert delta["rejected_execution_count"] == 2 * by_status.get(429, 0)
    # a request that timed out counts as timeouts the documents still without a result (one may have
    # finished in an earlier batch); so every document is counted exactly once
    assert 2 * by_status[200] <= delta["inference_count"] <= 2 * (by_status[200] + by_status.get(408, 0))
    assert delta["inference_count"] + delta["rejected_execution_count"] + delta["timeout_count"] == 2 * len(bodies)
    node = slow_batching.stats()["node"]
    assert node["number_of_pending_requests"] == 0 and node["average_batch_size"] > 1.0


def test_live_allocation_change_under_load(fast) -> None:
    before = counters(fast)
    plan = [3, 1, 4, 2, 1, 2]

    async def scenario() -> tuple[list[int], list[dict]]:
        statuses: list[int] = []
        stop = asyncio.Event()

        async def client_loop(client: httpx.AsyncClient, n: int) -> None:
            i = 0
            while not stop.is_set():
                r = await client.post("/infer", json={"docs": [{"input": f"client {n} request {i}"}, {"input": "two"}]})
                statuses.append(r.status_code)
                i += 1

        async with httpx.AsyncClient(base_url=fast.url, timeout=60.0) as client:
            loops = [asyncio.create_task(client_loop(client, n)) for n in range(8)]
            answers = []
            for n in plan:
                await asyncio.sleep(0.25)
                r = await client.post("/allocations", json={"number_of_allocations": n})
                answers.append(r.json())
            await asyncio.sleep(0.25)
            stop.set()
            await asyncio.gather(*loops)
        return statuses, answers

    statuses, answers = asyncio.run(scenario())
    assert [a["number_of_allocations"] for a in answers] == plan
    assert statuses and set(statuses) == {200}
    after = counters(fast)
    assert after["inference_count"] - before["inference_count"] == 2 * len(statuses)
    assert after["rejected_execution_count"] == before["rejected_execution_count"]
    assert fast.stats()["node"]["number_of_allocations"] == plan[-1]


@pytest.mark.slow
@pytest.mark.parametrize("batching", [("--max-batch-size", "1"), ("--max-batch-size", "4", "--max-batch-delay", "300ms")],
                         ids=["unbatched", "batched"])
def test_sigterm_finishes_queued_requests_and_exits_zero(slow_dir, batching) -> None:
    """With batching, SIGTERM lands while the lane is gathering its batch: nothing queued is lost."""
    worker = spawn_worker(slow_dir, "--queue-capacity", "4", "--cache-size", "0", *batching)
    try:
        worker.wait_ready()

        async def scenario() -> tuple[list[httpx.Response], list[object]]:
            async with httpx.AsyncClient(base_url=worker.url, timeout=60.0) as client:
                inflight = [asyncio.create_task(client.post("/infer", json={"docs": [{"input": f"doc {i}"}]}))
                            for i in range(4)]
                for _ in range(100):  # until all four are queued or computing
                    await asyncio.sleep(0.02)
                    if (await client.get("/stats")).json()["node"].get("number_of_pending_requests") == 4:
                        break
                worker.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.05)
                late: list[object] = []
                try:
                    async with httpx.AsyncClient(base_url=worker.url, timeout=10.0) as other:
                        late.append(await other.post("/infer", json={"docs": [{"input": "late"}]}))
                except httpx.TransportError as err:  # the listener is already closed
                    late.append(err)
                return list(await asyncio.gather(*inflight)), late

        done, late = asyncio.run(scenario())
        assert [r.status_code for r in done] == [200] * 4
        for answer in late:
            if isinstance(answer, httpx.Response):
                assert answer.status_code == 429
                assert answer.json()["error"]["reason"] == "inference process worker service has shutdown"
        assert worker.proc.wait(30) == 0, worker.log()
        assert "Traceback" not in worker.log()
    finally:
        worker.stop()
        worker.log_path.unlink(missing_ok=True)
