"""The in-memory view of all objects, kept in step with the database, and the watch fan-out.

All mutations run synchronously on the event loop thread: a transaction is assigned revisions,
committed to SQLite, applied to memory and then fanned out to watchers, with no `await` in between,
so watchers see every committed change exactly once and in revision order.
"""

from __future__ import annotations

import asyncio
import collections
import pathlib
from typing import Any, Callable, Iterable

from .storage import Database, Event, Write

Key = tuple[str, str]  # (namespace, name)


class Watcher:
    """A subscription to one storage key; events are queued for its HTTP stream."""

    def __init__(self, res: str, namespace: str | None) -> None:
        self.res = res
        self.namespace = namespace
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def offer(self, event: Event) -> None:
        if self.namespace is None or event.ns == self.namespace:
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
        self.watchers: dict[str, set[Watcher]] = collections.defaultdict(set)
        #: called synchronously after each commit, before watchers see the events
        self.hooks: list[Callable[[list[Event]], None]] = []

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
        """Assign revisions, persist, apply and fan out. Each change's `new` gets its resourceVersion."""
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
        self.db.commit(rev, writes, events, compacted)
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
        for ev in events:
            for w in list(self.watchers.get(ev.res, ())):
                w.offer(ev)
        return events

    def _trim(self) -> None:
        while self.history and self.history[0].rv <= self.compacted:
            self.history.popleft()

    # --- watch -------------------------------------------------------------------------------

    def subscribe(self, res: str, ns: str | None) -> Watcher:
        w = Watcher(res, ns)
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
        self.db.close(self.compacted)
