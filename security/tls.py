"""TLS server contexts for the listeners (HTTP through uvicorn's own options, MLLP here).

Modern defaults only: TLS 1.2 or later (``ssl.create_default_context``); with a client CA
file the peer must present a certificate it signed (mutual TLS, the usual choice for MLLP
between hospital systems, which carry no tokens).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from caregraph.errors import ConfigError


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server-side context with the certificate chain loaded.

    Raises:
        ConfigError: a file is missing or the key does not match the certificate.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
        if client_ca is not None:
            context.load_verify_locations(cafile=client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use the TLS files ({cert}, {key}): {exc}; check CAREGRAPH_TLS_CERT_FILE "
            "and CAREGRAPH_TLS_KEY_FILE"
        ) from exc
    return context
