"""CEL validation rules of CRD schemas (x-kubernetes-validations), as kube-apiserver applies them."""

from __future__ import annotations

from tmd.localkube.apiserver import cel

SCHEMA = {
    "type": "object",
    "x-kubernetes-validations": [
        {"rule": "self.min <= self.max", "message": "min must not exceed max"},
        {"rule": "self.name == oldSelf.name", "message": "name is immutable"},
    ],
    "properties": {
        "name": {"type": "string"},
        "min": {"type": "integer"},
        "max": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [
            {"rule": "self.startsWith('t-')", "messageExpression": "'tag ' + self + ' needs the t- prefix'"}]}},
        "limits": {"type": "object", "x-kubernetes-validations": [
            {"rule": "has(self.cpu)", "reason": "FieldValueRequired", "fieldPath": ".cpu",
             "message": "cpu is required"}],
            "properties": {"cpu": {"type": "string"}}},
    },
}


def details(value, old=None):
    return [(e.kind, e.path, e.detail) for e in cel.validate(value, SCHEMA, old, "spec")]


def test_a_valid_object_passes_and_transition_rules_wait_for_an_update():
    assert details({"name": "a", "min": 1, "max": 2, "tags": ["t-x"], "limits": {"cpu": "1"}}) == []
    assert details({"name": "b", "min": 1, "max": 2}, old={"name": "b", "min": 5, "max": 9}) == []


def test_failures_are_field_errors_at_the_rule_node():
    errors = cel.validate({"name": "a", "min": 3, "max": 2}, SCHEMA, None, "spec")
    assert [(e.kind, e.path, e.value, e.detail) for e in errors] == [("Invalid", "spec", "object",
                                                                      "min must not exceed max")]
    assert errors[0].body() == 'Invalid value: "object": min must not exceed max'


def test_transition_rules_compare_with_the_stored_object():
    assert details({"name": "b", "min": 1, "max": 2}, old={"name": "a", "min": 1, "max": 2}) == [
        ("Invalid", "spec", "name is immutable")]


def test_message_expression_reason_and_field_path():
    assert details({"name": "a", "min": 1, "max": 1, "tags": ["t-ok", "bad"], "limits": {}}) == [
        ("Invalid", "spec.tags[1]", "tag bad needs the t- prefix"),
        ("Required", "spec.limits.cpu", "cpu is required"),
    ]


def test_an_expression_that_fails_to_evaluate_is_reported_not_raised():
    errors = details({"name": "a", "min": 1})  # no max: CEL "no such key"
    assert len(errors) == 1 and errors[0][:2] == ("Invalid", "spec") and "max" in errors[0][2]
    broken = {"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==", "message": "m"}]}
    (error,) = cel.validate({"a": 1}, broken, None, "spec")
    assert "compilation failed" in error.detail
