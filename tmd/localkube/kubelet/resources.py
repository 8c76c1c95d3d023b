"""Pure helpers over container resources: QoS class, downward-API resource fields, node fit.

Quantities are parsed with the kubernetes client's `parse_quantity` (exact Decimal arithmetic,
all SI and binary suffixes) rather than by hand.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Iterable, Mapping

from kubernetes.utils.quantity import parse_quantity

Obj = Mapping[str, Any]


def quantity(value: Any) -> Decimal:
    return parse_quantity(value)


def effective_requests(container: Obj) -> dict[str, str]:
    """Requests as the API server defaults them: a limit without a request implies request = limit."""
    resources = container.get("resources") or {}
    requests = dict(resources.get("requests") or {})
    for name, limit in (resources.get("limits") or {}).items():
        requests.setdefault(name, limit)
    return requests


def qos_class(pod: Obj) -> str:
    """Guaranteed / Burstable / BestEffort, with the rules of pkg/apis/core/v1/helper/qos."""
    containers = list((pod.get("spec") or {}).get("containers") or []) + list((pod.get("spec") or {}).get("initContainers") or [])
    any_set = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = effective_requests(container)
        if limits or requests:
            any_set = True
        for name in ("cpu", "memory"):
            if name not in limits or quantity(limits[name]) != quantity(requests.get(name, limits[name])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def resource_field_value(container: Obj, resource: str, divisor: Any, node_allocatable: Mapping[str, str]) -> str:
    """The value a `resourceFieldRef` exposes: limits fall back to node allocatable, rounded up to the divisor."""
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    if kind == "limits":
        raw = (resources.get("limits") or {}).get(name, node_allocatable.get(name, "0"))
    elif kind == "requests":
        raw = effective_requests(container).get(name, "0")
    else:
        raise ValueError(f"unsupported resource: {resource!r}")
    div = quantity(divisor or "1")
    if div == 0:
        raise ValueError(f"invalid divisor {divisor!r}")
    return str(math.ceil(quantity(raw) / div))


def sum_requests(containers: Iterable[Obj], name: str) -> Decimal:
    return sum((quantity(effective_requests(c).get(name, "0")) for c in containers), Decimal(0))


def fits(requested: Mapping[str, Decimal], used: Mapping[str, Decimal], allocatable: Mapping[str, str]) -> list[str]:
    """Resources whose request would exceed what the node has left; empty when the pod fits."""
    short = []
    for name, amount in requested.items():
        if name in allocatable and used.get(name, Decimal(0)) + amount > quantity(allocatable[name]):
            short.append(name)
    return short
