"""One commune's backup: pg_dump --schema, pg_restore into a fresh database or under
another schema name, and the rows come back."""

import uuid

import pytest
from django.db import connection
from marelle.ops import backup

from tests.support import in_own_connection


def database_url() -> str:
    settings = connection.settings_dict
    host = settings["HOST"] or "127.0.0.1"
    auth = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    return f"postgres://{auth}@{host}:{settings['PORT'] or 5432}/{settings['NAME']}"


def row_counts(schema: str, *, url: str | None = None) -> dict[str, int]:
    """Rows per table of ``schema``, read on a connection of its own (committed data)."""
    import psycopg

    def count(conn):
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", [schema]).fetchall()]
        return {t: conn.execute(f'SELECT count(*) FROM "{schema}"."{t}"').fetchone()[0] for t in tables}

    if url:
        with psycopg.connect(**backup.conninfo(url)) as conn:
            return count(conn)

    def run():
        with connection.cursor() as cursor:
            return count(cursor.connection)

    return in_own_connection(run)


@pytest.fixture
def pg_tools():
    try:
        backup.pg_tool("pg_dump"), backup.pg_tool("pg_restore")
    except backup.BackupError as exc:
        pytest.skip(str(exc))


def test_a_commune_schema_has_no_foreign_key_into_another_schema(db, alpha):
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT count(*) FROM pg_constraint c
              JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace
              JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace
             WHERE c.contype = 'f' AND n.nspname = %s AND fn.nspname <> n.nspname""", [alpha.schema_name])
        assert cursor.fetchone()[0] == 0


def test_dump_and_restore_one_commune_into_a_fresh_database(db, alpha, tmp_path, pg_tools):
    url = database_url()
    original = row_counts("alpha")
    assert original["catalog_service"] > 0 and original["django_migrations"] > 0

    archive = backup.dump_schema(url, "alpha", tmp_path / "alpha.dump")
    fresh = f"marelle_restore_test_{uuid.uuid4().hex[:8]}"
    backup.create_database(url, fresh)
    try:
        backup.restore_schema(url, archive, schema="alpha", database=fresh)
        restored = row_counts("alpha", url=backup.conninfo_url(url, fresh))
    finally:
        backup.drop_database(url, fresh)
    assert restored == original


def test_restore_one_commune_under_another_schema_name_next_to_the_live_one(db, alpha, tmp_path, pg_tools):
    url = database_url()
    archive = backup.dump_schema(url, "alpha", tmp_path / "alpha.dump")
    target = f"alpha_restored_{uuid.uuid4().hex[:6]}"
    try:
        backup.restore_schema(url, archive, schema="alpha", target_schema=target)
        assert row_counts(target) == row_counts("alpha")

        def services(schema):
            def run():
                with connection.cursor() as cursor:
                    cursor.execute(f'SELECT code, label FROM "{schema}".catalog_service ORDER BY code')
                    return cursor.fetchall()
            return in_own_connection(run)

        assert services(target) == services("alpha") != []
    finally:
        def drop():
            with connection.cursor() as cursor:
                cursor.execute(f'DROP SCHEMA IF EXISTS "{target}" CASCADE')
        in_own_connection(drop)


def test_restore_refuses_an_existing_schema_and_changes_nothing(db, alpha, tmp_path, pg_tools):
    url = database_url()
    archive = backup.dump_schema(url, "alpha", tmp_path / "alpha.dump")
    before = row_counts("alpha")
    with pytest.raises(backup.BackupError, match="already exists"):
        backup.restore_schema(url, archive, schema="alpha")
    assert row_counts("alpha") == before
    with pytest.raises(backup.BackupError):
        backup.dump_schema(url, "alpha; rm -rf /", tmp_path / "x.dump")
