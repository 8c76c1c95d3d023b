"""HTTP basic auth and API keys with two roles, from a Kubernetes Secret (docs/shim.md).

Secret data key `users.json` (base64 in the Secret, as always):

    {"users":    {"<name>": {"password": "<password>", "roles": ["admin"]}},
     "api_keys": {"<id>":   {"key": "<key>", "name": "<label>", "roles": ["user"]}}}

`admin` may do everything; `user` may read (GET) and infer. Clients send
`Authorization: Basic base64(name:password)` or `Authorization: ApiKey base64(id:key)`.
Failures are Elasticsearch `security_exception`s: 401 with `WWW-Authenticate`, 403 for a role
that may not do the action.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response

from tmd.api.errors import ElasticsearchError
from tmd.shim.http import error_response

WWW_AUTHENTICATE = 'Basic realm="security", charset="UTF-8", ApiKey'
USERS_KEY = "users.json"


class Role(str, enum.Enum):
    admin = "admin"
    user = "user"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


class SecurityError(ElasticsearchError):
    type = "security_exception"


def parse_users(document: Mapping[str, Any]) -> tuple[dict[str, tuple[str, frozenset[str]]],
                                                      dict[str, tuple[str, str, frozenset[str]]]]:
    users = {name: (str(u["password"]), frozenset(u.get("roles") or []))
             for name, u in (document.get("users") or {}).items()}
    keys = {kid: (str(k["key"]), str(k.get("name") or kid), frozenset(k.get("roles") or []))
            for kid, k in (document.get("api_keys") or {}).items()}
    return users, keys


def required_role(method: str, path: str) -> Role:
    """Reads and inference need `user`; everything that changes models or deployments `admin`."""
    if method in ("GET", "HEAD"):
        return Role.user
    if method == "POST" and (path.endswith("/_infer") or path.startswith("/_inference/")):
        return Role.user  # `_inference` POSTs only infer (Elasticsearch's monitor_inference privilege)
    return Role.admin


class Authenticator:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self.users, self.api_keys = parse_users(document)

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> "Authenticator":
        if USERS_KEY not in data:
            raise ValueError(f"the secret has no [{USERS_KEY}] key")
        return cls(json.loads(base64.b64decode(data[USERS_KEY])))

    def authenticate(self, header: str | None, path: str) -> Principal:
        if not header:
            raise self._unauthenticated(f"missing authentication credentials for REST request [{path}]")
        scheme, _, value = header.partition(" ")
        try:
            ident, _, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise self._unauthenticated(f"unable to authenticate with provided credentials for REST request [{path}]")
        if scheme.lower() == "basic":
            user = self.users.get(ident)
            if user and hmac.compare_digest(user[0].encode(), secret.encode()):
                return Principal(ident, user[1])
            raise self._unauthenticated(f"unable to authenticate user [{ident}] for REST request [{path}]")
        if scheme.lower() == "apikey":
            key = self.api_keys.get(ident)
            if key and hmac.compare_digest(key[0].encode(), secret.encode()):
                return Principal(key[1], key[2])
            raise self._unauthenticated("unable to authenticate with provided credentials and anonymous access is "
                                        "not allowed for this request")
        raise self._unauthenticated(f"unable to authenticate with provided credentials for REST request [{path}]")

    @staticmethod
    def _unauthenticated(reason: str) -> SecurityError:
        err = SecurityError(reason, status=401)
        err.headers = {"WWW-Authenticate": WWW_AUTHENTICATE}  # type: ignore[attr-defined]
        return err

    def authorize(self, principal: Principal, method: str, path: str) -> None:
        needed = required_role(method, path)
        if Role.admin.value in principal.roles or needed.value in principal.roles:
            return
        raise SecurityError(f"action [{method} {path}] is unauthorized for user [{principal.name}] with effective "
                            f"roles [{','.join(sorted(principal.roles))}], this action is granted by the roles "
                            f"[{needed.value}]", status=403)

    async def middleware(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        # Workers fetch model files by URI without credentials (docs/shim.md says how to restrict it).
        if not path.startswith("/_tmd/store/"):
            try:
                principal = self.authenticate(request.headers.get("authorization"), path)
                self.authorize(principal, request.method, path)
            except SecurityError as err:
                return error_response(err, getattr(err, "headers", None))
        return await call_next(request)
