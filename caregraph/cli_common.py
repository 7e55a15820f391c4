"""What every ``caregraph`` subcommand shares: option types, settings from flags, and the
rule that a failure the person can fix ends as one line and exit status 2, no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from caregraph.errors import CaregraphError
from caregraph.settings import Settings


@contextmanager
def clean_errors() -> Iterator[None]:
    """Turn ``CaregraphError`` and invalid settings into one line on stderr, exit 2."""
    try:
        yield
    except CaregraphError as exc:
        typer.echo(f"caregraph: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"CAREGRAPH_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        typer.echo(f"caregraph: error: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from None


def settings_from(**overrides: Any) -> Settings:
    """Settings from the environment, with the flags that were given taking precedence."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**given)


DataDir = Annotated[Path | None, typer.Option(help="Data directory [CAREGRAPH_DATA_DIR].")]
DatabaseUrl = Annotated[
    str | None, typer.Option(help="sqlite:///path or postgresql://... [CAREGRAPH_DATABASE_URL].")
]
KafkaBootstrap = Annotated[
    str | None, typer.Option(help="host:port of Kafka; unset = embedded bus.")
]
