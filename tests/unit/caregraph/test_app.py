import asyncio

import httpx
from fastapi import FastAPI

from caregraph.app import create_app
from caregraph.errors import StoreUnavailable


def _down() -> None:
    raise StoreUnavailable("cannot reach PostgreSQL at db:5432")


def _get(app: FastAPI, path: str) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)

    return asyncio.run(go())


def test_healthz() -> None:
    assert _get(create_app(readiness={}), "/healthz").json() == {"status": "ok"}


def test_readyz_ok_and_not_ready() -> None:
    assert _get(create_app(readiness={"bus": lambda: None}), "/readyz").status_code == 200
    response = _get(create_app(readiness={"bus": lambda: None, "database": _down}), "/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {
        "bus": "ok",
        "database": "cannot reach PostgreSQL at db:5432",
    }
