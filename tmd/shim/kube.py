"""The shim's Kubernetes calls: TrainedModel / TrainedModelDeployment resources and worker pods
in one namespace, as plain dicts. The client is synchronous; the app runs these in threads.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tmd.api.resources import (API_VERSION, DEPLOYMENT, DEPLOYMENT_PLURAL, GROUP, LABEL_DEPLOYMENT, LABEL_ROLE, TRAINED_MODEL,
                               TRAINED_MODEL_PLURAL, VERSION, resource_name)

Object = dict[str, Any]


ENDPOINT_ROLE = "inference-endpoint"
ENDPOINT_KEY = "endpoint.json"


def _endpoint(config_map: Object) -> Object | None:
    try:
        value = json.loads((config_map.get("data") or {}).get(ENDPOINT_KEY) or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("inference_id"), str) else None


class Conflict(Exception):
    """The object already exists (create) or changed underneath (update)."""


class ShimKube:
    def __init__(self, namespace: str, api_client: client.ApiClient | None = None) -> None:
        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self.namespace = namespace
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    # -- generic custom objects
    def _list(self, plural: str) -> list[Object]:
        resp = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, _preload_content=False)
        return json.loads(resp.data)["items"]

    def _get(self, plural: str, name: str) -> Object | None:
        try:
            resp = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name,
                                                            _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return json.loads(resp.data)

    def _create(self, plural: str, kind: str, es_id: str, spec: Object) -> Object:
        body = {"apiVersion": API_VERSION, "kind": kind,
                "metadata": {"name": resource_name(es_id), "namespace": self.namespace}, "spec": spec}
        try:
            resp = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body,
                                                               _preload_content=False)
        except ApiException as err:
            if err.status == 409:
                raise Conflict(es_id) from None
            raise
        return json.loads(resp.data)

    def _patch_spec(self, plural: str, name: str, spec: Object) -> Object:
        resp = self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name,
                                                          {"spec": spec}, _preload_content=False)
        return json.loads(resp.data)

    def _delete(self, plural: str, name: str) -> bool:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    # -- models
    def list_models(self) -> list[Object]:
        return self._list(TRAINED_MODEL_PLURAL)

    def get_model(self, model_id: str) -> Object | None:
        found = self._get(TRAINED_MODEL_PLURAL, resource_name(model_id))
        return found if found and found["spec"].get("model_id") == model_id else None

    def create_model(self, spec: Object) -> Object:
        return self._create(TRAINED_MODEL_PLURAL, TRAINED_MODEL, spec["model_id"], spec)

    def patch_model_spec(self, model_id: str, spec: Object) -> Object:
        return self._patch_spec(TRAINED_MODEL_PLURAL, resource_name(model_id), spec)

    def delete_model(self, model_id: str) -> bool:
        return self._delete(TRAINED_MODEL_PLURAL, resource_name(model_id))

    # -- deployments
    def list_deployments(self) -> list[Object]:
        return self._list(DEPLOYMENT_PLURAL)

    def get_deployment(self, deployment_id: str) -> Object | None:
        found = self._get(DEPLOYMENT_PLURAL, resource_name(deployment_id))
        return found if found and found["spec"].get("deployment_id") == deployment_id else None

    def create_deployment(self, spec: Object) -> Object:
        return self._create(DEPLOYMENT_PLURAL, DEPLOYMENT, spec["deployment_id"], spec)

    def patch_deployment_spec(self, deployment_id: str, spec: Object) -> Object:
        return self._patch_spec(DEPLOYMENT_PLURAL, resource_name(deployment_id), spec)

    def delete_deployment(self, deployment_id: str) -> bool:
        return self._delete(DEPLOYMENT_PLURAL, resource_name(deployment_id))

    # -- workers
    def list_worker_pods(self, deployment_name: str | None = None) -> list[Object]:
        selector = f"{LABEL_ROLE}=worker" + (f",{LABEL_DEPLOYMENT}={deployment_name}" if deployment_name else "")
        resp = self.core.list_namespaced_pod(self.namespace, label_selector=selector, _preload_content=False)
        return json.loads(resp.data)["items"]

    # -- inference endpoints (`_inference`): one ConfigMap each, its JSON under ENDPOINT_KEY
    def _endpoint_name(self, inference_id: str) -> str:
        return f"tmd-inference-{resource_name(inference_id)}"

    def list_inference_endpoints(self) -> list[Object]:
        resp = self.core.list_namespaced_config_map(self.namespace, label_selector=f"{LABEL_ROLE}={ENDPOINT_ROLE}",
                                                    _preload_content=False)
        return [e for e in (_endpoint(c) for c in json.loads(resp.data)["items"]) if e is not None]

    def get_inference_endpoint(self, inference_id: str) -> Object | None:
        try:
            resp = self.core.read_namespaced_config_map(self._endpoint_name(inference_id), self.namespace,
                                                        _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        found = _endpoint(json.loads(resp.data))
        return found if found and found.get("inference_id") == inference_id else None

    def create_inference_endpoint(self, endpoint: Object) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": self._endpoint_name(endpoint["inference_id"]), "namespace": self.namespace,
                             "labels": {LABEL_ROLE: ENDPOINT_ROLE}},
                "data": {ENDPOINT_KEY: json.dumps(endpoint)}}
        try:
            self.core.create_namespaced_config_map(self.namespace, body, _preload_content=False)
        except ApiException as err:
            if err.status == 409:
                raise Conflict(endpoint["inference_id"]) from None
            raise

    def patch_inference_endpoint(self, endpoint: Object) -> None:
        self.core.patch_namespaced_config_map(self._endpoint_name(endpoint["inference_id"]), self.namespace,
                                              {"data": {ENDPOINT_KEY: json.dumps(endpoint)}}, _preload_content=False)

    def delete_inference_endpoint(self, inference_id: str) -> bool:
        try:
            self.core.delete_namespaced_config_map(self._endpoint_name(inference_id), self.namespace)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    # -- ML capacity (`_ml/info`, `_ml/memory/_stats`): cluster-wide reads, a ClusterRole's
    def list_nodes(self) -> list[Object]:
        resp = self.core.list_node(_preload_content=False)
        return json.loads(resp.data)["items"]

    def list_all_pods(self) -> list[Object]:
        """Every pod of the cluster: what other workloads request on ML nodes is not tmd's to use."""
        resp = self.core.list_pod_for_all_namespaces(_preload_content=False)
        return json.loads(resp.data)["items"]

    def list_events(self) -> list[Object]:
        """The namespace's events: the console shows those of deployments and their worker pods."""
        resp = self.core.list_namespaced_event(self.namespace, _preload_content=False)
        return json.loads(resp.data)["items"]

    def read_secret(self, name: str) -> dict[str, str]:
        """A Secret's data, base64 as stored (the caller decodes)."""
        resp = self.core.read_namespaced_secret(name, self.namespace, _preload_content=False)
        return json.loads(resp.data).get("data") or {}
