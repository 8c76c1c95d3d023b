"""Durable storage: SQLite in WAL mode holding objects, the global revision and the event history.

Durability choice: `journal_mode=WAL` + `synchronous=FULL`. Every write request is one transaction
that is committed (WAL fsynced) before the response is sent, so nothing acknowledged is lost even on
power loss; `NORMAL` would only survive process crashes. The WAL keeps the cost to one sequential
fsync per commit. No torn state: a transaction is either fully in the WAL or not at all.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    res TEXT NOT NULL, ns TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (res, ns, name));
CREATE TABLE IF NOT EXISTS events (
    rv INTEGER PRIMARY KEY, res TEXT NOT NULL, ns TEXT NOT NULL, type TEXT NOT NULL,
    body TEXT NOT NULL, prev TEXT);
"""


@dataclass
class Event:
    """One change in the global history: the object after it (before it, for DELETED) and before it."""

    rv: int
    res: str
    ns: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: dict[str, Any]
    prev: dict[str, Any] | None


@dataclass
class Write:
    """A row change within one transaction: `body=None` deletes the row."""

    res: str
    ns: str
    name: str
    body: dict[str, Any] | None


class Database:
    def __init__(self, path: pathlib.Path, synchronous: str = "FULL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.executescript(SCHEMA)
        self._since_prune = 0

    def get_meta(self, key: str, default: str) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def load_objects(self) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
        for res, ns, name, body in self.conn.execute("SELECT res, ns, name, body FROM objects"):
            yield res, ns, name, json.loads(body)

    def load_events(self, after: int) -> Iterator[Event]:
        for rv, res, ns, typ, body, prev in self.conn.execute(
                "SELECT rv, res, ns, type, body, prev FROM events WHERE rv > ? ORDER BY rv", (after,)):
            yield Event(rv, res, ns, typ, json.loads(body), json.loads(prev) if prev else None)

    def commit(self, revision: int, writes: list[Write], events: list[Event], compacted: int) -> None:
        """Apply one transaction; raises (and rolls back) on any error."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for w in writes:
                if w.body is None:
                    c.execute("DELETE FROM objects WHERE res=? AND ns=? AND name=?", (w.res, w.ns, w.name))
                else:
                    c.execute("INSERT OR REPLACE INTO objects (res, ns, name, body) VALUES (?,?,?,?)",
                              (w.res, w.ns, w.name, json.dumps(w.body, separators=(",", ":"))))
            c.executemany("INSERT INTO events (rv, res, ns, type, body, prev) VALUES (?,?,?,?,?,?)", [
                (e.rv, e.res, e.ns, e.type, json.dumps(e.obj, separators=(",", ":")),
                 json.dumps(e.prev, separators=(",", ":")) if e.prev is not None else None) for e in events])
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('revision', ?)", (str(revision),))
            self._since_prune += len(events)
            if self._since_prune >= 500:
                self._since_prune = 0
                c.execute("DELETE FROM events WHERE rv <= ?", (compacted,))
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)", (str(compacted),))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self, compacted: int) -> None:
        self.conn.execute("DELETE FROM events WHERE rv <= ?", (compacted,))
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)", (str(compacted),))
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()
