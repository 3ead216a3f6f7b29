"""Backing up and restoring one commune: its schema, with pg_dump / pg_restore.

A commune's data is its schema (tenant tables have no foreign key into ``public``; the
``tenants_commune`` and ``tenants_domain`` rows that point at it live in ``public`` and are
rebuilt by ``communes sync`` from its YAML). So one commune is::

    pg_dump --format=custom --schema=<schema> --no-owner --no-privileges

and comes back with ``pg_restore --single-transaction --exit-on-error`` (all or nothing),
either under its own name (in a fresh database, or after the damaged schema was renamed
aside) or under another name (:func:`restore_schema` with ``target_schema``: through a
scratch database, since a dump names its schema in every statement).

Credentials go to the PostgreSQL tools through PG* environment variables, never on their
command line (visible to every user of the host in ``ps``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from marelle.ops.schema_migrations import quote_ident, valid_schema_name

_ENV_KEYS = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
             "dbname": "PGDATABASE", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
             "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "options": "PGOPTIONS"}


class BackupError(Exception):
    pass


def pg_tool(name: str) -> str:
    """``pg_dump`` / ``pg_restore`` / ``psql``: on PATH, else the newest Debian install."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if candidates:
        return candidates[-1]
    raise BackupError(f"{name} not found (install postgresql-client of the server's major version or newer)")


def conninfo(database_url: str, **overrides) -> dict:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return conninfo_to_dict(make_conninfo(database_url, **overrides))


def _env(database_url: str, **overrides) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in conninfo(database_url, **overrides).items():
        if key in _ENV_KEYS and value not in (None, ""):
            env[_ENV_KEYS[key]] = str(value)
    return env


def _run(args: list[str], env: dict) -> None:
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _check(schema: str) -> None:
    if not valid_schema_name(schema) or schema == "public":
        raise BackupError(f"invalid commune schema name {schema!r}")


def dump_schema(database_url: str, schema: str, path: Path | str) -> Path:
    """One commune's schema, structure and rows, to a custom-format archive at ``path``."""
    _check(schema)
    path = Path(path)
    _run([pg_tool("pg_dump"), "--format=custom", f"--schema={schema}", "--no-owner", "--no-privileges",
          f"--file={path}"], _env(database_url))
    return path


def _admin(database_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(**conninfo(database_url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql)


def create_database(database_url: str, name: str) -> None:
    _check(name)
    _admin(database_url, f"CREATE DATABASE {quote_ident(name)}")


def drop_database(database_url: str, name: str) -> None:
    _check(name)
    _admin(database_url, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


def restore_schema(database_url: str, path: Path | str, *, schema: str, target_schema: str | None = None,
                   database: str | None = None) -> None:
    """Restore the archive of ``schema`` into ``database`` (default: the URL's), as
    ``target_schema`` (default: the same name), in one transaction. The target schema must
    not exist."""
    _check(schema)
    target_schema = target_schema or schema
    _check(target_schema)
    overrides = {"dbname": database} if database else {}
    if target_schema == schema:
        _run([pg_tool("pg_restore"), "--single-transaction", "--exit-on-error", "--no-owner",
              "--no-privileges", f"--dbname={conninfo(database_url, **overrides)['dbname']}", str(path)],
             _env(database_url, **overrides))
        return
    # Another name: restore into a scratch database, rename there, dump again, restore that.
    scratch = f"marelle_restore_{uuid.uuid4().hex[:12]}"
    create_database(database_url, scratch)
    try:
        restore_schema(database_url, path, schema=schema, database=scratch)
        import psycopg

        with psycopg.connect(**conninfo(database_url, dbname=scratch), autocommit=True) as conn:
            conn.execute(f"ALTER SCHEMA {quote_ident(schema)} RENAME TO {quote_ident(target_schema)}")
        renamed = Path(path).with_name(f"{Path(path).stem}.{target_schema}.dump")
        try:
            dump_schema(conninfo_url(database_url, scratch), target_schema, renamed)
            restore_schema(database_url, renamed, schema=target_schema, database=database)
        finally:
            renamed.unlink(missing_ok=True)
    finally:
        drop_database(database_url, scratch)


def conninfo_url(database_url: str, dbname: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(database_url, dbname=dbname)
