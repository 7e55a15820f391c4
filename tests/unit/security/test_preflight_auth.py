"""The loopback rule is lifted by jwks mode, kept for development mode's self-minted tokens."""

from __future__ import annotations

import pytest

from caregraph.errors import ConfigError
from caregraph.preflight import ensure_loopback_unless_insecure


def test_jwks_mode_may_listen_anywhere() -> None:
    assert ensure_loopback_unless_insecure("0.0.0.0", insecure=False, auth_mode="jwks") is False


def test_development_mode_needs_loopback_or_insecure() -> None:
    with pytest.raises(ConfigError, match="CAREGRAPH_AUTH_MODE=jwks"):
        ensure_loopback_unless_insecure("0.0.0.0", insecure=False, auth_mode="development")
    assert ensure_loopback_unless_insecure("0.0.0.0", insecure=True) is True
    assert ensure_loopback_unless_insecure("::1", insecure=False) is False
