"""One pod on one node: its loopback IP, its container processes, probes, restarts, resize,
graceful deletion and the status it reports. Side effects go through the owning `Kubelet`; the
decisions are in the pure modules (status, backoff, env, probes, resources)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import APIError
from .env import EnvError, PodContext, container_argv, container_env
from .probes import run_container_probes, run_probe
from .process import ContainerProcess, ProcessIdentity, exit_code_of
from .resources import pod_requests, qos_class, resize_blocker
from .status import Condition, ContainerRecord, PodView, Terminated, exit_reason, now_rfc3339, pod_phase, pod_status

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger("tmd.localkube.kubelet")

DEFAULT_GRACE = 30.0
ENV_RETRY = 2.0


@dataclass
class Slot:
    """The kubelet's view of one container of the pod."""

    spec: dict[str, Any]
    record: ContainerRecord
    init: bool = False
    process: ContainerProcess | None = None
    crashes: int = 0
    restart_at: float | None = None  # loop time after which a pending restart may happen
    ran_since: float = 0.0  # loop time the current run started
    probe_task: asyncio.Task[None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    stopping: bool = False  # the kubelet is stopping it: its exit is no crash
    kill_message: str | None = None  # why the kubelet killed it (liveness, startup, resize)
    retry_at: float | None = None  # CreateContainerConfigError retry
    shutdown_stopped: bool = False  # stopped by a clean localkube stop: run again on the next start

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def completed(self) -> bool:
        t = self.record.terminated
        return self.record.state == "terminated" and t is not None and t.exit_code == 0 and self.restart_at is None

    def persist(self) -> dict[str, Any]:
        r = self.record
        return {
            "restart_count": r.restart_count,
            "crashes": self.crashes,
            "state": r.state,
            "started_at": r.started_at,
            "container_id": r.container_id,
            "terminated": r.terminated.to_dict() if r.terminated else None,
            "last_terminated": r.last_terminated.to_dict() if r.last_terminated else None,
            "resources": r.resources,
            "pid": self.process.identity.pid if self.process else None,
            "ticks": self.process.identity.ticks if self.process else None,
            "shutdown_stopped": self.shutdown_stopped,
        }


def _container_id(uid: str, name: str, restart_count: int, pid: int) -> str:
    return "localkube://" + hashlib.sha256(f"{uid}/{name}/{restart_count}/{pid}".encode()).hexdigest()


class PodWorker:
    def __init__(self, kubelet: "Kubelet", pod: dict[str, Any]) -> None:
        self.kubelet = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta.get("namespace", "default")
        self.name: str = meta["name"]
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.pod_ip: str | None = None
        self.start_time: str | None = None
        self.init_slots: list[Slot] = []
        self.slots: list[Slot] = []
        self.init_failed = False
        self.terminal_phase: str | None = None  # set when the pod finished or was terminated
        self.resize: Condition | None = None
        self.last_status: dict[str, Any] | None = None
        self.is_gone = False
        self.finished = False
        self.task: asyncio.Task[None] | None = None

    # ---- paths and persistence -------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.kubelet.state_dir / "pods" / f"{self.uid}.json"

    @property
    def log_dir(self) -> Path:
        return self.kubelet.data_dir / "pods" / self.namespace / self.name

    def log_path(self, container: str, previous: bool = False) -> Path:
        return self.log_dir / (f"{container}.previous.log" if previous else f"{container}.log")

    def save(self) -> None:
        state = {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "pod_ip": self.pod_ip,
            "start_time": self.start_time,
            "init_failed": self.init_failed,
            "terminal_phase": self.terminal_phase,
            "init": {s.name: s.persist() for s in self.init_slots},
            "containers": {s.name: s.persist() for s in self.slots},
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_path)

    @property
    def spec(self) -> dict[str, Any]:
        return self.pod.get("spec") or {}

    @property
    def restart_policy(self) -> str:
        return self.spec.get("restartPolicy", "Always")

    @property
    def grace(self) -> float:
        meta_grace = (self.pod.get("metadata") or {}).get("deletionGracePeriodSeconds")
        if meta_grace is not None:
            return float(meta_grace)
        return float(self.spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))

    # ---- entry points from the kubelet -----------------------------------------------------
    def start(self) -> None:
        self.task = self.loop.create_task(self.run(), name=f"pod {self.namespace}/{self.name}")

    def update(self, pod: dict[str, Any]) -> None:
        if (pod.get("metadata") or {}).get("uid") != self.uid:
            return
        self.pod = pod
        spec = pod.get("spec") or {}
        for slots, key in ((self.init_slots, "initContainers"), (self.slots, "containers")):
            latest = {c.get("name"): c for c in spec.get(key) or []}
            for slot in slots:  # only resources may change in place (pods/resize)
                slot.spec = latest.get(slot.name, slot.spec)
        self.wake.set()

    def gone(self) -> None:
        """The pod left this node without our final DELETE (force-deleted, or unbound)."""
        self.is_gone = True
        self.wake.set()

    async def shutdown(self, grace_cap: float) -> None:
        """A clean localkube stop: stop the processes, remember to run them again on the next start."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        running = [s for s in self.init_slots + self.slots if s.process is not None]
        for slot in running:
            slot.stopping = True
            slot.shutdown_stopped = True
        await asyncio.gather(*(self._stop_slot(s, min(self.grace, grace_cap)) for s in running))
        if self.state_path.exists() or running:
            self.save()

    def detach(self) -> None:
        """Forget the processes without stopping them (what a crash of localkube leaves behind)."""
        if self.task is not None:
            self.task.cancel()
        for slot in self.init_slots + self.slots:
            if slot.probe_task is not None:
                slot.probe_task.cancel()
            if slot.process is not None:
                slot.process.detach(self.loop)

    # ---- main loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            self.setup()
            while not self.finished:
                try:
                    await self.sync()
                except APIError as error:
                    if error.status == 404:
                        self.gone()
                    else:
                        log.warning("pod %s/%s: %s", self.namespace, self.name, error)
                        await asyncio.sleep(1.0)
                except (OSError, asyncio.TimeoutError) as error:  # API server unreachable (e.g. restarting): retry
                    log.warning("pod %s/%s: %s", self.namespace, self.name, error)
                    await asyncio.sleep(1.0)
                except Exception:  # a bug must not silently orphan the pod's processes: log, retry
                    log.exception("pod %s/%s: sync failed", self.namespace, self.name)
                    await asyncio.sleep(1.0)
                if self.finished:
                    break
                timeout = self.next_timer()
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
                self.wake.clear()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod worker %s/%s crashed", self.namespace, self.name)
            raise
        finally:
            if self.finished:
                self.kubelet.forget(self)

    def next_timer(self) -> float | None:
        deadlines = [t for s in self.init_slots + self.slots for t in (s.restart_at, s.retry_at) if t is not None]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - self.loop.time())

    def setup(self) -> None:
        """Allocate the IP and rebuild the containers' state: fresh, or from a previous localkube run
        (adopting processes that are still alive, and accounting for those that died meanwhile)."""
        self.pod_ip = self.kubelet.ipam.assign(self.uid)
        saved: dict[str, Any] = {}
        if self.state_path.exists():
            saved = json.loads(self.state_path.read_text())
        self.start_time = saved.get("start_time") or now_rfc3339()
        self.init_failed = bool(saved.get("init_failed"))
        self.terminal_phase = saved.get("terminal_phase")
        self.init_slots = [self._restore(c, True, (saved.get("init") or {}).get(c["name"])) for c in self.spec.get("initContainers") or []]
        self.slots = [self._restore(c, False, (saved.get("containers") or {}).get(c["name"])) for c in self.spec.get("containers") or []]
        if not saved:
            for slot in self.init_slots + self.slots:  # a new pod may reuse an old pod's name: fresh logs
                for previous in (False, True):
                    self.log_path(slot.name, previous).unlink(missing_ok=True)
        self.save()

    def _restore(self, spec: dict[str, Any], init: bool, saved: dict[str, Any] | None) -> Slot:
        record = ContainerRecord(name=spec["name"], image=spec.get("image", ""))
        slot = Slot(spec=spec, record=record, init=init)
        if not saved:
            return slot
        record.restart_count = saved.get("restart_count", 0)
        record.container_id = saved.get("container_id", "")
        record.started_at = saved.get("started_at")
        record.resources = saved.get("resources")
        record.last_terminated = Terminated.from_dict(saved["last_terminated"]) if saved.get("last_terminated") else None
        record.terminated = Terminated.from_dict(saved["terminated"]) if saved.get("terminated") else None
        slot.crashes = saved.get("crashes", 0)
        record.state = saved.get("state", "waiting")
        if record.state == "waiting":
            record.waiting_reason = "ContainerCreating"
        if saved.get("pid") and not saved.get("shutdown_stopped"):
            process = ContainerProcess.adopt(ProcessIdentity(saved["pid"], saved["ticks"]))
            if process is not None:
                log.info("pod %s/%s: adopted container %s (pid %s)", self.namespace, self.name, slot.name, process.pid)
                slot.process = process
                slot.ran_since = self.loop.time()
                record.state = "running"
                record.started = not spec.get("startupProbe")
                record.ready = record.started and not spec.get("readinessProbe")
                self._watch(slot)
                return slot
            # the process died while localkube was down: its exit code is lost, as with a real
            # runtime that lost a container (reason ContainerStatusUnknown, exit code 137)
            term = Terminated(137, "ContainerStatusUnknown", record.started_at or now_rfc3339(), now_rfc3339(), record.container_id,
                              "The container could not be located when the pod was restarted")
            self._exited(slot, term, ran_for=0.0)
            if slot.restart_at is not None:
                slot.restart_at = self.loop.time()  # not a crash loop: restart at once
        elif saved.get("shutdown_stopped") and record.state in ("running", "terminated"):
            # stopped by a clean localkube stop: it runs again, whatever the restart policy
            if record.terminated is not None:
                record.last_terminated = record.terminated
            record.terminated = None
            record.state = "waiting"
            record.waiting_reason = "ContainerCreating"
            slot.restart_at = None
            slot.shutdown_stopped = False
        return slot

    # ---- the reconcile step ----------------------------------------------------------------
    async def sync(self) -> None:
        if self.is_gone:
            await self._kill_all(self.grace)
            self.cleanup()
            return
        if (self.pod.get("metadata") or {}).get("deletionTimestamp"):
            await self.terminate()
            return
        if self.terminal_phase is None and not self.init_failed:
            if not self._init_done():
                await self._step_init()
            if self._init_done():
                for slot in self.slots:
                    await self._step(slot)
                await self._step_resize()
            self._check_finished()
        await self.write_status()

    def _init_done(self) -> bool:
        return all(s.completed for s in self.init_slots)

    async def _step_init(self) -> None:
        for slot in self.slots:
            if slot.record.state == "waiting" and slot.record.restart_count == 0:
                slot.record.waiting_reason = "PodInitializing"
        for slot in self.init_slots:
            if slot.completed:
                continue
            if slot.process is None:
                term = slot.record.terminated
                if term is not None and term.exit_code != 0 and slot.restart_at is None and self.restart_policy == "Never":
                    self.init_failed = True
                    self.save()
                    return
                await self._step(slot)
            return  # init containers run one at a time, in order

    async def _step(self, slot: Slot) -> None:
        if slot.process is not None or slot.stopping:
            return
        now = self.loop.time()
        if slot.retry_at is not None and now < slot.retry_at:
            return
        if slot.restart_at is not None:
            if now < slot.restart_at:
                self._backoff_waiting(slot)
                return
            await self._start(slot)
            return
        if slot.record.state == "waiting":
            await self._start(slot)

    def _backoff_waiting(self, slot: Slot) -> None:
        record = slot.record
        if record.state == "terminated" and record.terminated is not None:
            record.last_terminated = record.terminated
            record.terminated = None
        delay = self.kubelet.backoff.delay(slot.crashes)
        record.state = "waiting"
        record.waiting_reason = "CrashLoopBackOff"
        record.waiting_message = f"back-off {delay:g}s restarting failed container={slot.name} pod={self.name}_{self.namespace}({self.uid})"
        record.ready = False
        record.started = False

    async def _start(self, slot: Slot) -> None:
        record = slot.record
        ctx = PodContext(pod_ip=self.pod_ip or "", host_ip=self.kubelet.node.host_ip, node_allocatable=self.kubelet.allocatable)
        try:
            configmaps, secrets = await self.kubelet.env_sources(self.pod)
            env = container_env(self.pod, slot.spec, ctx, self.kubelet.base_env, configmaps, secrets)
            argv = container_argv(slot.spec, env)
        except EnvError as error:
            record.state = "waiting"
            record.waiting_reason = "CreateContainerConfigError"
            record.waiting_message = str(error)
            slot.retry_at = self.loop.time() + ENV_RETRY
            return
        slot.retry_at = None
        restarting = record.started_at is not None or record.last_terminated is not None or record.terminated is not None
        if restarting:
            record.restart_count += 1
            if record.terminated is not None:
                record.last_terminated = record.terminated
            current = self.log_path(slot.name)
            if current.exists():
                os.replace(current, self.log_path(slot.name, previous=True))
        record.terminated = None
        slot.restart_at = None
        slot.kill_message = None
        slot.stopping = False
        slot.env = env
        record.waiting_reason = "ContainerCreating"
        if record.resources is None:
            record.resources = dict(slot.spec.get("resources") or {})
        started_at = now_rfc3339()
        try:
            process = ContainerProcess.spawn(argv, env, slot.spec.get("workingDir"), self.log_path(slot.name))
        except OSError as error:
            record.container_id = _container_id(self.uid, slot.name, record.restart_count, 0)
            term = Terminated(128, "StartError", started_at, now_rfc3339(), record.container_id, f"failed to start container process: {error}")
            record.started_at = started_at
            self._exited(slot, term, ran_for=0.0)
            self.kubelet.event(self.pod, "Warning", "Failed", f"Error: {term.message}")
            self.save()
            return
        slot.process = process
        slot.ran_since = self.loop.time()
        record.state = "running"
        record.started_at = started_at
        record.container_id = _container_id(self.uid, slot.name, record.restart_count, process.pid)
        record.started = not slot.spec.get("startupProbe") and not slot.init
        record.ready = record.started and not slot.spec.get("readinessProbe")
        record.waiting_message = None
        self._watch(slot)
        self.save()
        self.kubelet.event(self.pod, "Normal", "Started", f"Started container {slot.name}")

    def _watch(self, slot: Slot) -> None:
        assert slot.process is not None
        process = slot.process
        future = process.watch(self.loop)
        future.add_done_callback(lambda f: self._on_exit(slot, process, f))
        if not slot.init and any(slot.spec.get(p) for p in ("startupProbe", "readinessProbe", "livenessProbe")):
            slot.probe_task = self.loop.create_task(self._probe(slot, process), name=f"probes {self.name}/{slot.name}")

    def _on_exit(self, slot: Slot, process: ContainerProcess, future: "asyncio.Future[int | None]") -> None:
        if future.cancelled() or slot.process is not process:
            return
        returncode = future.result()
        finished = now_rfc3339()
        if returncode is None:  # adopted process: a non-child's exit code cannot be read
            term = Terminated(137, "ContainerStatusUnknown", slot.record.started_at or finished, finished, slot.record.container_id,
                              "The container's exit code was lost across a localkube restart")
        else:
            code, sig = exit_code_of(returncode)
            term = Terminated(code, exit_reason(code), slot.record.started_at or finished, finished, slot.record.container_id, slot.kill_message, sig)
        slot.process = None
        if slot.probe_task is not None:
            slot.probe_task.cancel()
            slot.probe_task = None
        self._exited(slot, term, ran_for=self.loop.time() - slot.ran_since)
        if not slot.shutdown_stopped:
            self.save()
        self.wake.set()

    def _exited(self, slot: Slot, term: Terminated, ran_for: float) -> None:
        record = slot.record
        record.state = "terminated"
        record.terminated = term
        record.ready = slot.init and term.exit_code == 0
        record.started = False
        if slot.stopping:
            return
        if slot.init:
            restart = term.exit_code != 0 and self.restart_policy != "Never"
        else:
            restart = self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and term.exit_code != 0)
        if restart:
            slot.crashes = self.kubelet.backoff.crashes_after(slot.crashes, ran_for)
            slot.restart_at = self.loop.time() + self.kubelet.backoff.delay(slot.crashes)
            if term.exit_code != 0:
                self.kubelet.event(self.pod, "Warning", "BackOff", f"Back-off restarting failed container {slot.name} in pod {self.name}_{self.namespace}({self.uid})")

    def _check_finished(self) -> None:
        """Record a terminal phase (restartPolicy Never/OnFailure) so a restart never re-runs the pod."""
        phase = pod_phase(self.restart_policy, self.init_failed, [s.record for s in self.slots], {s.name: s.restart_at is not None for s in self.slots})
        if phase in ("Succeeded", "Failed") and all(s.process is None for s in self.slots):
            self.terminal_phase = phase
            self.save()

    # ---- probes ------------------------------------------------------------------------------
    async def _probe(self, slot: Slot, process: ContainerProcess) -> None:
        worker, record, session = self, slot.record, self.kubelet.probe_session

        class Listener:
            def started(self) -> None:
                record.started = True
                record.ready = not slot.spec.get("readinessProbe")
                worker.wake.set()

            def readiness(self, ready: bool) -> None:
                record.ready = ready
                if not ready:
                    worker.kubelet.event(worker.pod, "Warning", "Unhealthy", "Readiness probe failed")
                worker.wake.set()

            def failed(self, probe: dict[str, Any], message: str) -> None:
                worker._kill(slot, process, probe, message)

        async def attempt(probe: dict[str, Any]) -> bool:
            return await run_probe(probe, self.pod_ip or "127.0.0.1", slot.spec, slot.env, session)

        await run_container_probes(slot.spec, attempt, Listener())

    def _kill(self, slot: Slot, process: ContainerProcess, probe: dict[str, Any], message: str) -> None:
        grace = float(probe.get("terminationGracePeriodSeconds", self.spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE)))
        slot.kill_message = f"{message}; container will be restarted" if self.restart_policy != "Never" else message
        self.kubelet.event(self.pod, "Warning", "Unhealthy", message)
        self.kubelet.event(self.pod, "Normal", "Killing", f"Container {slot.name} failed {message.split()[0].lower()} probe, will be restarted")
        self.loop.create_task(process.stop(grace, self.loop))

    # ---- in-place resize ---------------------------------------------------------------------
    def requests(self) -> dict[str, Decimal]:
        """What this pod holds on the node: the allocated (not desired) requests of its containers."""
        return pod_requests({"resources": s.record.resources if s.record.resources is not None else s.spec.get("resources") or {}} for s in self.slots)

    async def _step_resize(self) -> None:
        changed = [s for s in self.slots if s.record.resources is not None and (s.spec.get("resources") or {}) != s.record.resources]
        if not changed:
            self.resize = None
            return
        blocker = resize_blocker(pod_requests(s.spec for s in self.slots), self.kubelet.requests_of_others(self.uid), self.kubelet.allocatable)
        if blocker is not None:
            self.resize = Condition("PodResizePending", True, *blocker)
            return
        self.resize = Condition("PodResizeInProgress", True)
        await self.write_status()
        for slot in changed:
            restart = self._resize_needs_restart(slot)
            slot.record.resources = dict(slot.spec.get("resources") or {})
            if restart and slot.process is not None:  # resizePolicy RestartContainer: no back-off
                slot.kill_message = "Container resized with restart policy RestartContainer"
                slot.stopping = True
                await self._stop_slot(slot, self.grace)
                await self._start(slot)
        self.kubelet.event(self.pod, "Normal", "ResizeCompleted", "Pod resize completed")
        self.resize = None
        self.save()

    @staticmethod
    def _resize_needs_restart(slot: Slot) -> bool:
        policies = {p.get("resourceName"): p.get("restartPolicy", "NotRequired") for p in slot.spec.get("resizePolicy") or []}
        old, new = slot.record.resources or {}, slot.spec.get("resources") or {}
        for resource in ("cpu", "memory"):
            before = ((old.get("requests") or {}).get(resource), (old.get("limits") or {}).get(resource))
            after = ((new.get("requests") or {}).get(resource), (new.get("limits") or {}).get(resource))
            if before != after and policies.get(resource) == "RestartContainer":
                return True
        return False

    # ---- status ------------------------------------------------------------------------------
    def view(self, phase_override: str | None = None) -> PodView:
        base = dict(self.pod)
        if self.last_status is not None:
            base["status"] = self.last_status
        return PodView(
            pod=base,
            host_ip=self.kubelet.node.host_ip,
            pod_ip=self.pod_ip,
            start_time=self.start_time,
            init_containers=[s.record for s in self.init_slots],
            containers=[s.record for s in self.slots],
            initialized=self._init_done(),
            init_failed=self.init_failed,
            will_restart={s.name: s.restart_at is not None for s in self.slots},
            qos_class=qos_class(self.pod),
            resize=self.resize,
            phase_override=phase_override or self.terminal_phase,
        )

    async def write_status(self, phase_override: str | None = None) -> None:
        status = pod_status(self.view(phase_override), now_rfc3339())
        if status == self.last_status:
            return
        await self.kubelet.client.merge_patch(f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status", {"status": status})
        self.last_status = status

    # ---- stopping ----------------------------------------------------------------------------
    async def _stop_slot(self, slot: Slot, grace: float) -> None:
        process = slot.process
        if process is None:
            return
        if slot.probe_task is not None:
            slot.probe_task.cancel()
        await process.stop(grace, self.loop)
        await asyncio.sleep(0)  # let the exit callback record the terminated state

    async def _kill_all(self, grace: float) -> None:
        slots = [s for s in self.init_slots + self.slots if s.process is not None]
        for slot in self.init_slots + self.slots:
            slot.stopping = True
            slot.restart_at = None
            slot.retry_at = None
        if slots:
            self.kubelet.event(self.pod, "Normal", "Killing", "Stopping container " + ", ".join(s.name for s in slots))
        await asyncio.gather(*(self._stop_slot(s, grace) for s in slots))

    async def terminate(self) -> None:
        """Graceful deletion: SIGTERM, SIGKILL after the grace period, terminated statuses, then the
        final DELETE (gracePeriodSeconds=0, precondition on uid) that removes the pod object."""
        await self._kill_all(self.grace)
        finals = [s.record.terminated or s.record.last_terminated for s in self.slots]
        if self.terminal_phase is None:
            self.terminal_phase = "Succeeded" if finals and all(t is not None and t.exit_code == 0 for t in finals) else "Failed"
        for slot in self.slots:
            slot.record.ready = False
        try:
            await self.write_status()
        except APIError as error:
            if error.status != 404:
                raise
        try:
            await self.kubelet.client.delete(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
                gracePeriodSeconds="0",
            )
        except APIError as error:
            if error.status not in (404, 409):
                raise
        self.cleanup()

    def cleanup(self) -> None:
        """Forget the pod: release its IP, drop its state and logs."""
        self.kubelet.ipam.release(self.uid)
        self.state_path.unlink(missing_ok=True)
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.finished = True
