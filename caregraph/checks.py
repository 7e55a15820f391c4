"""``caregraph check``: settings, data dir, database and bus, each reached for real."""

from __future__ import annotations

from collections.abc import Iterator

from caregraph.preflight import ensure_writable_dir
from caregraph.settings import Settings
from caregraph.wiring import build_bus, open_database


def run_checks(settings: Settings) -> Iterator[str]:
    """Yield one line per passed check; raise the first failure as a ``CaregraphError``."""
    path = ensure_writable_dir(settings.data_dir)
    yield f"data dir      ok  {path}"
    db = open_database(settings, migrate=False)
    try:
        db.ping()
    finally:
        db.close()
    yield f"database      ok  {_redact(settings.effective_database_url)}"
    bus = build_bus(settings)
    try:
        bus.ping()
    finally:
        bus.close()
    where = settings.kafka_bootstrap or f"embedded in {path / 'bus'}"
    yield f"bus           ok  {where}"


def _redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        rest = f"{user}:***@{rest.split('@', 1)[1]}"
    return f"{scheme}{sep}{rest}"
