"""``caregraph up`` and ``caregraph demo``: preflight, wire, run until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import typer

from caregraph.errors import ConfigError
from caregraph.preflight import (
    ensure_loopback_unless_insecure,
    ensure_port_free,
    ensure_writable_dir,
)
from caregraph.roles import AVAILABLE_ROLES, build_services
from caregraph.runtime import (
    Service,
    heap_trimmer,
    limit_malloc_arenas,
    run_services,
    settle_memory,
)
from caregraph.settings import Settings
from caregraph.wiring import Context, open_context
from observability.ops import OpsServer

log = logging.getLogger(__name__)


def up(
    settings: Settings,
    roles: Sequence[str] | None,
    *,
    insecure: bool = False,
    extra: Callable[[Context], Sequence[Service]] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Check everything that can be checked before starting, then run the roles."""
    chosen = list(roles or AVAILABLE_ROLES)
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"a role is given twice in --role: {', '.join(chosen)}")
    ensure_writable_dir(settings.data_dir)
    if "api" in chosen and ensure_loopback_unless_insecure(
        settings.http_host, insecure, auth_mode=settings.auth_mode
    ):
        typer.secho(
            f"WARNING: serving on {settings.http_host} in development auth mode (--insecure): "
            "anyone who can read the data dir can mint tokens",
            fg="red",
            err=True,
        )
    limit_malloc_arenas()  # before any thread of the services allocates
    ctx = open_context(settings)
    try:
        services = [*build_services(ctx, chosen), *(extra(ctx) if extra else ())]
        trimmer = heap_trimmer()
        if trimmer is not None:
            services.append(trimmer)
        if "api" not in chosen:
            # probes and metrics for orchestrators, on the HTTP port the api would use
            ensure_port_free(
                settings.http_host, settings.http_port, "CAREGRAPH_HTTP_PORT", "--http-port"
            )
            probes = {"database": ctx.db.ping, "bus": ctx.bus.ping}
            ops = OpsServer(settings.http_host, settings.http_port, probes, ctx.metrics)
            services.append(ops)
        log.info("caregraph up: %s", ", ".join(s.name for s in services))
        if "api" in chosen:
            base = f"http://{settings.http_host}:{settings.http_port}"
            typer.echo(f"caregraph is up: {base}/healthz  {base}/readyz  {base}/docs")
        settle_memory()
        run_services(services, stop)
    finally:
        ctx.close()


def demo(settings: Settings, *, seconds: float | None = None) -> None:
    """``up`` with every built role plus the built-in simulated sources."""
    stop = threading.Event()
    if seconds is not None:
        timer = threading.Timer(seconds, stop.set)
        timer.daemon = True
        timer.start()
    from caregraph.demo import sources

    up(settings, None, stop=stop, extra=sources)
