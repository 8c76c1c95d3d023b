"""The in-memory view of all objects, kept in step with the database, and the watch fan-out.

Mutations run synchronously on the event loop thread: a transaction is assigned revisions and applied
to memory at once, so every later request sees it. Durability is a group commit: a flusher writes all
pending transactions to SQLite in one transaction (one fsync) on a worker thread while the loop keeps
serving, then fans the events out to watchers. Nothing is answered or delivered before it is durable:
handlers await `durable()` before responding, and watchers only receive flushed events.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import pathlib
from typing import Any, Callable, Iterable

from .storage import Database, Event, Write

Key = tuple[str, str]  # (namespace, name)
log = logging.getLogger("tmd.localkube.apiserver.store")


class StorageFailure(Exception):
    """The database refused a commit; the in-memory state was reloaded from disk."""


class Watcher:
    """A subscription to one storage key; events are queued for its HTTP stream."""

    def __init__(self, res: str, namespace: str | None, start_rv: int) -> None:
        self.res = res
        self.namespace = namespace
        self.start_rv = start_rv  # events up to here come from the snapshot or the replay
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def offer(self, event: Event) -> None:
        if event.rv > self.start_rv and (self.namespace is None or event.ns == self.namespace):
            self.queue.put_nowait(event)

    def close(self) -> None:
        self.queue.put_nowait(None)


class Change:
    """A pending change inside a transaction."""

    def __init__(self, res: str, ns: str, name: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        self.res, self.ns, self.name, self.new, self.old = res, ns, name, new, old


class Store:
    def __init__(self, data_dir: pathlib.Path, history_size: int, synchronous: str = "FULL") -> None:
        self.db = Database(data_dir / "localkube.sqlite3", synchronous)
        self.history_size = history_size
        self._load()
        self.watchers: dict[str, set[Watcher]] = collections.defaultdict(set)
        #: called synchronously after each transaction is applied, before watchers see its events
        self.hooks: list[Callable[[list[Event]], None]] = []
        self._pending_writes: list[Write] = []
        self._pending_events: list[Event] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="localkube-sqlite")

    def _load(self) -> None:
        self.objects: dict[str, dict[Key, dict[str, Any]]] = collections.defaultdict(dict)
        self.uids: dict[str, tuple[str, str, str]] = {}
        self.revision = int(self.db.get_meta("revision", "0"))
        self.compacted = int(self.db.get_meta("compacted", "0"))
        for res, ns, name, body in self.db.load_objects():
            self.objects[res][(ns, name)] = body
            uid = body.get("metadata", {}).get("uid")
            if uid:
                self.uids[uid] = (res, ns, name)
        self.history: collections.deque[Event] = collections.deque(self.db.load_events(self.compacted))
        self._trim()
        self.durable_revision = self.revision

    # --- reads -------------------------------------------------------------------------------

    def get(self, res: str, ns: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(res, {}).get((ns, name))

    def list(self, res: str, ns: str | None) -> list[dict[str, Any]]:
        items = self.objects.get(res, {})
        if ns is None:
            objs = list(items.values())
        else:
            objs = [o for (n, _), o in items.items() if n == ns]
        objs.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return objs

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        loc = self.uids.get(uid)
        return self.get(*loc) if loc else None

    def all_objects(self) -> Iterable[tuple[str, dict[str, Any]]]:
        for res, items in list(self.objects.items()):
            for obj in list(items.values()):
                yield res, obj

    # --- writes ------------------------------------------------------------------------------

    def commit(self, changes: list[Change]) -> list[Event]:
        """Assign revisions and apply; the flusher persists and fans out. Sets each `new`'s resourceVersion."""
        if not changes:
            return []
        rev = self.revision
        writes: list[Write] = []
        events: list[Event] = []
        for ch in changes:
            rev += 1
            if ch.new is not None:
                ch.new["metadata"]["resourceVersion"] = str(rev)
                writes.append(Write(ch.res, ch.ns, ch.name, ch.new))
                events.append(Event(rev, ch.res, ch.ns, "ADDED" if ch.old is None else "MODIFIED", ch.new, ch.old))
            else:
                assert ch.old is not None
                gone = dict(ch.old)
                gone["metadata"] = dict(ch.old["metadata"], resourceVersion=str(rev))
                writes.append(Write(ch.res, ch.ns, ch.name, None))
                events.append(Event(rev, ch.res, ch.ns, "DELETED", gone, ch.old))
        compacted = max(self.compacted, rev - self.history_size)
        self.revision = rev
        for ch in changes:
            table = self.objects[ch.res]
            if ch.new is not None:
                table[(ch.ns, ch.name)] = ch.new
                self.uids[ch.new["metadata"]["uid"]] = (ch.res, ch.ns, ch.name)
            else:
                table.pop((ch.ns, ch.name), None)
                self.uids.pop(ch.old["metadata"].get("uid", ""), None)  # type: ignore[index]
        self.history.extend(events)
        self.compacted = compacted
        self._trim()
        for hook in self.hooks:
            hook(events)
        self._pending_writes += writes
        self._pending_events += events
        self._schedule_flush()
        return events

    # --- durability --------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (offline use): flush inline
            self._flush_now()
            return
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_loop())

    def _flush_now(self) -> None:
        writes, events = self._pending_writes, self._pending_events
        self._pending_writes, self._pending_events = [], []
        if events:
            self.db.commit(events[-1].rv, writes, events, self.compacted)
            self._delivered(events)

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending_events:
            writes, events = self._pending_writes, self._pending_events
            self._pending_writes, self._pending_events = [], []
            try:
                await loop.run_in_executor(self._executor, self.db.commit, events[-1].rv, writes, events,
                                           self.compacted)
            except Exception as e:  # disk full, I/O error: what is not on disk never happened
                log.error("storage commit failed, reloading state from disk: %s", e)
                self._pending_writes, self._pending_events = [], []
                failed, self._waiters = self._waiters, []
                self._load()
                for _, fut in failed:
                    if not fut.done():
                        fut.set_exception(StorageFailure(str(e)))
                for hook in self.hooks:
                    hook([])
                return
            self._delivered(events)

    def _delivered(self, events: list[Event]) -> None:
        rev = events[-1].rv
        self.durable_revision = rev
        for ev in events:
            for w in list(self.watchers.get(ev.res, ())):
                w.offer(ev)
        keep = []
        for want, fut in self._waiters:
            if want <= rev:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((want, fut))
        self._waiters = keep

    async def durable(self) -> None:
        """Wait until everything applied so far is on disk (raises StorageFailure if it never will be)."""
        want = self.revision
        if want <= self.durable_revision:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((want, fut))
        await fut

    async def drain(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])

    def _trim(self) -> None:
        while self.history and self.history[0].rv <= self.compacted:
            self.history.popleft()

    # --- watch -------------------------------------------------------------------------------

    def subscribe(self, res: str, ns: str | None) -> Watcher:
        w = Watcher(res, ns, self.revision)
        self.watchers[res].add(w)
        return w

    def unsubscribe(self, w: Watcher) -> None:
        self.watchers[w.res].discard(w)

    def events_since(self, res: str, ns: str | None, rv: int) -> list[Event] | None:
        """Events after `rv` for a key, or None when `rv` is older than the kept history."""
        if rv < self.compacted:
            return None
        return [e for e in self.history if e.rv > rv and e.res == res and (ns is None or e.ns == ns)]

    def close(self) -> None:
        for ws in self.watchers.values():
            for w in list(ws):
                w.close()
        self._flush_now()
        self.db.close(self.compacted)
        self._executor.shutdown(wait=True)
