"""Container probes (startup, readiness, liveness): the threshold logic (pure) and the three
handlers (httpGet, tcpSocket, exec) run against the pod's own loopback IP."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import aiohttp

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class ProbeTiming:
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, probe: Obj) -> "ProbeTiming":
        return cls(
            initial_delay=float(probe.get("initialDelaySeconds", 0)),
            period=float(probe.get("periodSeconds", 10)),
            timeout=float(probe.get("timeoutSeconds", 1)),
            success_threshold=int(probe.get("successThreshold", 1)),
            failure_threshold=int(probe.get("failureThreshold", 3)),
        )


class ProbeState:
    """Consecutive successes/failures against the thresholds; `result` flips only when one is met."""

    def __init__(self, timing: ProbeTiming, initial: bool) -> None:
        self.timing = timing
        self.result = initial
        self.successes = 0
        self.failures = 0

    def record(self, success: bool) -> bool:
        """Feed one probe outcome; returns True when `result` changed."""
        if success:
            self.successes, self.failures = self.successes + 1, 0
            if not self.result and self.successes >= self.timing.success_threshold:
                self.result = True
                return True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.result and self.failures >= self.timing.failure_threshold:
                self.result = False
                return True
            if not self.result and self.failures >= self.timing.failure_threshold:
                return False
        return False

    @property
    def failed_out(self) -> bool:
        """True once failureThreshold consecutive failures were seen (startup/liveness kill the container)."""
        return self.failures >= self.timing.failure_threshold


def resolve_port(port: Any, container: Obj) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"port {port!r} is not a declared container port name")


async def http_get(action: Obj, pod_ip: str, container: Obj, timeout: float, session: aiohttp.ClientSession) -> bool:
    host = action.get("host") or pod_ip
    scheme = (action.get("scheme") or "HTTP").lower()
    path = action.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {h["name"]: h.get("value", "") for h in action.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/1.33")
    url = f"{scheme}://{host}:{resolve_port(action.get('port'), container)}{path}"
    try:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False, allow_redirects=True) as response:
            await response.read()
            return 200 <= response.status < 400
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return False


async def tcp_socket(action: Obj, pod_ip: str, container: Obj, timeout: float) -> bool:
    host = action.get("host") or pod_ip
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, resolve_port(action.get("port"), container)), timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


def _run_exec(argv: Sequence[str], env: Mapping[str, str], cwd: str | None, timeout: float) -> bool:
    try:
        done = subprocess.run(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


async def run_probe(probe: Obj, pod_ip: str, container: Obj, env: Mapping[str, str], session: aiohttp.ClientSession) -> bool:
    """One probe attempt. exec runs in a thread (subprocess.run) so no asyncio child watcher is needed
    in the kubelet's loop thread."""
    timeout = ProbeTiming.of(probe).timeout
    try:
        if "httpGet" in probe:
            return await http_get(probe["httpGet"], pod_ip, container, timeout, session)
        if "tcpSocket" in probe:
            return await tcp_socket(probe["tcpSocket"], pod_ip, container, timeout)
        if "exec" in probe:
            argv = (probe["exec"] or {}).get("command") or []
            return await asyncio.get_running_loop().run_in_executor(None, _run_exec, argv, env, container.get("workingDir"), timeout)
    except ValueError:
        return False
    return False  # grpc probes are not supported by localkube: reported as failing
