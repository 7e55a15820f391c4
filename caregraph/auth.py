"""The one authorization dependency every HTTP route goes through.

Until SMART on FHIR authorization lands (issue 7) there is no token to check: access is
limited by where the server listens (loopback only, unless started with ``--insecure``;
see ``caregraph.preflight``). Issue 7 replaces the body of ``authorize``, not its callers.
"""

from __future__ import annotations


def authorize() -> None:
    """Allow: the listen address is the access boundary for now."""
