"""TLS contexts: the listeners' (HTTP through uvicorn's own options, MLLP here) and the
MLLP client's that delivers application ACKs to senders' return addresses.

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


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client-side context that trusts only ``ca`` and checks the peer's host name,
    presenting ``cert``/``key`` when given (a receiver that wants mutual TLS).

    Raises:
        ConfigError: a file is missing or unreadable, or the key does not match.
    """
    try:
        # with a cafile, the system's CAs are not loaded
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None and key is not None:
            context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use the TLS files ({ca}, {cert}, {key}): {exc}; check "
            "CAREGRAPH_HL7_ACK_TLS_CA_FILE, CAREGRAPH_TLS_CERT_FILE and CAREGRAPH_TLS_KEY_FILE"
        ) from exc
    return context
