"""The partners caregraph exchanges messages with, from a JSON file, and what sending needs.

    {"partners": [{"name": "hospital-b",
                   "endpoint": "https://b.example/fhir/$process-message",
                   "token_url": "https://b.example/auth/token",
                   "client_id": "<caregraph's client id at hospital-b>",
                   "scope": "system/Patient.cru system/Encounter.cru ...",
                   "events": ["transfer", "observations"],
                   "inbound_client_id": "<hospital-b's client id here>"}]}

``endpoint`` may be given as ``fhir_base`` instead (``$process-message`` below it).
``events``: the event names (``messaging.events.EVENTS``) caregraph sends this partner;
absent: every event. ``inbound_client_id``: the client registered here for the partner
(``caregraph client add``); with it, only that client may send as ``endpoint`` and that
client may send as nothing else (:meth:`Partners.speaks_for`).

Read once by the composition root (nothing here reads the environment); caregraph's own
signing key (``security.keys``) signs the client assertions for every partner, each of which
registered its public JWKS.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from caregraph.errors import ConfigError
from messaging.delivery import ClientCredentials, Deliverer
from messaging.envelope import OPERATION
from messaging.events import EVENTS
from messaging.outbox import Outbox
from security.keys import SigningKey
from security.tokens import Principal

_FIELDS = ("name", "token_url", "client_id")
#: Every event name caregraph knows, what a partner receives unless its entry says less.
EVENT_NAMES = frozenset(e.name for e in EVENTS.values())


class PartnerRefused(ConfigError):
    """No partner by that name, or it does not take that event (see its ``events``)."""


@dataclass(frozen=True, slots=True)
class Partner:
    name: str
    endpoint: str
    token_url: str
    client_id: str
    scope: str = "system/*.cu"
    events: frozenset[str] = EVENT_NAMES
    inbound_client_id: str | None = None


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
    partners = [_partner(position, item) for position, item in enumerate(items)]
    names = [p.name for p in partners]
    if len(set(names)) != len(names):
        raise ConfigError("two partners share one name in the partners file")
    inbound = [p.inbound_client_id for p in partners if p.inbound_client_id]
    if len(set(inbound)) != len(inbound):
        raise ConfigError("two partners share one inbound_client_id in the partners file")
    return partners


def _partner(position: int, item: Any) -> Partner:
    if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in _FIELDS):
        raise ConfigError(f"partner {position} needs the strings {', '.join(_FIELDS)}")
    name = item["name"]
    endpoint = item.get("endpoint")
    base = item.get("fhir_base")
    if not isinstance(endpoint, str) and isinstance(base, str):
        endpoint = f"{_url(base, 'fhir_base', name).rstrip('/')}/{OPERATION}"
    if not isinstance(endpoint, str):
        raise ConfigError(f"partner {name!r} needs endpoint (or fhir_base)")
    events = item.get("events")
    if events is None:
        chosen = EVENT_NAMES
    elif isinstance(events, list) and all(isinstance(e, str) for e in events):
        unknown = sorted(set(events) - EVENT_NAMES)
        if unknown:
            known = ", ".join(sorted(EVENT_NAMES))
            raise ConfigError(f"partner {name!r}: unknown events {unknown}; known: {known}")
        chosen = frozenset(events)
    else:
        raise ConfigError(f"partner {name!r}: events is a list of event names")
    inbound = item.get("inbound_client_id")
    if inbound is not None and not isinstance(inbound, str):
        raise ConfigError(f"partner {name!r}: inbound_client_id is a string")
    return Partner(
        name,
        _url(endpoint, "endpoint", name),
        _url(item["token_url"], "token_url", name),
        item["client_id"],
        str(item.get("scope") or "system/*.cu"),
        chosen,
        inbound or None,
    )


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

    def __iter__(self) -> Iterator[Partner]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Partner:
        """The partner called ``name``.

        Raises:
            PartnerRefused: no such partner (the message names the known ones).
        """
        partner = self._by_name.get(name)
        if partner is None:
            known = ", ".join(sorted(self._by_name)) or "none configured"
            raise PartnerRefused(f"no partner {name!r} (partners: {known})")
        return partner

    def send(self, outbox: Outbox, name: str, bundle: dict[str, Any]) -> str:
        """Queue a message Bundle for partner ``name``; returns the outbox id.

        Raises:
            KeyError: no such partner. PartnerRefused: the partner does not take the
                message's event. ValueError: not a message Bundle.
        """
        partner = self._by_name[name]
        event = _event_name(bundle)
        if event is not None and event not in partner.events:
            raise PartnerRefused(f"partner {name!r} does not take {event} messages")
        return outbox.enqueue(partner.name, partner.endpoint, bundle)

    def speaks_for(self, principal: Principal, endpoint: str) -> bool:
        """Whether ``principal`` may send messages as the partner at ``endpoint``: a client
        bound to a partner (its ``inbound_client_id``) sends only as that partner's endpoint,
        and a bound partner's endpoint is spoken for by its client only. Unbound clients and
        endpoints stay open (a partner not in the file, or one without the binding)."""
        bound_endpoint = next(
            (p.endpoint for p in self if p.inbound_client_id == principal.client_id), None
        )
        if principal.client_id is not None and bound_endpoint is not None:
            return bound_endpoint == endpoint
        owner = next((p for p in self if p.endpoint == endpoint and p.inbound_client_id), None)
        return owner is None

    def worker(
        self, outbox: Outbox, *, timeout_s: float = 30.0, idle_s: float = 1.0
    ) -> Callable[[threading.Event], None]:
        """The delivery loop for a thread (``caregraph.runtime.ThreadService(name, run)``):
        it owns its HTTP client, opened when the loop starts and closed when it stops."""

        def run(stop: threading.Event) -> None:
            with httpx.Client(timeout=timeout_s) as http:
                Deliverer(outbox, self.credentials, http).run(stop, idle_s)

        return run


def _event_name(bundle: dict[str, Any]) -> str | None:
    """The name (``EVENTS``) of a message Bundle's event, None if it is not one of them."""
    try:
        coding = bundle["entry"][0]["resource"]["eventCoding"]
        event = EVENTS.get((str(coding.get("system") or ""), str(coding["code"])))
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return None if event is None else event.name
