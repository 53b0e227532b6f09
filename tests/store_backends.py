"""The store tests' backends: a SQLite file, and a real PostgreSQL server.

PostgreSQL comes from ``SURV_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts a
throwaway cluster and sets it). Each test gets its own schema on that server
(``search_path`` in the URL), dropped afterwards, so tests never see each
other's rows. Without a server the PostgreSQL cases skip, saying why.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

PG_ENV = "SURV_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin():
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(
            f"no PostgreSQL server: {PG_ENV} is unset (source .ci/postgres.sh to start one; "
            ".ci/run does)"
        )
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed: pip install '.[postgres]'")
    try:
        return url, psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at {url} refuses connections: {exc}")


def make_url(kind: str, tmp_path, request) -> str:
    """A fresh, empty store URL of ``kind``; the PostgreSQL schema is dropped
    when the test ends."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'alerts.db'}"
    url, admin = _pg_admin()
    schema = "t_" + uuid.uuid4().hex[:12]
    admin.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        # DROP ... CASCADE removes the audit log without firing its row triggers
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()

    request.addfinalizer(drop)
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
