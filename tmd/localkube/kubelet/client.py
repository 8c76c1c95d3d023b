"""A small async client for the few Kubernetes API calls a kubelet makes.

aiohttp rather than the official client in threads: the kubelets share one asyncio loop with the
API server and each other, a watch is a plain streamed GET, and a handful of calls do not justify
a thread per watch (the official client's watch blocks a thread for its lifetime).
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Mapping

import aiohttp


class APIError(Exception):
    def __init__(self, status: int, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else str(body)[:200]
        super().__init__(f"{method} {path}: {status} {message}")


class KubeClient:
    def __init__(self, server: str, user_agent: str) -> None:
        self.server = server.rstrip("/")
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self.closed = False  # set by the owner before the last close: no new requests are started

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": self.user_agent, "Accept": "application/json"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None, content_type: str = "application/json", timeout: float = 30.0
    ) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(method, self.server + path, params=params, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            text = await response.text()
            try:
                payload = json.loads(text) if text else None
            except ValueError:
                payload = text
            if response.status >= 400:
                raise APIError(response.status, payload, method, path)
            return payload

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, params=params or None)

    async def create(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    async def delete(self, path: str, body: Any = None, **params: str) -> Any:
        return await self.request("DELETE", path, body=body, params=params or None)

    async def watch(self, path: str, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Watch events as dicts until the server closes the stream."""
        query = {**params, "watch": "true"}
        async with self.session.get(self.server + path, params=query, timeout=aiohttp.ClientTimeout(total=None, sock_read=90)) as response:
            if response.status >= 400:
                text = await response.text()
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = text
                raise APIError(response.status, payload, "WATCH", path)
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)
