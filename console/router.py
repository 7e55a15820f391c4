"""The ``/app`` router: the console's page, its static assets and its vitals table.

Assets are served from a fixed allow-list built once from ``console/static`` (the files
that exist when the router is built), so no request path ever reaches the filesystem:
``..``, absolute paths and symlink tricks simply are not in the list. Every response
carries a Content-Security-Policy that allows only this origin, which is also what makes
"no CDN, works offline" checkable: a page that tried to load a remote asset would fail.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from adapters.serial.observation import device_resource_id
from console.signin import SignInOptions, build_signin_router, signin_public_paths
from console.vitals import vitals_table

STATIC_DIR = Path(__file__).parent / "static"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The shell is tiny and changes with each release; always revalidate.
    "Cache-Control": "no-cache",
}


def csp_for(sign_in: SignInOptions | None) -> str:
    """``CSP``, plus the token endpoint's origin in ``connect-src`` when the page signs in
    with the hospital's authorization server (SMART PKCE: the browser exchanges the code
    there itself). Navigating to its authorization endpoint needs no CSP entry."""
    origin = sign_in.smart.token_origin if sign_in and sign_in.smart else None
    if not origin:
        return CSP
    return CSP.replace("connect-src 'self'", f"connect-src 'self' {origin}")


_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


def asset_table(root: Path) -> dict[str, Path]:
    """Relative POSIX path -> file, for every regular file under ``root``."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _media_type(path: Path) -> str:
    return (
        _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )


def public_paths(
    static_dir: Path = STATIC_DIR, *, prefix: str = "/app", development_sign_in: bool = False
) -> frozenset[str]:
    """The paths that hold no data: the page, its static assets and the sign-in options,
    exactly; with ``development_sign_in``, also the development sign-in (which mints a
    token, so it must be reachable without one: only ever in development auth mode).

    The authorization middleware should let these through without a token (add them to
    its public paths), or a browser could not load the sign-in page that gets it one.
    ``vitals.json`` and ``device-id`` are not among them: the console asks for those with
    its token, like everything under ``/fhir``.
    """
    return frozenset(
        {
            prefix,
            f"{prefix}/",
            *(f"{prefix}/static/{name}" for name in asset_table(static_dir)),
            *signin_public_paths(development=development_sign_in, prefix=prefix),
        }
    )


def build_console_router(
    static_dir: Path = STATIC_DIR, *, prefix: str = "/app", sign_in: SignInOptions | None = None
) -> APIRouter:
    """The console: ``GET /app/`` (the page), ``/app/static/...``, ``/app/vitals.json``,
    ``/app/device-id/{device_id}`` and the sign-in routes of ``console.signin`` (the
    development sign-in only when ``sign_in`` has a ``mint``: development auth mode).

    The page itself holds no patient data (everything comes from ``/fhir``, which enforces
    authorization), so these routes need none.
    """
    router = APIRouter(prefix=prefix, tags=["console"], include_in_schema=False)
    assets = asset_table(static_dir)
    index = static_dir / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"the console page is missing: {index}")
    vitals = vitals_table()
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": csp_for(sign_in)}
    router.include_router(build_signin_router(sign_in or SignInOptions(), prefix=""))

    @router.get("")
    def root() -> Response:
        return RedirectResponse(f"{prefix}/", status_code=308)

    @router.get("/")
    def page() -> Response:
        return FileResponse(index, media_type=_TYPES[".html"], headers=headers)

    @router.get("/vitals.json")
    def vitals_json() -> Response:
        return JSONResponse(vitals, headers=headers)

    @router.get("/device-id/{device_id}")
    def device_id(device_id: str) -> Response:
        """The FHIR Device id that readings of ``device_id`` already reference, so a device
        registered here is the one its Observations point at (ids are uuid5, derived in
        ``adapters``; the browser does not re-implement that)."""
        return JSONResponse(
            {"device_id": device_id, "id": device_resource_id(device_id)}, headers=headers
        )

    @router.get("/static/{path:path}")
    def asset(path: str) -> Response:
        found = assets.get(path)
        if found is None:
            raise HTTPException(404, f"no console asset {path!r}")
        return FileResponse(found, media_type=_media_type(found), headers=headers)

    return router
