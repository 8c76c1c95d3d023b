"""The built-in controllers a bare API server needs: garbage collector (background, foreground, orphan),
namespace lifecycle (delete contents, then the namespace) and CRD cleanup (delete all CRs first).

One synchronous reconciliation pass over all objects, run soon after any deletion starts and
periodically as a safety net; each pass only commits real changes, so passes converge.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

from .errors import StatusError
from .registry import CRD_CLEANUP, CRD_KEY, NS_KEY, Registry, _ready_to_remove
from .meta import now, parse_time, rfc3339
from .store import Change

EVENT_KEY = "/events"
POD_KEY = "/pods"
NODE_KEY = "/nodes"

log = logging.getLogger("tmd.localkube.apiserver.controllers")


class Controllers:
    def __init__(self, registry: Registry, period: float = 1.0, event_ttl: float = 3600.0,
                 settle: float = 0.1) -> None:
        self.registry = registry
        self.period = period
        # A pass reads every object (about 25 ms at 1000 nodes); waiting this long after a kick lets
        # a burst of deletions (`kubectl delete node` of 100 nodes) share passes instead of each
        # deletion paying for its own cascade of them.
        self.settle = settle
        self.event_ttl = event_ttl  # kube-apiserver --event-ttl: events are garbage after an hour
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        registry.on_delete_started = self.kick

    def kick(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop by flag rather than only by cancellation: `wait_for` may swallow a cancel (Python 3.11)."""
        self._stopping = True
        self._wake.set()
        if self._task:
            done, _ = await asyncio.wait([self._task], timeout=2.0)
            if not done:
                self._task.cancel()
                await asyncio.wait([self._task], timeout=2.0)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.period)
            except asyncio.TimeoutError:
                pass
            if self._wake.is_set() and self.settle and not self._stopping:
                await asyncio.sleep(self.settle)
            self._wake.clear()
            if self._stopping:
                return
            for _ in range(20):  # settle cascades quickly, but yield between bursts
                try:
                    changed = self.reconcile()
                except Exception:  # a controller bug must not kill the server
                    log.exception("controller pass failed")
                    changed = False
                if not changed:
                    break
                await asyncio.sleep(0)

    # --- one pass ----------------------------------------------------------------------------

    def reconcile(self) -> bool:
        store = self.registry.store
        changed = False
        dependents: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for res, obj in store.all_objects():
            for ref in obj["metadata"].get("ownerReferences") or []:
                dependents.setdefault(ref.get("uid", ""), []).append((res, obj))
        for res, obj in list(store.all_objects()):
            current = store.get(res, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            if current is None or current["metadata"].get("uid") != obj["metadata"].get("uid"):
                continue
            obj = current
            meta = obj["metadata"]
            if meta.get("deletionTimestamp"):
                fins = meta.get("finalizers") or []
                uid = meta["uid"]
                if "orphan" in fins:
                    changed |= self._orphan(uid, dependents.get(uid, []))
                    changed |= self._drop_finalizer(res, obj, "orphan")
                    continue
                if "foregroundDeletion" in fins:
                    changed |= self._foreground(res, obj, dependents.get(uid, []))
                    continue
                if res == CRD_KEY and CRD_CLEANUP in fins:
                    changed |= self._crd_cleanup(obj)
                    continue
                if res == NS_KEY:
                    changed |= self._namespace_cleanup(obj)
                    continue
                if res == POD_KEY and self._orphaned_terminating_pod(obj):
                    changed |= self._force_delete_pod(obj)
                    continue
            if res == EVENT_KEY and self._expired(meta):
                changed |= self._delete(res, obj, "Background")
                continue
            refs = meta.get("ownerReferences") or []
            if refs and not meta.get("deletionTimestamp") and self._orphaned(obj, refs):
                changed |= self._delete(res, obj, "Background")
        return changed

    def _orphaned_terminating_pod(self, pod: dict[str, Any]) -> bool:
        """podgc: a pod past its grace period on a node that does not exist has no kubelet to finish it."""
        node = (pod.get("spec") or {}).get("nodeName")
        deadline = parse_time(pod["metadata"].get("deletionTimestamp", ""))
        return bool(node) and deadline is not None and now() >= deadline and \
            self.registry.store.get(NODE_KEY, "", node) is None

    def _force_delete_pod(self, pod: dict[str, Any]) -> bool:
        rt = self._rt(POD_KEY)
        meta = pod["metadata"]
        before = self.registry.store.revision
        try:
            self.registry.delete(rt, meta["namespace"], meta["name"],
                                 {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}})
        except StatusError:
            return False
        return self.registry.store.revision != before

    def _expired(self, meta: dict[str, Any]) -> bool:
        created = parse_time(meta.get("creationTimestamp", ""))
        return created is not None and (now() - created).total_seconds() > self.event_ttl

    def _orphaned(self, obj: dict[str, Any], refs: list[dict[str, Any]]) -> bool:
        """True when no owner exists any more (an owner being deleted in foreground still counts)."""
        store = self.registry.store
        for ref in refs:
            owner = store.by_uid(ref.get("uid", ""))
            if owner is not None:
                return False
        return True

    def _rt(self, res: str) -> Any:
        return self.registry.by_key.get(res)

    def _delete(self, res: str, obj: dict[str, Any], policy: str) -> bool:
        rt = self._rt(res)
        if rt is None:
            return False
        meta = obj["metadata"]
        before = self.registry.store.revision
        try:
            self.registry.delete(rt, meta.get("namespace", ""), meta["name"],
                                 {"propagationPolicy": policy, "preconditions": {"uid": meta["uid"]}})
        except StatusError:
            return False
        return self.registry.store.revision != before

    def _drop_finalizer(self, res: str, obj: dict[str, Any], finalizer: str) -> bool:
        new = copy.deepcopy(obj)
        fins = [f for f in new["metadata"].get("finalizers") or [] if f != finalizer]
        if fins:
            new["metadata"]["finalizers"] = fins
        else:
            new["metadata"].pop("finalizers", None)
        return self._write(res, obj, new)

    def _write(self, res: str, old: dict[str, Any], new: dict[str, Any] | None) -> bool:
        meta = old["metadata"]
        ns = meta.get("namespace", "")
        if new is not None and _ready_to_remove(new):
            new = None
        self.registry.store.commit([Change(res, ns, meta["name"], new, old)])
        return True

    def _orphan(self, uid: str, deps: list[tuple[str, dict[str, Any]]]) -> bool:
        changed = False
        store = self.registry.store
        for res, dep in deps:
            cur = store.get(res, dep["metadata"].get("namespace", ""), dep["metadata"]["name"])
            if cur is None:
                continue
            refs = [r for r in cur["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            new = copy.deepcopy(cur)
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            if new != cur:
                changed |= self._write(res, cur, new)
        return changed

    def _foreground(self, res: str, owner: dict[str, Any], deps: list[tuple[str, dict[str, Any]]]) -> bool:
        changed = False
        store = self.registry.store
        blocking = 0
        for dres, dep in deps:
            cur = store.get(dres, dep["metadata"].get("namespace", ""), dep["metadata"]["name"])
            if cur is None:
                continue
            ref = next((r for r in cur["metadata"].get("ownerReferences") or []
                        if r.get("uid") == owner["metadata"]["uid"]), None)
            if ref is None:
                continue
            if ref.get("blockOwnerDeletion"):
                blocking += 1
            if not cur["metadata"].get("deletionTimestamp"):
                changed |= self._delete(dres, cur, "Foreground")
        if blocking == 0:
            changed |= self._drop_finalizer(res, owner, "foregroundDeletion")
        return changed

    def _crd_cleanup(self, crd: dict[str, Any]) -> bool:
        spec = crd.get("spec", {})
        key = f"{spec.get('group', '')}/{spec.get('names', {}).get('plural', '')}"
        store = self.registry.store
        remaining = store.list(key, None)
        changed = False
        conditions = (crd.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Terminating" for c in conditions):
            new = copy.deepcopy(crd)
            new.setdefault("status", {})["conditions"] = conditions + [{
                "type": "Terminating", "status": "True", "lastTransitionTime": rfc3339(now()),
                "reason": "InstanceDeletionInProgress", "message": "CustomResource deletion is in progress"}]
            self._write(CRD_KEY, crd, new)
            crd = new
            changed = True
        for obj in remaining:
            if not obj["metadata"].get("deletionTimestamp"):
                changed |= self._delete(key, obj, "Background")
        if not store.list(key, None):
            changed |= self._drop_finalizer(CRD_KEY, crd, CRD_CLEANUP)
        return changed

    def _namespace_cleanup(self, ns: dict[str, Any]) -> bool:
        name = ns["metadata"]["name"]
        store = self.registry.store
        changed = False
        remaining = 0
        for res, obj in list(store.all_objects()):
            if obj["metadata"].get("namespace") != name or res == NS_KEY:
                continue
            remaining += 1
            if not obj["metadata"].get("deletionTimestamp"):
                changed |= self._delete(res, obj, "Background")
        if remaining == 0:
            if ns["metadata"].get("finalizers"):
                if (ns.get("spec") or {}).get("finalizers"):
                    new = copy.deepcopy(ns)
                    new["spec"]["finalizers"] = []
                    changed |= self._write(NS_KEY, ns, new)
                return changed
            store.commit([Change(NS_KEY, "", name, None, ns)])
            changed = True
        elif (ns.get("status") or {}).get("phase") != "Terminating":
            new = copy.deepcopy(ns)
            new["status"] = {"phase": "Terminating"}
            changed |= self._write(NS_KEY, ns, new)
        return changed
