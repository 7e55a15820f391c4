"""The ``caregraph`` command line: ``up``, ``demo``, ``simulate``, ``check``, ``version``.

Every failure caused by settings or unreachable services ends as one line on stderr and
exit status 2, never a traceback: the person at the terminal needs what to fix, not where.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

import typer

import caregraph
from caregraph import device_cli, security_cli
from caregraph.cli_common import DatabaseUrl, DataDir, KafkaBootstrap, clean_errors, settings_from
from caregraph.settings import ROLES

app = typer.Typer(
    help="caregraph: links a hospital's bedside equipment and clinical data into FHIR.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


HttpHost = Annotated[str | None, typer.Option(help="HTTP listen address [CAREGRAPH_HTTP_HOST].")]
HttpPort = Annotated[int | None, typer.Option(help="HTTP port [CAREGRAPH_HTTP_PORT].")]
MllpPort = Annotated[int | None, typer.Option(help="HL7 MLLP port [CAREGRAPH_MLLP_PORT].")]
DicomPort = Annotated[int | None, typer.Option(help="DICOM port [CAREGRAPH_DICOM_PORT].")]
DicomAe = Annotated[str | None, typer.Option(help="DICOM AE title [CAREGRAPH_DICOM_AE].")]


def _setup_logging(verbose: bool, json: bool) -> None:
    from observability.logging import configure

    configure(json=json, level=logging.DEBUG if verbose else logging.INFO)


@app.command()
def version() -> None:
    """Print the caregraph version."""
    typer.echo(caregraph.__version__)


@app.command()
def check(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    kafka_bootstrap: KafkaBootstrap = None,
) -> None:
    """Validate the settings, then reach the database and the bus; exit 2 with the reason."""
    from caregraph import checks

    with clean_errors():
        settings = settings_from(
            data_dir=data_dir, database_url=database_url, kafka_bootstrap=kafka_bootstrap
        )
        for line in checks.run_checks(settings):
            typer.echo(line)


@app.command()
def up(
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role",
            help=f"Run only these roles (repeatable): {', '.join(ROLES)}. Default: all built.",
        ),
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    kafka_bootstrap: KafkaBootstrap = None,
    http_host: HttpHost = None,
    http_port: HttpPort = None,
    mllp_port: MllpPort = None,
    dicom_port: DicomPort = None,
    dicom_ae: DicomAe = None,
    insecure: Annotated[
        bool,
        typer.Option(
            help="Allow a non-loopback address in development auth mode, whose tokens anyone "
            "with the data dir can mint (jwks mode needs no flag)."
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run caregraph's services in this process until Ctrl-C (all, or the chosen --role)."""
    from caregraph import launcher

    with clean_errors():
        settings = settings_from(
            data_dir=data_dir,
            database_url=database_url,
            kafka_bootstrap=kafka_bootstrap,
            http_host=http_host,
            http_port=http_port,
            mllp_port=mllp_port,
            dicom_port=dicom_port,
            dicom_ae=dicom_ae,
        )
        _setup_logging(verbose, settings.log_json)
        launcher.up(settings, role or None, insecure=insecure)


@app.command()
def demo(
    data_dir: DataDir = None,
    http_port: HttpPort = None,
    mllp_port: MllpPort = None,
    dicom_port: DicomPort = None,
    seconds: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C).")
    ] = None,
) -> None:
    """``up`` on the embedded defaults plus simulated sources, so you can watch data flow."""
    from caregraph import launcher

    with clean_errors():
        settings = settings_from(
            data_dir=data_dir, http_port=http_port, mllp_port=mllp_port, dicom_port=dicom_port
        )
        _setup_logging(False, settings.log_json)
        launcher.demo(settings, seconds=seconds)


@app.command()
def simulate(
    beds: Annotated[int, typer.Option(min=1, help="Beds, each with a monitor at 1 Hz.")],
    seconds: Annotated[
        float, typer.Option(min=1, help="Measuring window, after the warm-up.")
    ] = 60.0,
    warmup: Annotated[float, typer.Option(min=0, help="Warm-up seconds, not measured.")] = 10.0,
    attach: Annotated[
        bool,
        typer.Option(help="Drive the caregraph already running on these settings."),
    ] = False,
    pid: Annotated[
        list[int] | None,
        typer.Option(help="With --attach: pids of its processes, for memory (repeatable)."),
    ] = None,
    split: Annotated[
        bool, typer.Option(help="One process per role group instead of one for all.")
    ] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    kafka_bootstrap: KafkaBootstrap = None,
    http_port: HttpPort = None,
    mllp_port: MllpPort = None,
    dicom_port: DicomPort = None,
) -> None:
    """Drive monitors, an HIS and a modality at hospital rates; report what caregraph
    sustains (Observations/s, frame-to-searchable p99, memory, consumer lag)."""
    from caregraph import simulate as simulation

    with clean_errors():
        settings = settings_from(
            data_dir=data_dir,
            database_url=database_url,
            kafka_bootstrap=kafka_bootstrap,
            http_port=http_port,
            mllp_port=mllp_port,
            dicom_port=dicom_port,
        )
        _setup_logging(False, settings.log_json)
        plan = simulation.Plan(beds=beds, seconds=seconds, warmup_s=warmup)
        simulation.simulate(
            settings, plan, attach=attach, split=split, pids=pid or (), echo=typer.echo
        )


security_cli.register(app)
app.add_typer(device_cli.app, name="device")


@app.command()
def replay(
    topic: Annotated[str, typer.Argument(help="raw.hl7v2, raw.dicom or raw.device")],
    since: Annotated[
        datetime,
        typer.Option(help="Replay what was received at or after this time (ISO 8601, UTC)."),
    ],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    kafka_bootstrap: KafkaBootstrap = None,
) -> None:
    """Re-normalize a raw topic after a mapping change; ids are stable, so no duplicates."""
    from caregraph import replay as replaying
    from caregraph.wiring import open_context

    with clean_errors():
        settings = settings_from(
            data_dir=data_dir, database_url=database_url, kafka_bootstrap=kafka_bootstrap
        )
        ctx = open_context(settings)
        try:
            result = replaying.replay(ctx, topic, since)
        finally:
            ctx.close()
        typer.echo(f"replayed {result.replayed} of {result.read} messages on {topic}")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
