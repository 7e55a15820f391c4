"""``caregraph token``, ``caregraph client add|list|revoke``, ``caregraph audit verify`` and
``caregraph partner jwks|list|send-transfer|send-observations|outbox``.

``caregraph client add --name "Hospital B" --jwks b-public.json --scope "system/*.rs"``
registers a SMART Backend Services client (its public keys and the scopes it may get) in
the database and prints its client_id; ``list`` shows them, ``revoke`` ends one.

``caregraph token`` mints an access token with caregraph's own key (development mode).

For the demo and for tests: ``caregraph token --scope "user/*.rs"`` prints a JWT that the
API accepts as ``Authorization: Bearer <token>``; ``--patient ID`` restricts it to that
patient's compartment. Refused in jwks mode, where an external server issues tokens.

Partners (``CAREGRAPH_PARTNERS_FILE``): ``caregraph partner jwks`` prints caregraph's public
key for partners to register (``caregraph client add`` on their side); ``send-transfer
--patient ID --to NAME`` queues a transfer with the patient's recent vital signs (of every
record the MPI links to it) in the outbox, which the api role delivers; ``outbox`` shows
each message's delivery status, and with ``--id`` the partner's response message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from caregraph.cli_common import DatabaseUrl, DataDir, clean_errors, settings_from
from caregraph.errors import ConfigError
from caregraph.settings import Settings
from security.clients import ClientRegistry

if TYPE_CHECKING:
    from messaging.transfer import Sender


def mint_development_token(
    settings: Settings,
    scope: str,
    *,
    patient: str | None = None,
    fhir_user: str | None = None,
    subject: str = "developer",
    lifetime_s: int = 3600,
) -> str:
    """A token signed with the data dir's key.

    Raises:
        ConfigError: not in development mode, or the key cannot be read or created.
    """
    from caregraph.security_wiring import token_minter

    if settings.auth_mode != "development":
        raise ConfigError(
            "caregraph token mints tokens only in development mode (CAREGRAPH_AUTH_MODE="
            "development); in jwks mode ask your authorization server"
        )
    return token_minter(settings).mint(
        scope, subject=subject, patient=patient, fhir_user=fhir_user, lifetime_s=lifetime_s
    )


@contextmanager
def _registry(data_dir: Path | None, database_url: str | None) -> Iterator[ClientRegistry]:
    """The client registry on the configured database; errors as one line, exit 2."""
    from caregraph.wiring import open_database

    with clean_errors():
        settings = settings_from(data_dir=data_dir, database_url=database_url)
        db = open_database(settings)
        try:
            yield ClientRegistry.open(db)
        finally:
            db.close()


@contextmanager
def _messaging(
    data_dir: Path | None, database_url: str | None, partners_file: Path | None
) -> Iterator[Sender]:
    """The message sender on the configured database; errors as one line, exit 2."""
    from caregraph.security_wiring import message_sender
    from caregraph.wiring import open_database
    from fhir_store.store import FhirStore
    from linkage.mpi import Mpi
    from linkage.sql import SqlRepository

    with clean_errors():
        settings = settings_from(
            data_dir=data_dir, database_url=database_url, partners_file=partners_file
        )
        db = open_database(settings)
        try:
            store = FhirStore(db)
            yield message_sender(settings, store, Mpi(SqlRepository.open(db)))
        finally:
            db.close()


PartnersFile = Annotated[
    Path | None, typer.Option(help="JSON file of partners [CAREGRAPH_PARTNERS_FILE].")
]
PatientId = Annotated[str, typer.Option("--patient", help="Patient id here.")]
PartnerName = Annotated[str, typer.Option("--to", help="Partner name in the partners file.")]
Hours = Annotated[float, typer.Option(help="Vital signs of the last HOURS.", min=0)]
MaxObservations = Annotated[int, typer.Option(help="At most this many vital signs.", min=1)]


def _register_partner(app: typer.Typer) -> None:
    partner = typer.Typer(help="Partner institutions: FHIR messages out, and their status.")
    app.add_typer(partner, name="partner")

    @partner.command("jwks")
    def partner_jwks(data_dir: DataDir = None) -> None:
        """Print caregraph's public JWKS (its key is created if missing), for partners to
        register caregraph as a Backend Services client."""
        from caregraph.security_wiring import signing_key

        with clean_errors():
            key = signing_key(settings_from(data_dir=data_dir))
        typer.echo(json.dumps({"keys": [key.public_jwk]}, indent=2))

    @partner.command("list")
    def partner_list(data_dir: DataDir = None, partners_file: PartnersFile = None) -> None:
        """One line per partner: name, endpoint, token URL, client id there, events."""
        from caregraph.security_wiring import partners

        with clean_errors():
            configured = partners(settings_from(data_dir=data_dir, partners_file=partners_file))
        for p in configured:
            inbound = p.inbound_client_id or "-"
            events = ",".join(sorted(p.events))
            typer.echo(f"{p.name}\t{p.endpoint}\t{p.token_url}\t{p.client_id}\t{inbound}\t{events}")

    @partner.command("send-transfer")
    def send_transfer(
        patient: PatientId,
        to: PartnerName,
        hours: Hours = 24.0,
        max_observations: MaxObservations = 200,
        data_dir: DataDir = None,
        database_url: DatabaseUrl = None,
        partners_file: PartnersFile = None,
    ) -> None:
        """Queue a transfer of a patient to a partner, with its recent vital signs; prints
        the outgoing message's id (see caregraph partner outbox)."""
        with _messaging(data_dir, database_url, partners_file) as sender:
            typer.echo(sender.transfer(patient, to, hours=hours, limit=max_observations))

    @partner.command("send-observations")
    def send_observations(
        patient: PatientId,
        to: PartnerName,
        hours: Hours = 24.0,
        max_observations: MaxObservations = 200,
        data_dir: DataDir = None,
        database_url: DatabaseUrl = None,
        partners_file: PartnersFile = None,
    ) -> None:
        """Queue a patient's recent vital signs for a partner; prints the message's id."""
        with _messaging(data_dir, database_url, partners_file) as sender:
            typer.echo(sender.observations(patient, to, hours=hours, limit=max_observations))

    @partner.command("outbox")
    def outbox(
        status: Annotated[
            str | None, typer.Option(help="Only pending, delivered or failed messages.")
        ] = None,
        message_id: Annotated[
            str | None, typer.Option("--id", help="One message, with the partner's response.")
        ] = None,
        data_dir: DataDir = None,
        database_url: DatabaseUrl = None,
    ) -> None:
        """Outgoing messages, newest first: id, partner, status, attempts, response code,
        last error. With --id, that message's line and then the partner's response."""
        from caregraph.wiring import open_database
        from messaging.outbox import DeliveryStatus, Outbox

        with clean_errors():
            settings = settings_from(data_dir=data_dir, database_url=database_url)
            try:
                wanted = DeliveryStatus(status) if status else None
            except ValueError:
                raise ConfigError("--status is pending, delivered or failed") from None
            db = open_database(settings)
            try:
                box = Outbox.open(db)
                if message_id is None:
                    rows, answer = box.recent(wanted), None
                else:
                    row = box.get(message_id)
                    if row is None:
                        raise ConfigError(f"no outgoing message {message_id!r}")
                    rows, answer = [row], box.response(message_id)
            finally:
                db.close()
        for r in rows:
            fields = (r.id, r.partner, r.status.value, str(r.attempts))
            extra = (r.response_code or "-", r.last_error or "")
            typer.echo("\t".join((*fields, *extra)))
        if answer:
            typer.echo(answer)


