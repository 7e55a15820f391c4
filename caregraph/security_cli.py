"""``caregraph token``: mint an access token with caregraph's own key (development mode).

For the demo and for tests: ``caregraph token --scope "user/*.rs"`` prints a JWT that the
API accepts as ``Authorization: Bearer <token>``; ``--patient ID`` restricts it to that
patient's compartment. Refused in jwks mode, where an external server issues tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from caregraph.errors import ConfigError
from caregraph.settings import Settings


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


def register(app: typer.Typer) -> None:
    """Add ``token`` to the caregraph CLI."""

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
        data_dir: Annotated[
            Path | None, typer.Option(help="Data directory [CAREGRAPH_DATA_DIR].")
        ] = None,
    ) -> None:
        """Print a development access token for the API (development mode only)."""
        from caregraph.cli import _clean_errors, _settings

        with _clean_errors():
            settings = _settings(data_dir=data_dir)
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
