"""Running the built images here: podman over its own storage, with what this sandbox allows.

- runtime runc: crun refuses this machine's hybrid cgroup layout ("cgroups in hybrid mode not
  supported, drop all controllers from cgroupv2"); runc runs the same OCI bundles.
- explicit --ulimit values: the sandbox withholds CAP_SYS_RESOURCE, so podman's default rlimits
  (nofile 1048576) cannot be set ("error setting rlimit type 7: operation not permitted").
- host network: containers listen on loopback addresses the test picks, as processes do.
The containers run as Kubernetes runs the pods: read-only root (tmpfs /tmp), all capabilities
dropped, no privilege escalation, the image's own non-root user.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("mmdebstrap", "buildah", "podman", "runc")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def pod_like_options() -> list[str]:
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 16384)
    return ["--network", "host", "--read-only", "--cap-drop", "all", "--security-opt", "no-new-privileges",
            "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=8192:8192"]


@dataclass
class ArchiveSize:
    compressed: int    # what a registry stores and a node pulls: the layers as gzip
    uncompressed: int  # what the layers unpack to

    @staticmethod
    def of(archive: Path) -> "ArchiveSize":
        with tarfile.open(archive) as tar:
            def blob(digest: str) -> bytes:
                return tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}").read()

            [entry] = json.loads(tar.extractfile("index.json").read())["manifests"]
            layers = json.loads(blob(entry["digest"]))["layers"]
            unpacked = 0
            for layer in layers:
                with tarfile.open(fileobj=tar.extractfile(f"blobs/sha256/{layer['digest'].removeprefix('sha256:')}"),
                                  mode="r|gz") as inner:
                    unpacked += sum(member.size for member in inner)
            return ArchiveSize(sum(layer["size"] for layer in layers), unpacked)


class Podman:
    def __init__(self, root: Path) -> None:
        driver = os.environ.get("TMD_IMAGES_STORAGE_DRIVER", "overlay")  # as images/build.sh
        self.base = ["podman", "--root", str(root / "storage"), "--runroot", str(root / "run"),
                     "--storage-driver", driver, "--runtime", "runc"]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)

    def load(self, archive: Path) -> str:
        """Loads an OCI archive into this storage; returns the image's name."""
        done = self("load", "--quiet", "--input", str(archive), timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().removeprefix("Loaded image: ").removeprefix("Loaded image(s): ")

    def run(self, image: str, *args: str, options: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self("run", "--rm", *pod_like_options(), *options, image, *args, timeout=timeout)

    def start(self, name: str, image: str, *args: str, options: tuple[str, ...] = ()) -> None:
        done = self("run", "--detach", "--name", name, *pod_like_options(), *options, image, *args)
        assert done.returncode == 0, done.stderr

    def logs(self, name: str) -> str:
        done = self("logs", name)
        return done.stdout + done.stderr

    def remove(self, name: str) -> None:
        """SIGTERM, 20 s to exit (as a kubelet gives), then gone."""
        self("stop", "--time", "20", name, timeout=60)
        self("rm", "--force", name, timeout=60)
