"""The web console under ``/app``: clinicians, biomedical engineers and linkage review.

The console is plain HTML, CSS and ES modules served from ``console/static`` (no build step,
no CDN, works offline). It holds no data of its own: every screen is drawn from the FHIR API
at ``/fhir`` (and ``/linkage`` when that router is mounted), so it sees exactly what an
authorized FHIR client sees. The composition root includes ``build_console_router()`` and
lets ``public_paths()`` (the page and its assets, no data) through without a token, so a
browser can load the sign-in page.
"""

from console.router import build_console_router, public_paths

__all__ = ["build_console_router", "public_paths"]
