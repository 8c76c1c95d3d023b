"""CRD validation rules (`x-kubernetes-validations`, CEL) as kube-apiserver applies them.

Rules run against the value at their schema node (`self`); transition rules (those naming
`oldSelf`) run on updates only, where the old object has a value at the same place. A failed
rule is a field error at that node, `Invalid value: "<type>": <message>`, as
apiextensions-apiserver writes it (`pkg/apiserver/schema/cel`). Expressions are evaluated by
cel-python (the Python implementation of CEL) rather than by hand; compiled programs are cached
per rule text because compiling costs milliseconds and admission runs on every write.

Not covered: `messageExpression` falls back to the rule text when it does not evaluate to a
string, list items are checked without `oldSelf` (kube-apiserver correlates list-map items by
key), and there is no cost budget.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import celpy

from .errors import FieldError, invalid_field

REASON_KINDS = {"FieldValueInvalid": "Invalid", "FieldValueForbidden": "Forbidden",
                "FieldValueRequired": "Required", "FieldValueDuplicate": "Duplicate"}
_ENV = celpy.Environment()


@lru_cache(maxsize=512)
def _program(expression: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(expression))


def _type_name(value: Any, schema: dict[str, Any]) -> str:
    return schema.get("type") or ("object" if isinstance(value, dict) else "array" if isinstance(value, list)
                                  else "string" if isinstance(value, str) else "number")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _evaluate(expression: str, activation: dict[str, Any]) -> tuple[Any, str | None]:
    try:
        return _program(expression).evaluate(activation), None
    except celpy.CELParseError as err:
        return None, f"compilation failed: {err}"
    except celpy.CELEvalError as err:
        return None, str(err.args[0] if err.args else err)


def _failure(rule: dict[str, Any], activation: dict[str, Any], path: str, value: Any,
             schema: dict[str, Any]) -> FieldError:
    message = rule.get("message") or f"failed rule: {rule['rule'].strip()}"
    if rule.get("messageExpression"):
        text, error = _evaluate(rule["messageExpression"], activation)
        if error is None and isinstance(text, str) and text.strip():
            message = str(text)
    field_path = _join(path, rule["fieldPath"].lstrip(".")) if rule.get("fieldPath") else path
    kind = REASON_KINDS.get(rule.get("reason") or "FieldValueInvalid", "Invalid")
    if kind == "Invalid":
        return invalid_field(field_path, _type_name(value, schema), message)
    return FieldError(kind, field_path, message)


def validate(value: Any, schema: dict[str, Any] | None, old: Any = None, path: str = "") -> list[FieldError]:
    """Field errors of every failing rule in `schema` and below (empty when all hold).
    `old` is the stored value on an update (None on create)."""
    if not schema or value is None:
        return []
    errs: list[FieldError] = []
    rules = schema.get("x-kubernetes-validations") or []
    if rules:
        activation = {"self": celpy.json_to_cel(value)}
        if old is not None:
            activation["oldSelf"] = celpy.json_to_cel(old)
        for rule in rules:
            if "oldSelf" in rule["rule"] and old is None:
                continue  # a transition rule: nothing to compare with on create
            result, error = _evaluate(rule["rule"], activation)
            if error is not None:
                errs.append(invalid_field(path or "<root>", _type_name(value, schema), error))
            elif not isinstance(result, (bool, celpy.celtypes.BoolType)):
                errs.append(invalid_field(path or "<root>", _type_name(value, schema),
                                          f"rule did not evaluate to a bool: {rule['rule'].strip()}"))
            elif not result:
                errs.append(_failure(rule, activation, path, value, schema))
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            child_schema = props.get(key) or (extra if isinstance(extra, dict) else None)
            child_old = old.get(key) if isinstance(old, dict) else None
            errs += validate(child, child_schema, child_old, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errs += validate(item, schema["items"], None, f"{path}[{i}]")
    return errs
