"""The process kubelet: runs the pods bound to a virtual node as local process groups (localkube.md §7.1)."""

from .backoff import BackoffPolicy
from .kubelet import Kubelet, KubeletConfig
from .node import NodeSpec

__all__ = ["BackoffPolicy", "Kubelet", "KubeletConfig", "NodeSpec"]
