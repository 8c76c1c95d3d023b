"""The Kubernetes resources of tmd: group, names, and how Elasticsearch ids map to resource names.

Elasticsearch ids may contain `_` (e.g. `test_model`), which Kubernetes object names may not;
the id itself stays in the spec and the name is derived from it (DESIGN.md "Resources").
"""

from __future__ import annotations

import hashlib
import re

GROUP = "ml.tmd.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

TRAINED_MODEL = "TrainedModel"
TRAINED_MODEL_PLURAL = "trainedmodels"
DEPLOYMENT = "TrainedModelDeployment"
DEPLOYMENT_PLURAL = "trainedmodeldeployments"

# Labels and annotations the operator puts on what it owns.
LABEL_DEPLOYMENT = f"{GROUP}/deployment"
LABEL_MODEL = f"{GROUP}/model"
LABEL_NODE = f"{GROUP}/node"
LABEL_ROLE = f"{GROUP}/role"
LABEL_ML_NODE = f"{GROUP}/ml-node"
ANNOTATION_ALLOCATED_PROCESSORS = f"{GROUP}/allocated-processors"

# Elasticsearch's id rule for trained models and deployments (MlStrings.isValidId + length limit).
_ES_ID = re.compile(r"^[a-z0-9](?:[a-z0-9_\-\.]*[a-z0-9])?$")
ES_ID_MAX_LENGTH = 64
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9\-\.]*[a-z0-9])?$")


def is_valid_es_id(value: str) -> bool:
    return bool(_ES_ID.match(value)) and len(value) <= ES_ID_MAX_LENGTH


def resource_name(es_id: str) -> str:
    """A DNS-1123 name for an Elasticsearch id: the id itself when it already is one, else a
    readable form plus a short hash of the id, so `a_b` and `a-b` never share a name."""
    if _DNS_SUBDOMAIN.match(es_id) and len(es_id) <= 253:
        return es_id
    readable = re.sub(r"[^a-z0-9\-\.]", "-", es_id.lower()).strip("-.")[:50] or "id"
    return f"{readable}-{hashlib.sha256(es_id.encode()).hexdigest()[:8]}"
