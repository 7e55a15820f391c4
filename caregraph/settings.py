"""Typed settings, read once from ``CAREGRAPH_*`` environment variables and CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from devices.dicom.access import setting_value as dicom_callers_value
from security.allowlists import DicomCaller

ROLES = ("api", "mllp", "dicom", "serial", "normalizer", "store-writer", "linkage")
Role = Literal["api", "mllp", "dicom", "serial", "normalizer", "store-writer", "linkage"]


class Settings(BaseSettings):
    """Every setting caregraph reads; documented in README.md with its default."""

    model_config = SettingsConfigDict(env_prefix="CAREGRAPH_", extra="ignore")

    data_dir: Path = Field(Path("./caregraph-data"), description="Embedded bus log and SQLite.")
    database_url: str | None = Field(
        None, description="Unset: SQLite file in DATA_DIR; or postgresql://user@host/db."
    )
    kafka_bootstrap: str | None = Field(None, description="Unset: the embedded bus.")
    kafka_partitions: int = Field(6, ge=1, description="Partitions of topics caregraph creates.")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    mllp_port: int = Field(2575, ge=0, le=65535)
    dicom_port: int = Field(11112, ge=0, le=65535)
    dicom_ae: str = Field("CAREGRAPH", min_length=1, max_length=16)
    log_json: bool = Field(False, description="One JSON object per log line (for collectors).")
    # Authorization (issue 7), see security/ and caregraph/security_wiring.py.
    auth_mode: Literal["development", "jwks"] = Field(
        "development", description="development: caregraph mints tokens with its own key."
    )
    auth_issuer: str = Field("urn:caregraph", description="iss of caregraph's own tokens.")
    auth_audience: str = Field("urn:caregraph:api", description="aud every token must carry.")
    auth_jwks: str | None = Field(None, description="JWKS file or https URL (jwks mode).")
    auth_jwks_issuer: str | None = Field(None, description="iss of tokens signed by AUTH_JWKS.")
    auth_algorithms: Annotated[tuple[str, ...], NoDecode] = Field(
        ("RS256", "RS384", "ES384"), description="Accepted JWT algorithms, comma-separated."
    )
    # The console's SMART sign-in (authorization code with PKCE) in jwks mode.
    console_client_id: str | None = Field(None, description="The console's client id at the IdP.")
    console_authorization_endpoint: str | None = Field(
        None, description="The IdP's SMART authorization endpoint (jwks mode)."
    )
    console_token_endpoint: str | None = Field(
        None, description="The IdP's token endpoint, called from the browser (jwks mode)."
    )

    # Edge allowlists and TLS (issue 7), see security/allowlists.py and security/tls.py.
    dicom_allowed_callers: Annotated[dict[str, DicomCaller] | None, NoDecode] = Field(
        None,
        description='JSON {"AE": {"hosts": [...], "operations": [...], "port": N}} or '
        "AE@host[|host][/port][:op,...] separated by ';'; unset: any.",
    )
    hl7_allowed_facilities: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="MSH-4 namespaces allowed to send HL7, comma-separated; empty: any."
    )
    hl7_intake: Literal["full", "structure"] = Field(
        "full",
        description="full: every message is mapped before AA, so content that cannot be "
        "mapped is answered AE; structure: scope and structure only before AA (a third of "
        "the listener's CPU), content errors go to deadletter after the AA.",
    )
    mllp_hold_backlog: int = Field(
        5_000,
        ge=0,
        description="Resources the store writer may have waiting before the MLLP listener "
        "holds its ACKs (up to 10 s each) until the backlog halves; 0: never held. Higher "
        "takes a little more when overloaded, with a longer wait until searchable.",
    )
    hl7_ack_routes: str = Field(
        "",
        description="Return addresses of enhanced-mode application ACKs: "
        "FACILITY[^APPLICATION]=host:port, comma-separated; empty: none sent.",
    )
    hl7_ack_tls_ca_file: Path | None = Field(
        None,
        description="CA of the return addresses' certificates: application ACKs go over TLS "
        "(presenting TLS_CERT_FILE when set); unset: plain MLLP.",
    )
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain: HTTPS, MLLPS.")
    tls_key_file: Path | None = Field(None, description="PEM private key of TLS_CERT_FILE.")
    tls_client_ca_file: Path | None = Field(None, description="CA for mutual TLS on MLLP.")

    # Partner messaging (issue 7), see messaging/ and caregraph/security_wiring.py.
    partners_file: Path | None = Field(
        None, description="JSON file of partner institutions (messaging/partners.py); unset: none."
    )
    public_url: str | None = Field(
        None,
        description="Base URL partners reach caregraph at; unset: http://HTTP_HOST:HTTP_PORT.",
    )
    outbox_poll_s: float = Field(
        1.0, gt=0, le=60, description="Seconds between the delivery loop's looks at the outbox."
    )

    @field_validator("auth_algorithms", "hl7_allowed_facilities", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("dicom_allowed_callers", mode="before")
    @classmethod
    def _dicom_callers(cls, value: object) -> object:
        return dicom_callers_value(value)

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return value.rstrip("/")

    @property
    def effective_public_url(self) -> str:
        """caregraph's base URL as partners reach it (its FHIR base is this plus /fhir)."""
        if self.public_url:
            return self.public_url
        scheme = "https" if self.tls_cert_file else "http"
        return f"{scheme}://{self.http_host}:{self.http_port}"

    @property
    def effective_database_url(self) -> str:
        """The database URL in force: the setting, or SQLite inside the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'caregraph.sqlite3').resolve()}"