def register(app: typer.Typer) -> None:
    """Add ``token``, ``client``, ``audit`` and ``partner`` to the caregraph CLI."""
    _register_partner(app)
    clients = typer.Typer(help="SMART Backend Services clients (partners, service accounts).")
    app.add_typer(clients, name="client")

    audit = typer.Typer(help="The audit log (AuditEvents, hash-chained).")
    app.add_typer(audit, name="audit")

    @audit.command("verify")
    def audit_verify(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
        """Walk the AuditEvent hash chain; exit 1 with each break found."""
        from caregraph.security_wiring import verify_audit_log
        from caregraph.wiring import open_database
        from fhir_store.store import FhirStore

        with clean_errors():
            settings = settings_from(data_dir=data_dir, database_url=database_url)
            db = open_database(settings)
            try:
                problems = verify_audit_log(FhirStore(db))
            finally:
                db.close()
        for problem in problems:
            typer.echo(problem, err=True)
        if problems:
            raise typer.Exit(1)
        typer.echo("the audit chain is intact")

    @clients.command("add")
    def client_add(
        name: Annotated[str, typer.Option(help="Who the client is, e.g. Hospital B.")],
        jwks: Annotated[Path, typer.Option(help="File with the client's public JWKS.")],
        scope: Annotated[
            str, typer.Option(help='system/ scopes it may be granted, e.g. "system/*.rs".')
        ],
        data_dir: DataDir = None,
        database_url: DatabaseUrl = None,
    ) -> None:
        """Register a client; prints its client_id."""
        with _registry(data_dir, database_url) as registry:
            try:
                keys = json.loads(jwks.read_text())
                client = registry.add(name, keys, scope)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot add the client: {exc}") from exc
            typer.echo(client.client_id)

    @clients.command("list")
    def client_list(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
        """One line per client: id, status, scopes, key ids, name."""
        with _registry(data_dir, database_url) as registry:
            for c in registry.list():
                status = "active" if c.active else f"revoked {c.revoked_at}"
                kids = ",".join(c.keys().kids)
                typer.echo(f"{c.client_id}\t{status}\t{c.scope}\t{kids}\t{c.name}")

    @clients.command("revoke")
    def client_revoke(
        client_id: str, data_dir: DataDir = None, database_url: DatabaseUrl = None
    ) -> None:
        """Revoke a client: its assertions are refused from now on."""
        with _registry(data_dir, database_url) as registry:
            if not registry.revoke(client_id):
                raise ConfigError(f"no active client {client_id}; see caregraph client list")
            typer.echo(f"revoked {client_id}")

    @app.command()
    def token(
        scope: Annotated[
            str, typer.Option(help='SMART scopes, space-separated, e.g. "user/*.rs".')
        ],
        patient: Annotated[
            str | None, typer.Option(help="Patient id: restrict to its compartment.")
        ] = None,
        fhir_user: Annotated[
            str | None, typer.Option(help="fhirUser claim, e.g. Practitioner/123.")
        ] = None,
        subject: Annotated[str, typer.Option(help="sub claim.")] = "developer",
        lifetime: Annotated[int, typer.Option(help="Seconds until it expires.", min=1)] = 3600,
        data_dir: DataDir = None,
    ) -> None:
        """Print a development access token for the API (development mode only)."""

        with clean_errors():
            settings = settings_from(data_dir=data_dir)
            typer.echo(
                mint_development_token(
                    settings,
                    scope,
                    patient=patient,
                    fhir_user=fhir_user,
                    subject=subject,
                    lifetime_s=lifetime,
                )
            )
