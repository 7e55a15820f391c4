"""``caregraph token``, ``caregraph client add|list|revoke`` and ``caregraph audit verify``.

``caregraph client add --name "Hospital B" --jwks b-public.json --scope "system/*.rs"``
registers a SMART Backend Services client (its public keys and the scopes it may get) in
the database and prints its client_id; ``list`` shows them, ``revoke`` ends one.

``caregraph token`` mints an access token with caregraph's own key (development mode).

For the demo and for tests: ``caregraph token --scope "user/*.rs"`` prints a JWT that the
API accepts as ``Authorization: Bearer <token>``; ``--patient ID`` restricts it to that
patient's compartment. Refused in jwks mode, where an external server issues tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from caregraph.cli_common import DatabaseUrl, DataDir, clean_errors, settings_from
from caregraph.errors import ConfigError
from caregraph.settings import Settings
from security.clients import ClientRegistry


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


def register(app: typer.Typer) -> None:
    """Add ``token`` and ``client`` to the caregraph CLI."""
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
