"""The watch stream (`?watch=true`): newline-delimited JSON events over a chunked 200 response.

Semantics follow the apiserver cacher: replay from a resourceVersion out of the event history (in-stream
410 Expired when it is older than the history), synthetic ADDED for the current state otherwise,
`sendInitialEvents` with the initial-events-end BOOKMARK, periodic BOOKMARKs, `timeoutSeconds`, and
selector-aware ADDED/DELETED when an object starts or stops matching.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

from aiohttp import web

from . import errors as E, tables
from .kinds import ResourceType
from .registry import Registry
from .storage import Event

JSON = "application/json"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def wants_table(accept: str) -> bool:
    for part in accept.split(","):
        params = [p.strip() for p in part.split(";")]
        if "as=Table" in params and any(p == "g=meta.k8s.io" for p in params):
            return True
    return False


async def serve_watch(request: web.Request, registry: Registry, rt: ResourceType, ns: str | None,
                      match: Callable[[dict[str, Any]], bool], bookmark_interval: float,
                      streams: set[asyncio.Task[Any]]) -> web.StreamResponse:
    """A watch stream: initial state or replay from a revision, then live events, bookmarks, timeout.

    Subscribing and taking the snapshot happen in one synchronous step, so no event falls between.
    """
    q = request.query
    filtered = bool(q.get("labelSelector") or q.get("fieldSelector"))
    store = registry.store
    bookmarks = _flag(q.get("allowWatchBookmarks"))
    send_initial = _flag(q.get("sendInitialEvents"))
    table = wants_table(request.headers.get("Accept", ""))
    include = q.get("includeObject", "Metadata")
    timeout = q.get("timeoutSeconds")
    deadline = time.monotonic() + float(timeout) if timeout and timeout.isdigit() else None
    rv_param = q.get("resourceVersion", "")
    if send_initial and q.get("resourceVersionMatch") != "NotOlderThan":
        raise E.invalid("ListOptions", "meta.k8s.io", "", [E.FieldError(
            "Forbidden", "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to "
            "NotOlderThan")])
    scope = ns if rt.namespaced else None
    # Subscribe and snapshot in one synchronous step: no event can fall between them.
    watcher = store.subscribe(rt.key, scope)
    initial: list[dict[str, Any]] = []
    replay: list[Event] | None = []
    too_old = None
    if send_initial or rv_param in ("", "0"):
        initial = [o for o in store.list(rt.key, scope) if match(o)]
    else:
        try:
            since = int(rv_param)
        except ValueError:
            store.unsubscribe(watcher)
            raise E.bad_request(f'invalid resource version "{rv_param}"')
        replay = store.events_since(rt.key, scope, since)
        if replay is None:
            too_old = (since, store.compacted + 1)
    snapshot_rv = store.revision
    resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
    resp.enable_chunked_encoding()
    first_table = [True]

    def frame(typ: str, obj: dict[str, Any]) -> bytes:
        if table and typ != "BOOKMARK" and typ != "ERROR":
            obj = tables.table(rt, [obj], obj["metadata"].get("resourceVersion"), include,
                               with_columns=first_table[0])
            first_table[0] = False
        return dumps({"type": typ, "object": obj}) + b"\n"

    def bookmark(rv: int, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return dumps({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version,
                                                     "metadata": meta}}) + b"\n"

    def convert(ev: Event) -> bytes | None:
        obj = registry.render(rt, ev.obj)
        if not filtered:
            return frame(ev.type, obj)
        now_m = ev.type != "DELETED" and match(ev.obj)
        was_m = ev.prev is not None and match(ev.prev)
        if ev.type == "DELETED":
            return frame("DELETED", obj) if was_m else None
        if now_m and was_m:
            return frame("MODIFIED", obj)
        if now_m:
            return frame("ADDED", obj)
        if was_m:
            gone = dict(registry.render(rt, ev.prev))  # type: ignore[arg-type]
            gone["metadata"] = dict(gone["metadata"], resourceVersion=str(ev.rv))
            return frame("DELETED", gone)
        return None

    task = asyncio.current_task()
    if task:
        streams.add(task)
    try:
        await store.durable()  # the snapshot/replay may include changes still being flushed
        await resp.prepare(request)
        if too_old is not None:
            err = E.gone(f"too old resource version: {too_old[0]} ({too_old[1]})")
            await resp.write(dumps({"type": "ERROR", "object": err.status()}) + b"\n")
            return resp
        chunk = b"".join(frame("ADDED", registry.render(rt, o)) for o in initial)
        if send_initial:
            chunk += bookmark(snapshot_rv, True)
        for ev in replay or []:
            line = convert(ev)
            if line:
                chunk += line
        if chunk:
            await resp.write(chunk)
        last_bookmark = time.monotonic()
        while True:
            wait = bookmark_interval - (time.monotonic() - last_bookmark) if bookmarks else None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    if bookmarks:  # let the client resume from the newest revision
                        await resp.write(bookmark(store.revision))
                    break
                wait = left if wait is None else min(wait, left)
            try:
                ev = await asyncio.wait_for(watcher.queue.get(), wait) if wait is not None \
                    else await watcher.queue.get()
            except asyncio.TimeoutError:
                if bookmarks and time.monotonic() - last_bookmark >= bookmark_interval - 0.001:
                    await resp.write(bookmark(store.revision))
                    last_bookmark = time.monotonic()
                continue
            if ev is None:  # server stopping
                break
            out = [ev]
            while not watcher.queue.empty():
                nxt = watcher.queue.get_nowait()
                if nxt is None:
                    watcher.queue.put_nowait(None)
                    break
                out.append(nxt)
            data = b"".join(x for x in (convert(e) for e in out) if x)
            if data:
                await resp.write(data)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        store.unsubscribe(watcher)
        if task:
            streams.discard(task)
    try:
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass
    return resp

