"""What the PostgreSQL stop test relies on: its private server keeps every commit it
acknowledged through an immediate stop, as a deployed server does through a crash.

With ``synchronous_commit=off`` (which the private server once ran with) the last ten of
500 commits were lost at every such stop, and the stop test then blamed caregraph for data
the harness had thrown away (a golden record the MPI no longer knew, 9 for 8)."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.fleet import private_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

COMMITS = 500


def test_every_acknowledged_commit_survives_an_immediate_stop() -> None:
    with private_postgres() as pg:
        url = pg.create_database("survives")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (n integer)")
            for n in range(COMMITS):  # autocommit: each INSERT is a commit, acknowledged
                conn.execute("INSERT INTO t VALUES (%s)", (n,))
        pg.stop("immediate")  # at once after the last acknowledgement, as a crash
        pg.start()
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*), max(n) FROM t").fetchone()
    assert row == (COMMITS, COMMITS - 1)
