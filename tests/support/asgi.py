"""Requests straight into an ASGI app through httpx's ASGI transport, answered in-process.

Starlette's own ``TestClient`` warns that its httpx backend is deprecated (an error under
this suite's ``filterwarnings``), so the suites share this small synchronous client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
from starlette.types import ASGIApp


class AsgiClient:
    """``request``/``get``/``post``/``put`` answered by ``app``; ``headers`` go on every
    request. An exception the app lets through is raised here (a crash, in a fuzz test)."""

    __test__ = False

    def __init__(self, app: ASGIApp, headers: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.headers = dict(headers or {})

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://test", headers=self.headers
            ) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)
