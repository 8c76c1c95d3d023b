"""HTTP conventions of Elasticsearch the shim follows (es-api.md §0), independent of any endpoint:
the product header, vendor media types, unknown-parameter rejection, error bodies."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

from starlette.responses import Response

from tmd.api.errors import ElasticsearchError, IllegalArgument, ParseError

# Parameters every Elasticsearch endpoint accepts (RestRequest / BaseRestHandler); the boolean
# ones are parsed (so rejected when not a boolean) on every request, as Elasticsearch's channel does.
GLOBAL_PARAMS = frozenset({"pretty", "human", "error_trace", "filter_path"})
GLOBAL_BOOLEANS = ("pretty", "human", "error_trace")
_JAVA_INT = re.compile(r"[+-]?[0-9]+")
INT_MIN, INT_MAX = -(2 ** 31), 2 ** 31 - 1


def is_json_media_type(content_type: str | None) -> bool:
    """`application/json` and the vendor type `application/vnd.elasticsearch+json; compatible-with=8|9`."""
    if not content_type:
        return True
    main = content_type.split(";", 1)[0].strip().lower()
    return main in ("application/json", "application/vnd.elasticsearch+json", "application/x-ndjson") or \
        main.endswith("+json")


def parse_body(raw: bytes, content_type: str | None, *, required: bool = False) -> Any:
    if not raw.strip():
        if required:
            raise ParseError("request body is required")
        return None
    if not is_json_media_type(content_type):
        raise IllegalArgument(f"Content-Type header [{content_type}] is not supported")
    try:
        value = json.loads(raw)
    except ValueError as err:
        raise ParseError(f"Failed to parse content to map: {err}", type="x_content_parse_exception") from None
    if not isinstance(value, dict):  # every body these APIs take is an object (`null` is not "no body")
        raise ParseError("request body must be an object")
    return value


def check_params(path: str, query: Mapping[str, str], allowed: Iterable[str],
                 flags: Iterable[str] = GLOBAL_BOOLEANS) -> None:
    """Elasticsearch rejects a request naming any parameter its handler does not consume, and
    one whose boolean parameter (`flags`, those it reads with paramAsBoolean) is not a boolean."""
    known = GLOBAL_PARAMS | set(allowed)
    unknown = sorted(k for k in query if k not in known)
    if unknown:
        if len(unknown) == 1:
            raise IllegalArgument(f"request [{path}] contains unrecognized parameter: [{unknown[0]}]")
        raise IllegalArgument(f"request [{path}] contains unrecognized parameters: "
                              + ", ".join(f"[{u}]" for u in unknown))
    for name in flags:
        parse_bool(name, query.get(name), False)


def is_pretty(query: Mapping[str, str]) -> bool:
    return parse_bool("pretty", query.get("pretty"), False)


def parse_int(name: str, value: str | None, default: int) -> int:
    """RestRequest.paramAsInt: Java's Integer.parseInt, so no spaces, `_` or non-ASCII digits, and 32 bits."""
    if value is None:
        return default
    if _JAVA_INT.fullmatch(value) and INT_MIN <= int(value) <= INT_MAX:
        return int(value)
    raise IllegalArgument(f"Failed to parse int parameter [{name}] with value [{value}]")


def page_params(query: Mapping[str, str]) -> tuple[int, int]:
    """`from` and `size` of the ML list APIs (PageParams: defaults 0 and 100, never negative)."""
    from_, size = parse_int("from", query.get("from"), 0), parse_int("size", query.get("size"), 100)
    for name, value in (("from", from_), ("size", size)):
        if value < 0:
            raise IllegalArgument(f"Parameter [{name}] cannot be < 0")
    return from_, size


def parse_bool(name: str, value: str | bool | None, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    raise IllegalArgument(f"Failed to parse value [{value}] as only [true] or [false] are allowed.")


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None,
                  pretty: bool = False) -> Response:
    text = json.dumps(body, indent=2 if pretty else None, separators=None if pretty else (",", ":"))
    return Response(text.encode(), status_code=status, media_type="application/json", headers=dict(headers or {}))


def error_response(err: ElasticsearchError, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(err.body(), err.status, headers)
