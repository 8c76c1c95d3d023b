"""The worker's settings, from command-line flags with an environment variable behind each.

Pods configure the worker through environment variables (the operator writes them into the pod
spec); people and tests use flags. A flag given on the command line wins over the environment.
Parsing is a pure function of (flags, environment) so it is tested without starting a process.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from tmd.api.deployment import DEFAULT_MAX_BATCH_DELAY, DEFAULT_MAX_BATCH_SIZE, MAX_BATCH_DELAY_S, MAX_BATCH_SIZE
from tmd.api.errors import ElasticsearchError
from tmd.api.units import ByteSize, parse_byte_size, parse_time_value

DEFAULT_QUEUE_CAPACITY = 1024  # es-api.md §11
MAX_QUEUE_CAPACITY = 1_000_000

# flag destination -> environment variable(s), first set one wins
ENV_VARS: dict[str, tuple[str, ...]] = {
    "model_dir": ("TMD_MODEL_DIR",),
    "host": ("TMD_HOST", "POD_IP"),
    "port": ("TMD_PORT",),
    "allocations": ("TMD_ALLOCATIONS",),
    "threads": ("TMD_THREADS",),
    "queue_capacity": ("TMD_QUEUE_CAPACITY",),
    "cache_size": ("TMD_CACHE_SIZE",),
    "low_priority": ("TMD_LOW_PRIORITY",),
    "deployment_id": ("TMD_DEPLOYMENT_ID",),
    "max_batch_size": ("TMD_MAX_BATCH_SIZE",),
    "max_batch_delay": ("TMD_MAX_BATCH_DELAY",),
}


class SettingsError(Exception):
    """A setting the user gave is missing or invalid; the message is shown as is."""


@dataclass(frozen=True)
class WorkerSettings:
    model_dir: str
    host: str = "127.0.0.1"
    port: int = 8080
    allocations: int = 1
    threads: int = 1
    queue_capacity: int = DEFAULT_QUEUE_CAPACITY
    cache_size: ByteSize | None = None  # None: the model file's size (known after loading)
    low_priority: bool = False
    deployment_id: str | None = None  # None: the model id
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_batch_delay: str = DEFAULT_MAX_BATCH_DELAY  # an Elasticsearch time value, e.g. 2ms

    @property
    def max_batch_delay_s(self) -> float:
        return parse_time_value(self.max_batch_delay, "max_batch_delay").seconds or 0.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags default to None so `resolve_settings` can tell "not given" from a value."""
    env = lambda dest: " or ".join(ENV_VARS[dest])  # noqa: E731
    parser.add_argument("--model-dir", help=f"directory with config.json, vocabulary.json, model.pt (env {env('model_dir')})")
    parser.add_argument("--host", help=f"address to listen on (env {env('host')}; default 127.0.0.1)")
    parser.add_argument("--port", help=f"port to listen on (env {env('port')}; default 8080)")
    parser.add_argument("--allocations", help=f"number of allocations: parallel inference lanes (env {env('allocations')}; default 1)")
    parser.add_argument("--threads", help=f"threads per allocation (env {env('threads')}; default 1)")
    parser.add_argument("--queue-capacity", help=f"requests that may wait for a lane (env {env('queue_capacity')}; default 1024)")
    parser.add_argument("--cache-size", help=f"inference cache size, e.g. 10kb; 0 disables (env {env('cache_size')}; default: model size)")
    parser.add_argument("--low-priority", action="store_const", const="true", default=None,
                        help=f"run at lower CPU priority (env {env('low_priority')})")
    parser.add_argument("--deployment-id", help=f"deployment id reported in stats (env {env('deployment_id')}; default: model id)")
    parser.add_argument("--max-batch-size", help=f"most documents in one forward pass; 1 turns dynamic batching off "
                        f"(env {env('max_batch_size')}; default {DEFAULT_MAX_BATCH_SIZE})")
    parser.add_argument("--max-batch-delay", help=f"longest a lane waits for more documents once it holds one, e.g. 2ms "
                        f"(env {env('max_batch_delay')}; default {DEFAULT_MAX_BATCH_DELAY}: take what is queued)")


def _raw(args: argparse.Namespace, env: Mapping[str, str], dest: str) -> str | None:
    value = getattr(args, dest, None)
    if value is not None:
        return str(value)
    for name in ENV_VARS[dest]:
        if env.get(name, "") != "":
            return env[name]
    return None


def _int(text: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"[{name}] must be an integer, got [{text}]") from None
    if not lo <= value <= hi:
        raise SettingsError(f"[{name}] must be between {lo} and {hi}, got [{value}]")
    return value


def _bool(text: str | None, name: str) -> bool:
    if text is None:
        return False
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"[{name}] must be true or false, got [{text}]")


def resolve_settings(args: argparse.Namespace, env: Mapping[str, str]) -> WorkerSettings:
    """Merge flags over environment variables and check every value."""
    model_dir = _raw(args, env, "model_dir")
    if not model_dir:
        raise SettingsError("the model directory is required: pass --model-dir or set TMD_MODEL_DIR")
    cache_text = _raw(args, env, "cache_size")
    cache_size = None
    if cache_text is not None:
        try:
            cache_size = parse_byte_size(cache_text, "cache_size")
        except ElasticsearchError as err:
            raise SettingsError(err.reason) from None
    delay_text = _raw(args, env, "max_batch_delay") or DEFAULT_MAX_BATCH_DELAY
    try:
        delay = parse_time_value(delay_text, "max_batch_delay")
    except ElasticsearchError as err:
        raise SettingsError(err.reason) from None
    if delay.seconds is None or not 0 <= delay.seconds <= MAX_BATCH_DELAY_S:
        raise SettingsError(f"[max_batch_delay] must be between 0ms and {int(MAX_BATCH_DELAY_S * 1000)}ms, got [{delay_text}]")
    return WorkerSettings(
        model_dir=model_dir,
        host=_raw(args, env, "host") or "127.0.0.1",
        port=_int(_raw(args, env, "port"), "port", 8080, 0, 65535),
        allocations=_int(_raw(args, env, "allocations"), "number_of_allocations", 1, 1, 1 << 16),
        threads=_int(_raw(args, env, "threads"), "threads_per_allocation", 1, 1, 1024),
        queue_capacity=_int(_raw(args, env, "queue_capacity"), "queue_capacity", DEFAULT_QUEUE_CAPACITY, 1, MAX_QUEUE_CAPACITY),
        cache_size=cache_size,
        low_priority=_bool(_raw(args, env, "low_priority"), "low_priority"),
        deployment_id=_raw(args, env, "deployment_id"),
        max_batch_size=_int(_raw(args, env, "max_batch_size"), "max_batch_size", DEFAULT_MAX_BATCH_SIZE, 1, MAX_BATCH_SIZE),
        max_batch_delay=delay.text,
    )
