"""The operator's few Kubernetes calls, on the official client, as plain dicts.

The reconciler works on the JSON the API server returns (camelCase dicts), so reads skip the
client's model deserialisation (`_preload_content=False`) and writes send dicts; writes return
the object the server answered with, which the operator's cache takes in. The client is
synchronous; callers run these in a thread (`asyncio.to_thread`). Every call is counted in
`tmd_operator_api_requests` (by verb and resource), the figure the scale benchmark reports.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tmd.api.resources import DEPLOYMENT_PLURAL, GROUP, TRAINED_MODEL_PLURAL, VERSION
from tmd.operator.metrics import API_REQUESTS


def _json(response: Any) -> dict[str, Any]:
    return json.loads(response.data)


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.scheduling = client.SchedulingV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    @staticmethod
    def _items(response: Any) -> list[dict[str, Any]]:
        return json.loads(response.data)["items"]

    @staticmethod
    def _versioned(response: Any) -> tuple[list[dict[str, Any]], int | None]:
        """A list's items and its resourceVersion (as an int where the server's is one)."""
        body = json.loads(response.data)
        try:
            version: int | None = int(body["metadata"]["resourceVersion"])
        except (KeyError, TypeError, ValueError):
            version = None
        return body["items"], version

    def list_nodes(self) -> list[dict[str, Any]]:
        return self.list_versioned("nodes")[0]

    def list_pods(self) -> list[dict[str, Any]]:
        return self.list_versioned("pods")[0]

    def list_custom(self, plural: str) -> list[dict[str, Any]]:
        API_REQUESTS.labels("list", plural).inc()
        return self._items(self.custom.list_cluster_custom_object(GROUP, VERSION, plural, _preload_content=False))

    def list_deployments(self) -> list[dict[str, Any]]:
        return self.list_custom(DEPLOYMENT_PLURAL)

    def list_models(self) -> list[dict[str, Any]]:
        return self.list_custom(TRAINED_MODEL_PLURAL)

    def list_versioned(self, kind: str) -> tuple[list[dict[str, Any]], int | None]:
        """kind: deployments, models, nodes or pods (the operator cache's kinds)."""
        API_REQUESTS.labels("list", kind).inc()
        if kind == "nodes":
            return self._versioned(self.core.list_node(_preload_content=False))
        if kind == "pods":
            return self._versioned(self.core.list_pod_for_all_namespaces(_preload_content=False))
        plural = {"deployments": DEPLOYMENT_PLURAL, "models": TRAINED_MODEL_PLURAL}[kind]
        return self._versioned(self.custom.list_cluster_custom_object(GROUP, VERSION, plural, _preload_content=False))

    def ensure_priority_class(self, name: str, value: int, description: str) -> bool:
        """Create the PriorityClass if missing; True when it exists afterwards."""
        API_REQUESTS.labels("create", "priorityclasses").inc()
        body = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                "value": value, "globalDefault": False, "preemptionPolicy": "Never", "description": description}
        try:
            self.scheduling.create_priority_class(client.V1PriorityClass.from_dict(body), _preload_content=False)
        except ApiException as err:
            return err.status == 409
        return True

    def supports_pod_resize(self) -> bool:
        """Whether discovery lists the pods/resize subresource (Kubernetes 1.33+)."""
        API_REQUESTS.labels("get", "discovery").inc()
        resources = json.loads(self.core.get_api_resources(_preload_content=False).data)["resources"]
        return any(r["name"] == "pods/resize" for r in resources)

    def create_pod(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        """The created pod; None when it was already there (an earlier pass created it)."""
        API_REQUESTS.labels("create", "pods").inc()
        try:
            return _json(self.core.create_namespaced_pod(pod["metadata"]["namespace"], client.V1Pod.from_dict(pod),
                                                         _preload_content=False))
        except ApiException as err:
            if err.status != 409:
                raise
            return None

    def delete_pod(self, namespace: str, name: str, *, force: bool = False) -> dict[str, Any] | None:
        """The pod as the deletion left it; None when it was gone already."""
        API_REQUESTS.labels("delete", "pods").inc()
        try:
            return _json(self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0 if force else None,
                                                         _preload_content=False))
        except ApiException as err:
            if err.status != 404:
                raise
            return None

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        API_REQUESTS.labels("patch", "pods").inc()
        return _json(self.core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}},
                                                    _content_type="application/merge-patch+json",
                                                    _preload_content=False))

    def resize_pod(self, namespace: str, name: str, container: str, resources: dict[str, Any]) -> dict[str, Any]:
        """In-place resize (pods/resize, Kubernetes 1.33+)."""
        API_REQUESTS.labels("patch", "pods/resize").inc()
        body = {"spec": {"containers": [{"name": container, "resources": resources}]}}
        return _json(self.core.patch_namespaced_pod_resize(name, namespace, body,
                                                           _content_type="application/strategic-merge-patch+json",
                                                           _preload_content=False))

    def replace_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        # A JSON patch replaces the status whole: a merge patch would keep routes that are gone.
        API_REQUESTS.labels("patch", f"{plural}/status").inc()
        return _json(self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, [{"op": "add", "path": "/status", "value": status}],
            _content_type="application/json-patch+json", _preload_content=False))

    def scale_deployment(self, namespace: str, name: str, current: int, allocations: int) -> None:
        """Set spec.number_of_allocations if it still is `current` (a JSON patch `test`): a user's
        change made meanwhile wins, and the scaler sees it on its next sample."""
        API_REQUESTS.labels("patch", DEPLOYMENT_PLURAL).inc()
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, DEPLOYMENT_PLURAL, name,
            [{"op": "test", "path": "/spec/number_of_allocations", "value": current},
             {"op": "replace", "path": "/spec/number_of_allocations", "value": allocations}],
            _content_type="application/json-patch+json", _preload_content=False)

    def replace_deployment_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.replace_status(DEPLOYMENT_PLURAL, namespace, name, status)

    def replace_model_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return self.replace_status(TRAINED_MODEL_PLURAL, namespace, name, status)

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The leader-election Lease (leader.py); None when there is none yet."""
        API_REQUESTS.labels("get", "leases").inc()
        try:
            return _json(self.coordination.read_namespaced_lease(name, namespace, _preload_content=False))
        except ApiException as err:
            if err.status != 404:
                raise
            return None

    def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        """Raises ApiException 409 when another replica created it first."""
        API_REQUESTS.labels("create", "leases").inc()
        return _json(self.coordination.create_namespaced_lease(namespace, lease, _preload_content=False))

    def replace_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> dict[str, Any]:
        """A PUT carrying the resourceVersion read: 409 when another replica wrote it meanwhile."""
        API_REQUESTS.labels("update", "leases").inc()
        return _json(self.coordination.replace_namespaced_lease(name, namespace, lease, _preload_content=False))
