"""Kubernetes `Status` errors with the exact reasons, codes and messages of kube-apiserver.

kubectl prints these messages verbatim and clients branch on `reason`/`code`, so the texts follow
`k8s.io/apimachinery/pkg/api/errors` and `pkg/util/validation/field`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class StatusError(Exception):
    """An API error answered as a `Status` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def qualified(resource: str, group: str) -> str:
    """`pods` for the core group, `kopfexamples.kopf.dev` otherwise."""
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    d.update(extra)
    return d


def not_found(resource: str, group: str, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{qualified(resource, group)} "{name}" not found',
                       _details(name, group, resource))


def already_exists(resource: str, group: str, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists',
                       _details(name, group, resource))


def conflict(resource: str, group: str, name: str, why: str) -> StatusError:
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
                       _details(name, group, resource))


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def stale(resource: str, group: str, name: str) -> StatusError:
    return conflict(resource, group, name, MODIFIED)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def forbidden(resource: str, group: str, name: str, why: str) -> StatusError:
    subject = f'{qualified(resource, group)} "{name}"' if name else qualified(resource, group)
    return StatusError(403, "Forbidden", f"{subject} is forbidden: {why}", _details(name, group, resource))


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> StatusError:
    return StatusError(405, "MethodNotAllowed", message, {})


def unsupported_media_type(accepted: list[str]) -> StatusError:
    """negotiation.NewUnsupportedMediaTypeError: the patch/body type is not one the resource accepts."""
    return StatusError(415, "UnsupportedMediaType",
                       "the body of the request was in an unknown format - accepted media types include: "
                       + ", ".join(accepted), {})


def unprocessable(message: str) -> StatusError:
    return StatusError(422, "Invalid", message, {})


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}", {})


# --- field errors (k8s.io/apimachinery/pkg/util/validation/field) ---------------------------------

def go_value(value: Any) -> str:
    """Render a value roughly the way Go's `%#v`/`%q` does in field errors."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass
class FieldError:
    """One cause of a 422 Invalid error."""

    kind: str  # Invalid | Required | Forbidden | NotSupported | Duplicate | TooLong | TooMany
    path: str
    detail: str = ""
    value: Any = None
    has_value: bool = False
    supported: list[str] = field(default_factory=list)

    REASONS = {
        "Invalid": "FieldValueInvalid",
        "Required": "FieldValueRequired",
        "Forbidden": "FieldValueForbidden",
        "NotSupported": "FieldValueNotSupported",
        "Duplicate": "FieldValueDuplicate",
        "TooLong": "FieldValueTooLong",
        "TooMany": "FieldValueTooMany",
    }

    def body(self) -> str:
        if self.kind == "Invalid":
            text = f"Invalid value: {go_value(self.value)}"
        elif self.kind == "Required":
            text = "Required value"
        elif self.kind == "Forbidden":
            text = "Forbidden"
        elif self.kind == "NotSupported":
            text = f"Unsupported value: {go_value(self.value)}"
            if self.supported:
                text += ": supported values: " + ", ".join(json.dumps(s) for s in self.supported)
            return text
        elif self.kind == "Duplicate":
            text = f"Duplicate value: {go_value(self.value)}"
        elif self.kind == "TooLong":
            text = "Too long"
        elif self.kind == "TooMany":
            text = "Too many"
        else:
            text = self.kind
        if self.detail:
            text += f": {self.detail}"
        return text

    def message(self) -> str:
        return f"{self.path}: {self.body()}" if self.path else self.body()

    def cause(self) -> dict[str, Any]:
        return {"reason": self.REASONS.get(self.kind, "FieldValueInvalid"), "message": self.body(), "field": self.path}


def invalid_field(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", path, detail, value, True)


def required_field(path: str, detail: str = "") -> FieldError:
    return FieldError("Required", path, detail)


def forbidden_field(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, detail)


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> StatusError:
    """`Pod "x" is invalid: spec.f: Invalid value: ...` (422), with `details.causes`."""
    qualified_kind = f"{kind}.{group}" if group else kind
    messages = [e.message() for e in errors]
    text = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    return StatusError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {text}',
                       _details(name, group, kind, causes=[e.cause() for e in errors]))
