"""The web console under ``/app``: clinicians, biomedical engineers and linkage review.

The console is plain HTML, CSS and ES modules served from ``console/static`` (no build step,
no CDN, works offline). It holds no data of its own: every screen is drawn from the FHIR API
at ``/fhir`` (and ``/linkage`` when that router is mounted), so it sees exactly what an
authorized FHIR client sees. The composition root includes ``build_console_router()`` and
lets ``public_paths()`` (the page, its assets and the sign-in options, no data) through
without a token, so a browser can load the sign-in page; in development auth mode it passes
``SignInOptions(mint=...)`` and ``public_paths(development_sign_in=True)``, which add the
development sign-in (``console.signin``).
"""

from console.router import build_console_router, public_paths
from console.signin import DEMO_USERS, DevUser, SignInOptions, SmartClient

__all__ = [
    "DEMO_USERS",
    "DevUser",
    "SignInOptions",
    "SmartClient",
    "build_console_router",
    "public_paths",
]
