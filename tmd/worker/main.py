"""`tmd worker`: serve one deployment's inference on one node.

Start order: parse settings (bad ones: message and exit 2), lower CPU priority if asked,
start HTTP at once (so `/healthz` answers while a large model loads), load and warm up the
model on a background thread, then report ready. A model directory that cannot be served
ends the process with its reason on stderr and exit status 1. SIGTERM/SIGINT: new requests
get 429, queued documents are finished and answered, then the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from tmd.worker import settings as settings_mod
from tmd.worker.settings import SettingsError, WorkerSettings, resolve_settings

# torch, uvicorn and the app are imported in `run`, after the settings are checked, so a
# mistake on the command line is answered at once instead of after seconds of imports.

log = logging.getLogger("tmd.worker")

LOW_PRIORITY_NICENESS = 5  # what ml-cpp's CProcessPriority::reduceCpuPriority adds (nice(5))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings_mod.add_arguments(parser)


class KeyValueFormatter(logging.Formatter):
    """One structured line per event: ts=... level=... logger=... msg="..."."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line = f'ts={ts} level={record.levelname.lower()} logger={record.name} msg="{record.getMessage()}"'
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("uvicorn.access").disabled = True


def _server(config: Any, state: Any) -> Any:
    """uvicorn's server, closing intake before its own graceful shutdown begins."""
    import uvicorn

    class WorkerServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Runs in the signal handler: only flag flips here, no locks.
            state.stopping = True
            if state.engine is not None:
                state.engine.close_intake()
            super().handle_exit(sig, frame)

    return WorkerServer(config)


def _load(state: Any, server: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Load and warm up the model (background thread); publish the engine, or stop the server."""
    import torch

    from tmd.api.units import ByteSize
    from tmd.worker.batching import probe
    from tmd.worker.engine import InferenceEngine
    from tmd.worker.model import ModelLoadError, load_model_dir, warm_up

    s = state.settings
    try:
        loaded = load_model_dir(s.model_dir)
        torch.set_num_threads(s.threads)
        sample = warm_up(loaded)
    except ModelLoadError as err:
        state.failure = str(err)
        loop.call_soon_threadsafe(setattr, server, "should_exit", True)
        return
    cache = s.cache_size if s.cache_size is not None else ByteSize.of_bytes(loaded.model_bytes)
    # Probed even with batching off (three passes of the warm-up document): `POST /batching` may
    # turn it on later, and then knows how.
    plan = probe(loaded.model, getattr(loaded.pipeline, "collate", None), sample)
    log.info("batching mode=%s trim=%s: %s", plan.mode, plan.trim, plan.reason)
    engine = InferenceEngine(loaded.model, loaded.pipeline, allocations=s.allocations, threads=s.threads,
                             queue_capacity=s.queue_capacity, cache_bytes=cache.bytes,
                             max_batch_size=s.max_batch_size, max_batch_delay=s.max_batch_delay_s, plan=plan)
    state.model_id = loaded.model_id
    if not s.deployment_id:
        state.deployment_id = loaded.model_id
    state.cache_size_text = cache.text
    if state.stopping:  # SIGTERM while loading
        engine.close_intake()
    state.engine = engine
    log.info("ready model_id=%s deployment_id=%s task=%s allocations=%d threads=%d queue_capacity=%d cache_size=%s "
             "max_batch_size=%d max_batch_delay=%s", state.model_id, state.deployment_id, loaded.pipeline.task,
             s.allocations, s.threads, s.queue_capacity, cache.text, s.max_batch_size, s.max_batch_delay)


async def _serve(state: Any, server: Any) -> None:
    loop = asyncio.get_running_loop()
    threading.Thread(target=_load, args=(state, server, loop), name="model-loader", daemon=True).start()
    await server.serve()
    if state.engine is not None:
        state.engine.drain()


def _lower_priority() -> int:
    return os.nice(LOW_PRIORITY_NICENESS)


def run(args: argparse.Namespace) -> int:
    """In a pod the model comes by URI (tmd.worker.fetch) into a scratch directory removed at exit."""
    from tmd.worker.fetch import FetchError, model_dir_from_env, remove_model_dir

    try:
        fetched = None if args.model_dir else model_dir_from_env(os.environ)
    except FetchError as err:
        print(f"tmd worker: error: {err}", file=sys.stderr)
        return 1
    if fetched is None:
        return _run(args)
    args.model_dir = str(fetched)
    try:
        return _run(args)
    finally:
        remove_model_dir(fetched)


def _run(args: argparse.Namespace) -> int:
    try:
        s: WorkerSettings = resolve_settings(args, os.environ)
    except SettingsError as err:
        print(f"tmd worker: error: {err}", file=sys.stderr)
        return 2
    if not os.path.isdir(s.model_dir):  # the commonest mistake: say so before binding a port
        print(f"tmd worker: error: model directory not found: {s.model_dir}", file=sys.stderr)
        return 1
    configure_logging()
    import torch
    import uvicorn

    from tmd.worker.app import WorkerState, create_app

    torch.set_num_interop_threads(1)  # lanes are our inter-op parallelism
    torch.set_num_threads(s.threads)
    if s.low_priority:
        log.info("low priority: nice value now %d", _lower_priority())
    state = WorkerState(settings=s, deployment_id=s.deployment_id or os.path.basename(os.path.normpath(s.model_dir)),
                        cache_size_text=s.cache_size.text if s.cache_size is not None else "")
    config = uvicorn.Config(create_app(state), host=s.host, port=s.port, loop="uvloop", http="httptools",
                            lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=None)
    server = _server(config, state)
    # uvicorn re-raises the stop signal after its graceful shutdown; these make that a no-op,
    # so a drained worker exits 0 instead of dying of the re-raised signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        import uvloop

        uvloop.run(_serve(state, server))
    except OSError as err:  # e.g. address already in use
        print(f"tmd worker: error: cannot serve on {s.host}:{s.port}: {err}", file=sys.stderr)
        return 1
    if state.failure:
        print(f"tmd worker: error: {state.failure}", file=sys.stderr)
        return 1
    if not server.started:
        print(f"tmd worker: error: could not serve on {s.host}:{s.port}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0
