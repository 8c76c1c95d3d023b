"""Pure functions of the API server: selectors, patches, structural schemas, tables, quantities."""

from __future__ import annotations

import datetime as dt

import pytest

from tmd.localkube.apiserver.errors import StatusError
from tmd.localkube.apiserver.patching import merge_patch, strategic_merge
from tmd.localkube.apiserver.schema import apply_defaults, prune, validate
from tmd.localkube.apiserver.selector import label_matcher, parse_field_selector
from tmd.localkube.apiserver.strategies import parse_quantity, qos_class
from tmd.localkube.apiserver.tables import human_duration, json_path


def obj(**labels: str) -> dict:
    return {"metadata": {"labels": labels}}


@pytest.mark.parametrize("selector,labels,expected", [
    ("a=b", {"a": "b"}, True), ("a=b", {"a": "c"}, False), ("a!=b", {}, True), ("a", {"a": ""}, True),
    ("!a", {"a": "x"}, False), ("a in (x, y)", {"a": "y"}, True), ("a notin (x,y)", {"a": "z"}, True),
    ("a notin (x,y)", {}, True), ("a,b", {"a": "1"}, False), ("example.com/role=ml", {"example.com/role": "ml"}, True),
    ("n>3", {"n": "4"}, True), ("n<3", {"n": "4"}, False), ("a=", {"a": ""}, True),
])
def test_label_selectors(selector: str, labels: dict, expected: bool) -> None:
    match = label_matcher(selector)
    assert match is not None and match(obj(**labels)) is expected


@pytest.mark.parametrize("bad", ["a in (x", "a in ()", "=b", "a,", "a==b==c", "a b", "-a=b"])
def test_malformed_label_selectors(bad: str) -> None:
    with pytest.raises(StatusError) as e:
        label_matcher(bad)
    assert e.value.code == 400


def test_field_selector_parsing() -> None:
    assert parse_field_selector("spec.nodeName=n1,status.phase!=Failed,a==b") == [
        ("spec.nodeName", "=", "n1"), ("status.phase", "!=", "Failed"), ("a", "=", "b")]
    assert parse_field_selector(r"metadata.name=a\,b") == [("metadata.name", "=", "a,b")]
    with pytest.raises(StatusError):
        parse_field_selector("nonsense")


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}}) == {
        "a": "z", "c": {"d": "e"}}
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_patch({"a": 1}, {"b": {"c": None}}) == {"a": 1, "b": {}}


def test_strategic_merge_directives() -> None:
    target = {"spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                                      {"name": "b", "image": "1"}],
                       "tolerations": [{"key": "k"}]},
              "metadata": {"finalizers": ["f1"]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
                      "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}, {"name": "c", "image": "3"}],
                      "tolerations": [{"key": "new"}]},
             "metadata": {"finalizers": ["f2", "f1"]}}
    out = strategic_merge(target, patch)
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a", "c"]
    assert out["spec"]["containers"][1]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert out["spec"]["tolerations"] == [{"key": "new"}]  # atomic list
    assert out["metadata"]["finalizers"] == ["f1", "f2"]
    out = strategic_merge(out, {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["a", "c"]
    out = strategic_merge(out, {"spec": {"$patch": "replace", "containers": [{"name": "z", "image": "9"}]}})
    assert out["spec"] == {"containers": [{"name": "z", "image": "9"}]}
    out = strategic_merge({"a": {"x": 1, "y": 2}}, {"a": {"$retainKeys": ["y", "z"], "z": 3}})
    assert out == {"a": {"y": 2, "z": 3}}


SCHEMA = {"type": "object", "properties": {
    "spec": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
        "size": {"type": "integer", "default": 3, "minimum": 1, "maximum": 10},
        "port": {"x-kubernetes-int-or-string": True},
        "tags": {"type": "array", "maxItems": 2, "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "opt": {"type": "string", "nullable": True}}}}}


def test_schema_pruning_and_defaulting() -> None:
    o = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "bogus": 1},
         "spec": {"name": "a", "junk": 1, "free": {"anything": {"goes": 1}}, "labels": {"k": "v"}}, "top": 1}
    assert sorted(prune(o, SCHEMA)) == ["metadata.bogus", "spec.junk", "top"]
    apply_defaults(o, SCHEMA)
    assert o["spec"] == {"name": "a", "size": 3, "free": {"anything": {"goes": 1}}, "labels": {"k": "v"}}


def test_schema_validation_messages() -> None:
    errs = validate({"spec": {"size": 11, "port": 1.5, "tags": ["a", "a", "b"], "labels": {"k": 1}, "opt": None}},
                    SCHEMA)
    messages = sorted(e.message() for e in errs)
    assert messages == sorted([
        "spec.name: Required value",
        "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
        'spec.port: Invalid value: "number": spec.port in body must be of type integer,string: "number"',
        "spec.tags: Too many: 3: must have at most 2 items",
        'spec.tags[1]: Duplicate value: "a"',
        'spec.labels.k: Invalid value: "integer": spec.labels.k in body must be of type string: "integer"',
    ])
    errs = validate({"spec": {"name": "TOOLONG"}}, SCHEMA)
    assert sorted(e.message() for e in errs) == [
        "spec.name: Invalid value: \"TOOLONG\": spec.name in body should match '^[a-z]+$'",
        "spec.name: Too long: may not be more than 5 bytes"]


def test_quantities_and_qos() -> None:
    assert parse_quantity("500m") == parse_quantity("0.5") and parse_quantity("1Gi") == 2**30
    assert parse_quantity("nonsense") is None
    guaranteed = {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"},
                                                "requests": {"cpu": "1000m", "memory": "1Gi"}}}]}
    assert qos_class(guaranteed) == "Guaranteed"
    assert qos_class({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"
    assert qos_class({"containers": [{}]}) == "BestEffort"


def test_human_duration_and_json_path() -> None:
    assert [human_duration(dt.timedelta(seconds=s)) for s in (5, 119, 330, 3600, 8 * 3600, 3 * 86400, 400 * 86400)] \
        == ["5s", "119s", "5m30s", "60m", "8h", "3d", "400d"]
    o = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
         "spec": {"items": [{"n": 1}, {"n": 2}]}}
    assert json_path(o, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert json_path(o, ".spec.items[*].n") == [1, 2] and json_path(o, ".spec.items[1].n") == [2]
    assert json_path(o, ".missing.path") == []
