"""The partners caregraph sends messages to, from a JSON file, and what sending needs.

    {"partners": [{"name": "hospital-b",
                   "endpoint": "https://b.example/fhir/$process-message",
                   "token_url": "https://b.example/auth/token",
                   "client_id": "<caregraph's client id at hospital-b>",
                   "scope": "system/Patient.cru system/Encounter.cru ..."}]}

Read once by the composition root (nothing here reads the environment); caregraph's own
signing key (``security.keys``) signs the client assertions for every partner, each of which
registered its public JWKS.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from caregraph.errors import ConfigError
from messaging.delivery import ClientCredentials, Deliverer
from messaging.outbox import Outbox
from security.keys import SigningKey

_FIELDS = ("name", "endpoint", "token_url", "client_id")


@dataclass(frozen=True, slots=True)
class Partner:
    name: str
    endpoint: str
    token_url: str
    client_id: str
    scope: str = "system/*.cu"


def _url(value: str, field: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"partner {name!r}: {field} {value!r} is not an http(s) URL")
    return value


def parse_partners(data: Any) -> list[Partner]:
    """Partners from the decoded file.

    Raises:
        ConfigError: not the shape above, a missing field, a URL that is not http(s), or
            two partners with one name.
    """
    items = data.get("partners") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError('the partners file needs {"partners": [...]}')
    partners: list[Partner] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in _FIELDS):
            raise ConfigError(f"partner {position} needs the strings {', '.join(_FIELDS)}")
        name = item["name"]
        partners.append(
            Partner(
                name,
                _url(item["endpoint"], "endpoint", name),
                _url(item["token_url"], "token_url", name),
                item["client_id"],
                str(item.get("scope") or "system/*.cu"),
            )
        )
    names = [p.name for p in partners]
    if len(set(names)) != len(names):
        raise ConfigError("two partners share one name in the partners file")
    return partners


def load_partners(path: Path) -> list[Partner]:
    """Partners from the JSON file at ``path``; ``ConfigError`` if unreadable or invalid."""
    try:
        return parse_partners(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the partners file {path}: {exc}") from exc


class Partners:
    """Partners by name: where their messages go, and caregraph's credentials there."""

    def __init__(self, partners: Sequence[Partner], key: SigningKey) -> None:
        self._by_name = {p.name: p for p in partners}
        self.credentials: Mapping[str, ClientCredentials] = {
            p.name: ClientCredentials(p.token_url, p.client_id, key, p.scope) for p in partners
        }

    def send(self, outbox: Outbox, name: str, bundle: dict[str, Any]) -> str:
        """Queue a message Bundle for partner ``name``; returns the outbox id.

        Raises:
            KeyError: no such partner. ValueError: not a message Bundle.
        """
        partner = self._by_name[name]
        return outbox.enqueue(partner.name, partner.endpoint, bundle)

    def worker(
        self, outbox: Outbox, *, timeout_s: float = 30.0, idle_s: float = 1.0
    ) -> Callable[[threading.Event], None]:
        """The delivery loop for a thread (``caregraph.runtime.ThreadService(name, run)``):
        it owns its HTTP client, opened when the loop starts and closed when it stops."""

        def run(stop: threading.Event) -> None:
            with httpx.Client(timeout=timeout_s) as http:
                Deliverer(outbox, self.credentials, http).run(stop, idle_s)

        return run
