"""Container processes: each runs in its own session (so it is its own process group and survives a
crash of localkube), is watched through a pidfd (which works for adopted non-children too), and is
identified across restarts by (pid, start time in /proc) so a recycled pid is never adopted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence


def start_ticks(pid: int) -> int | None:
    """Process start time (clock ticks since boot, /proc/<pid>/stat field 22); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def exit_code_of(returncode: int) -> tuple[int, int | None]:
    """(exitCode, signal) as a container runtime reports them: killed by signal N → 128+N."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


@dataclass
class ProcessIdentity:
    pid: int
    ticks: int

    def alive(self) -> bool:
        return start_ticks(self.pid) == self.ticks


class ContainerProcess:
    """A running container: its session leader plus whatever it spawned in its process group."""

    def __init__(self, identity: ProcessIdentity, popen: subprocess.Popen[bytes] | None) -> None:
        self.identity = identity
        self.popen = popen
        self._exited: asyncio.Future[int | None] | None = None
        self._pidfd: int | None = None

    @property
    def pid(self) -> int:
        return self.identity.pid

    @classmethod
    def spawn(cls, argv: Sequence[str], env: Mapping[str, str], cwd: str | None, log_path: Path) -> "ContainerProcess":
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab", buffering=0) as log:
            popen = subprocess.Popen(
                list(argv), env=dict(env), cwd=cwd or None, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        ticks = start_ticks(popen.pid)
        return cls(ProcessIdentity(popen.pid, ticks if ticks is not None else -1), popen)

    @classmethod
    def adopt(cls, identity: ProcessIdentity) -> "ContainerProcess | None":
        """Re-attach to a process a previous localkube started, if it is still the same process."""
        return cls(identity, None) if identity.alive() else None

    def watch(self, loop: asyncio.AbstractEventLoop) -> "asyncio.Future[int | None]":
        """A future resolved with the return code (None for an adopted process, whose code is lost)."""
        if self._exited is not None:
            return self._exited
        self._exited = loop.create_future()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            self._finish()
            return self._exited
        loop.add_reader(self._pidfd, self._on_readable, loop)
        return self._exited

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._pidfd)
        self._finish()

    def _finish(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        code = self.popen.wait() if self.popen is not None else self._reap_adopted()
        self._kill_group(signal.SIGKILL)  # like a container's cgroup: nothing outlives the main process
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(code)

    def _reap_adopted(self) -> int | None:
        """An adopted process is normally init's child and its exit code is lost; when this very process
        started it (an in-process restart), reap it and return its code like Popen would."""
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status) if pid else None

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop watching without touching the process (a simulated crash of localkube)."""
        if self._pidfd is not None:
            loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        if self._exited is not None and not self._exited.done():
            self._exited.cancel()
        if self.popen is not None:
            self.popen.returncode = 0  # not ours to reap any more; silences Popen.__del__

    def _kill_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def signal(self, sig: int) -> None:
        if self._exited is not None and self._exited.done():
            return
        if self.popen is None and not self.identity.alive():
            return  # an adopted pid that has gone (and may since have been reused)
        self._kill_group(sig)

    async def stop(self, grace: float, loop: asyncio.AbstractEventLoop) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; returns the return code."""
        exited = self.watch(loop)
        if not exited.done():
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(exited), timeout=max(grace, 0.0))
            except asyncio.TimeoutError:
                self.signal(signal.SIGKILL)
        return await exited
