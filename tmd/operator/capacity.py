"""ML nodes as the planner sees them: the pure logic lives in `tmd.api.ml_nodes` (the shim's
`_ml/info` reads the same capacity); these names stay importable from here for the operator."""

from tmd.api.ml_nodes import (ALLOCATED_PROCESSORS_ANNOTATION, NOT_READY_REASON, WORKER_POD_LABEL, ZONE_LABEL,
                              MLNode, is_worker_pod, matches_selector, ml_node_from_kubernetes, ml_nodes_from_kubernetes,
                              parse_quantity_value, pod_requests)

__all__ = ["ALLOCATED_PROCESSORS_ANNOTATION", "NOT_READY_REASON", "WORKER_POD_LABEL", "ZONE_LABEL", "MLNode",
           "is_worker_pod", "matches_selector", "ml_node_from_kubernetes", "ml_nodes_from_kubernetes",
           "parse_quantity_value", "pod_requests"]
