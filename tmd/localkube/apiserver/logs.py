"""`pods/log`: container output served from the files the kubelet writes (text/plain)."""

from __future__ import annotations

import asyncio
import pathlib

from aiohttp import web

from . import errors as E
from .kinds import ResourceType
from .registry import Registry


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def log_path(data_dir: pathlib.Path, ns: str, pod: str, container: str, previous: bool) -> pathlib.Path:
    """Where the kubelet writes container output: `<data_dir>/pods/<ns>/<pod>/<container>[.previous].log`."""
    return data_dir / "pods" / ns / pod / (f"{container}.previous.log" if previous else f"{container}.log")


def _read_tail(path: pathlib.Path, tail: int | None) -> bytes:
    if not path.exists():
        return b""
    data = path.read_bytes()
    if tail is None or tail < 0:
        return data
    if tail == 0:
        return b""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-tail:])


async def serve_log(request: web.Request, registry: Registry, data_dir: pathlib.Path, rt: ResourceType, ns: str,
                    name: str) -> web.StreamResponse:
    """GET pods/{name}/log: the file the kubelet writes, optionally tailed and followed."""
    pod = registry.get(rt, ns, name)
    q = request.query
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    init = [c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]
    container = q.get("container")
    if not container:
        if len(containers) != 1:
            raise E.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                f"[{' '.join(containers)}]" + (f" or one of the init containers: "
                                                               f"[{' '.join(init)}]" if init else ""))
        container = containers[0]
    elif container not in containers + init:
        raise E.bad_request(f"container {container} is not valid for pod {name}")
    path = log_path(data_dir, ns, name, container, _flag(q.get("previous")))
    tail = int(q["tailLines"]) if q.get("tailLines", "").lstrip("-").isdigit() else None
    data = _read_tail(path, tail)
    if not _flag(q.get("follow")):
        return web.Response(body=data, content_type="text/plain")
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    await resp.write(data)
    offset = path.stat().st_size if path.exists() else 0
    try:
        while True:
            pod_now = registry.store.get(rt.key, ns, name)
            if pod_now is None or pod_now["metadata"].get("uid") != pod["metadata"].get("uid"):
                break
            if path.exists():
                size = path.stat().st_size
                if size < offset:
                    offset = 0
                if size > offset:
                    with path.open("rb") as f:
                        f.seek(offset)
                        chunk = f.read(size - offset)
                    offset = size
                    await resp.write(chunk)
            phase = (pod_now.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                break
            await asyncio.sleep(0.2)
    except (ConnectionResetError, asyncio.CancelledError):
        return resp
    await resp.write_eof()
    return resp
