"""Decoding of the Kubernetes protobuf envelope for the few bodies kubectl sends that way.

`kubectl create namespace|configmap|secret|serviceaccount|priorityclass` POST typed objects as
`application/vnd.kubernetes.protobuf` and client-go has no JSON fallback for protobuf, so a JSON-only
server cannot serve them. This decodes the wire format (no generated code: the `protobuf` runtime
would still need the k8s .proto descriptors) for exactly those kinds, using field numbers from
`k8s.io/api/*/generated.proto`; the server answers in JSON, which kubectl also accepts.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from .errors import StatusError, unsupported_media_type

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# message name -> field number -> (json name, type); types: str, bytes, int, bool, map:str, map:bytes,
# msg:<Name>, rep:str, rep:msg:<Name>, time
SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "msg:TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "str"),
                4: ("contentType", "str")},
    "TypeMeta": {1: ("apiVersion", "str"), 2: ("kind", "str")},
    "ObjectMeta": {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 4: ("selfLink", "str"),
                   5: ("uid", "str"), 6: ("resourceVersion", "str"), 7: ("generation", "int"),
                   8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
                   10: ("deletionGracePeriodSeconds", "int"), 11: ("labels", "map:str"),
                   12: ("annotations", "map:str"), 13: ("ownerReferences", "rep:msg:OwnerReference"),
                   14: ("finalizers", "rep:str")},
    "OwnerReference": {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"), 5: ("apiVersion", "str"),
                       6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")},
    "Namespace": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "rep:str")},
    "ConfigMap": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map:str"), 3: ("binaryData", "map:bytes"),
                  4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map:bytes"), 3: ("type", "str"),
               4: ("stringData", "map:str"), 5: ("immutable", "bool")},
    "ServiceAccount": {1: ("metadata", "msg:ObjectMeta"), 2: ("secrets", "rep:msg:ObjectReference"),
                       3: ("imagePullSecrets", "rep:msg:LocalObjectReference"),
                       4: ("automountServiceAccountToken", "bool")},
    "ObjectReference": {1: ("kind", "str"), 2: ("namespace", "str"), 3: ("name", "str"), 4: ("uid", "str"),
                        5: ("apiVersion", "str"), 6: ("resourceVersion", "str"), 7: ("fieldPath", "str")},
    "LocalObjectReference": {1: ("name", "str")},
    "PriorityClass": {1: ("metadata", "msg:ObjectMeta"), 2: ("value", "int"), 3: ("globalDefault", "bool"),
                      4: ("description", "str"), 5: ("preemptionPolicy", "str")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
}
KINDS = ("Namespace", "ConfigMap", "Secret", "ServiceAccount", "PriorityClass")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) triples; length-delimited values stay bytes."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        elif wire == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((num, wire, val))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def decode_message(buf: bytes, name: str) -> dict[str, Any]:
    schema = SCHEMAS[name]
    out: dict[str, Any] = {}
    for num, _, val in _fields(buf):
        if num not in schema:
            continue
        key, typ = schema[num]
        if typ == "str":
            out[key] = val.decode()
        elif typ == "bytes":
            out[key] = bytes(val)
        elif typ == "int":
            out[key] = _signed(val)
        elif typ == "bool":
            out[key] = bool(val)
        elif typ == "time":
            t = decode_message(val, "Time")
            out[key] = dt.datetime.fromtimestamp(t.get("seconds", 0), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif typ.startswith("msg:"):
            out[key] = decode_message(val, typ[4:])
        elif typ == "rep:str":
            out.setdefault(key, []).append(val.decode())
        elif typ.startswith("rep:msg:"):
            out.setdefault(key, []).append(decode_message(val, typ[8:]))
        elif typ.startswith("map:"):
            entry = {n: v for n, _, v in _fields(val)}
            k = entry.get(1, b"").decode()
            v = entry.get(2, b"")
            out.setdefault(key, {})[k] = base64.b64encode(v).decode() if typ == "map:bytes" else v.decode()
    return out


def decode(raw: bytes) -> dict[str, Any]:
    """A protobuf-encoded object as JSON-shaped data; 415 for kinds this server cannot decode."""
    accepted = ["application/json", "application/yaml"]
    if not raw.startswith(MAGIC):
        raise unsupported_media_type(accepted)
    try:
        unknown = decode_message(raw[len(MAGIC):], "Unknown")
        type_meta = unknown.get("typeMeta", {})
        kind = type_meta.get("kind", "")
        if kind not in KINDS:
            raise unsupported_media_type(accepted)
        obj = decode_message(unknown.get("raw", b""), kind)
    except (ValueError, UnicodeDecodeError) as e:
        raise StatusError(400, "BadRequest", f"unable to decode protobuf body: {e}")
    obj["apiVersion"] = type_meta.get("apiVersion", "")
    obj["kind"] = kind
    return obj
