"""Object metadata rules: timestamps, names, labels, annotations, generateName, omitempty.

Validation texts follow `k8s.io/apimachinery/pkg/util/validation` so that a name kopf or a user
gets wrong fails here exactly as on a real cluster.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from typing import Any

from .errors import FieldError, invalid_field

GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

LABEL_FMT_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                 "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
QUALIFIED_FMT_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                     "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                     "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
SUBDOMAIN_FMT_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                     "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                     "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_DNS_FMT_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                     "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                     "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")

TOTAL_ANNOTATION_SIZE = 256 * 1024


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def rfc3339(t: dt.datetime) -> str:
    """metav1.Time: second precision, `Z`."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(t: dt.datetime) -> str:
    """metav1.MicroTime: microsecond precision, `Z`."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> dt.datetime | None:
    """Parse RFC 3339 with `Z` or offsets, with or without fractions; None if unparseable."""
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t


def generate_name(prefix: str) -> str:
    """`generateName` + 5 random characters (names.SimpleNameGenerator), prefix cut to fit 63."""
    max_prefix = 63 - 5
    if len(prefix) > max_prefix:
        prefix = prefix[:max_prefix]
    return prefix + "".join(random.choice(GENERATE_ALPHABET) for _ in range(5))


def validate_name(name: str, path: str, dns_label: bool) -> list[FieldError]:
    if dns_label:
        msgs = []
        if len(name) > 63:
            msgs.append("must be no more than 63 characters")
        if not DNS1123_LABEL.match(name):
            msgs.append(LABEL_DNS_FMT_MSG)
    else:
        msgs = []
        if len(name) > 253:
            msgs.append("must be no more than 253 characters")
        if not DNS1123_SUBDOMAIN.match(name):
            msgs.append(SUBDOMAIN_FMT_MSG)
    return [invalid_field(path, name, m) for m in msgs]


def validate_path_segment_name(name: str, path: str) -> list[FieldError]:
    """Names of kinds without a stricter rule (e.g. events) may not be `.`/`..` or contain `/` or `%`."""
    if name in (".", ".."):
        return [invalid_field(path, name, f"may not be '{name}'")]
    for bad in ("/", "%"):
        if bad in name:
            return [invalid_field(path, name, f"may not contain '{bad}'")]
    return []


def validate_qualified_name(key: str, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append(invalid_field(path, key, "prefix part must be non-empty"))
        elif len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix):
            errs.append(invalid_field(path, key, "prefix part " + SUBDOMAIN_FMT_MSG))
    else:
        return [invalid_field(path, key, "a qualified name " + QUALIFIED_FMT_MSG
                              + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")]
    if not name:
        errs.append(invalid_field(path, key, "name part must be non-empty"))
    elif len(name) > 63:
        errs.append(invalid_field(path, key, "name part must be no more than 63 characters"))
    elif not QUALIFIED_NAME.match(name):
        errs.append(invalid_field(path, key, QUALIFIED_FMT_MSG))
    return errs


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(labels, dict):
        return [invalid_field(path, labels, "must be a map of string to string")]
    for k, v in labels.items():
        errs += validate_qualified_name(k, f"{path}")
        if not isinstance(v, str):
            errs.append(invalid_field(f"{path}", v, "label values must be strings"))
            continue
        if len(v) > 63:
            errs.append(invalid_field(path, v, "must be no more than 63 characters"))
        if not LABEL_VALUE.match(v):
            errs.append(invalid_field(path, v, LABEL_FMT_MSG))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(annotations, dict):
        return [invalid_field(path, annotations, "must be a map of string to string")]
    total = 0
    for k, v in annotations.items():
        errs += validate_qualified_name(k.lower(), path)
        if not isinstance(v, str):
            errs.append(invalid_field(path, v, "annotation values must be strings"))
            continue
        total += len(k) + len(v)
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(FieldError("TooLong", path, f"may not be more than {TOTAL_ANNOTATION_SIZE} bytes"))
    return errs


def validate_metadata(meta: dict[str, Any], namespaced: bool, name_rule: str) -> list[FieldError]:
    """ValidateObjectMeta: name (per kind), labels, annotations, finalizers, ownerReferences."""
    errs: list[FieldError] = []
    name = meta.get("name", "")
    if not name:
        errs.append(FieldError("Required", "metadata.name", "name or generateName is required"))
    elif name_rule == "label":
        errs += validate_name(name, "metadata.name", dns_label=True)
    elif name_rule == "subdomain":
        errs += validate_name(name, "metadata.name", dns_label=False)
    else:
        errs += validate_path_segment_name(name, "metadata.name")
    if "labels" in meta:
        errs += validate_labels(meta["labels"], "metadata.labels")
    if "annotations" in meta:
        errs += validate_annotations(meta["annotations"], "metadata.annotations")
    fins = meta.get("finalizers", [])
    if not isinstance(fins, list) or not all(isinstance(f, str) for f in fins):
        errs.append(invalid_field("metadata.finalizers", fins, "must be a list of strings"))
    else:
        for i, f in enumerate(fins):
            errs += validate_qualified_name(f, f"metadata.finalizers[{i}]")
    refs = meta.get("ownerReferences", [])
    if not isinstance(refs, list):
        errs.append(invalid_field("metadata.ownerReferences", refs, "must be a list"))
    else:
        controllers = 0
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict):
                errs.append(invalid_field(f"metadata.ownerReferences[{i}]", ref, "must be an object"))
                continue
            for key in ("apiVersion", "kind", "name", "uid"):
                if not ref.get(key):
                    errs.append(FieldError("Invalid", f"metadata.ownerReferences[{i}].{key}", f"{key} must not be empty",
                                           ref.get(key, ""), True))
            if ref.get("controller"):
                controllers += 1
        if controllers > 1:
            errs.append(invalid_field("metadata.ownerReferences", refs,
                                      "Only one reference can have Controller set to true"))
    return errs


EMPTY_DROPPED = ("labels", "annotations", "finalizers", "ownerReferences", "managedFields")


def normalise_metadata(meta: dict[str, Any]) -> None:
    """omitempty: drop empty maps/lists and zero values the Go structs would not serialise."""
    for key in EMPTY_DROPPED:
        if key in meta and not meta[key]:
            del meta[key]
    for key in ("generateName", "namespace", "uid", "resourceVersion", "selfLink"):
        if key in meta and (meta[key] == "" or meta[key] is None):
            del meta[key]
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "creationTimestamp"):
        if key in meta and meta[key] is None:
            del meta[key]
    if meta.get("generation") in (0, None):
        meta.pop("generation", None)


def deep_copy(obj: Any) -> Any:
    """Fast deep copy for JSON-shaped data."""
    return json.loads(json.dumps(obj))
