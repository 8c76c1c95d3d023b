"""Errors that reach users, in Elasticsearch's shape.

Every error a client can cause is one of these; the shim and the worker render them with
`body()` as `{"error": {"root_cause": [...], "type", "reason"}, "status"}` (es-api.md §0).
`type` is the snake_case name of the Elasticsearch exception class, which clients surface.
"""

from __future__ import annotations

from typing import Any


class ElasticsearchError(Exception):
    """An error with an HTTP status and an Elasticsearch exception type."""

    status: int = 500
    type: str = "exception"

    def __init__(self, reason: str, *, status: int | None = None, type: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type

    def body(self) -> dict[str, Any]:
        cause = {"type": self.type, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


class StatusException(ElasticsearchError):
    """ElasticsearchStatusException: a message with an explicit status (408, 409, 429, ...)."""

    type = "status_exception"

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason, status=status)


class ResourceNotFound(ElasticsearchError):
    status = 404
    type = "resource_not_found_exception"


class ResourceAlreadyExists(ElasticsearchError):
    status = 400
    type = "resource_already_exists_exception"


class IllegalArgument(ElasticsearchError):
    status = 400
    type = "illegal_argument_exception"


class RejectedExecution(ElasticsearchError):
    status = 429
    type = "es_rejected_execution_exception"


class ValidationFailed(ElasticsearchError):
    """ActionRequestValidationException: every failed check of one request, reported together."""

    status = 400
    type = "action_request_validation_exception"

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("Validation Failed: " + "".join(f"{i}: {m};" for i, m in enumerate(self.messages, 1)))


class ParseError(ElasticsearchError):
    """x_content_parse_exception / parse_exception: a body or value that could not be read."""

    status = 400
    type = "parse_exception"
