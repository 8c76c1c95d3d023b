"""The operator's few Kubernetes calls, on the official client, as plain dicts.

The reconciler works on the JSON the API server returns (camelCase dicts), so reads skip the
client's model deserialisation (`_preload_content=False`) and writes send dicts. The client is
synchronous; callers run these in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tmd.api.resources import DEPLOYMENT_PLURAL, GROUP, TRAINED_MODEL_PLURAL, VERSION


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

    @staticmethod
    def _items(response: Any) -> list[dict[str, Any]]:
        return json.loads(response.data)["items"]

    def list_nodes(self) -> list[dict[str, Any]]:
        return self._items(self.core.list_node(_preload_content=False))

    def list_pods(self) -> list[dict[str, Any]]:
        return self._items(self.core.list_pod_for_all_namespaces(_preload_content=False))

    def list_custom(self, plural: str) -> list[dict[str, Any]]:
        return self._items(self.custom.list_cluster_custom_object(GROUP, VERSION, plural, _preload_content=False))

    def list_deployments(self) -> list[dict[str, Any]]:
        return self.list_custom(DEPLOYMENT_PLURAL)

    def list_models(self) -> list[dict[str, Any]]:
        return self.list_custom(TRAINED_MODEL_PLURAL)

    def ensure_priority_class(self, name: str, value: int, description: str) -> bool:
        """Create the PriorityClass if missing; True when it exists afterwards."""
        body = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                "value": value, "globalDefault": False, "preemptionPolicy": "Never", "description": description}
        try:
            self.scheduling.create_priority_class(client.V1PriorityClass.from_dict(body), _preload_content=False)
        except ApiException as err:
            return err.status == 409
        return True

    def supports_pod_resize(self) -> bool:
        """Whether discovery lists the pods/resize subresource (Kubernetes 1.33+)."""
        resources = json.loads(self.core.get_api_resources(_preload_content=False).data)["resources"]
        return any(r["name"] == "pods/resize" for r in resources)

    def create_pod(self, pod: dict[str, Any]) -> None:
        try:
            self.core.create_namespaced_pod(pod["metadata"]["namespace"], client.V1Pod.from_dict(pod),
                                            _preload_content=False)
        except ApiException as err:
            if err.status != 409:  # already there: an earlier pass created it
                raise

    def delete_pod(self, namespace: str, name: str, *, force: bool = False) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0 if force else None,
                                            _preload_content=False)
        except ApiException as err:
            if err.status != 404:
                raise

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self.core.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}},
                                       _content_type="application/merge-patch+json", _preload_content=False)

    def resize_pod(self, namespace: str, name: str, container: str, resources: dict[str, Any]) -> None:
        """In-place resize (pods/resize, Kubernetes 1.33+)."""
        body = {"spec": {"containers": [{"name": container, "resources": resources}]}}
        self.core.patch_namespaced_pod_resize(name, namespace, body,
                                              _content_type="application/strategic-merge-patch+json",
                                              _preload_content=False)

    def replace_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        # A JSON patch replaces the status whole: a merge patch would keep routes that are gone.
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, [{"op": "add", "path": "/status", "value": status}],
            _content_type="application/json-patch+json", _preload_content=False)

    def scale_deployment(self, namespace: str, name: str, current: int, allocations: int) -> None:
        """Set spec.number_of_allocations if it still is `current` (a JSON patch `test`): a user's
        change made meanwhile wins, and the scaler sees it on its next sample."""
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, DEPLOYMENT_PLURAL, name,
            [{"op": "test", "path": "/spec/number_of_allocations", "value": current},
             {"op": "replace", "path": "/spec/number_of_allocations", "value": allocations}],
            _content_type="application/json-patch+json", _preload_content=False)

    def replace_deployment_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.replace_status(DEPLOYMENT_PLURAL, namespace, name, status)

    def replace_model_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.replace_status(TRAINED_MODEL_PLURAL, namespace, name, status)
