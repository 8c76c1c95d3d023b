"""A loopback HTTP server standing in for the API server: it records each request and answers
an empty list, so a component's Kubernetes calls can be turned into the RBAC permissions they need."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

from kubernetes import client

Permission = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


class _Recorder(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path))  # type: ignore[attr-defined]
        body = json.dumps({"kind": "List", "apiVersion": "v1", "items": [], "resources": [], "data": {}, "spec": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def recording_api() -> Iterator[tuple[Any, list[tuple[str, str]]]]:
    """(ApiClient, requests): every request the client makes is appended as (method, path)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    api = client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}"))
    try:
        yield api, server.requests  # type: ignore[attr-defined]
    finally:
        api.close()
        server.shutdown()
        server.server_close()
        thread.join()


def permission(method: str, path: str) -> Permission:
    """The RBAC (group, resource, verb) of one API request, as the API server's authorizer sees it."""
    url = urlsplit(path)
    parts = url.path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    watch = parse_qs(url.query).get("watch") == ["true"]
    verb = {"GET": "watch" if watch else ("get" if name else "list"), "POST": "create", "PATCH": "patch",
            "PUT": "update", "DELETE": "delete" if name else "deletecollection"}[method]
    return group, f"{resource}/{sub}" if sub else resource, verb


def granted(role: dict[str, Any]) -> set[Permission]:
    """The (group, resource, verb) triples a Role or ClusterRole grants (resourceNames aside)."""
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}
