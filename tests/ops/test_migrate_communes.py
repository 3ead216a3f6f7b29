"""migrate_communes: pending detection in one query, SQL generated once and applied per
schema in one transaction each, failures reported per schema, reruns finishing the job.

Three communes are provisioned (committed) for the module; each test adds a migration
that only Django's MIGRATION_MODULES sees (marelle.ops.testing), restricted to these
three schemas, and puts the schemas back as they were afterwards.
"""

import itertools
import sys

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from marelle.ops import schema_migrations
from marelle.ops.management.commands.migrate_communes import Command as MigrateCommunes
from marelle.ops.testing import write_extra_migration_package

from tests.support import create_committed_commune, drop_committed_commune, in_own_connection

SLUGS = ("opsmig-a", "opsmig-b", "opsmig-c")
SCHEMAS = [s.replace("-", "_") for s in SLUGS]
_counter = itertools.count()


@pytest.fixture(scope="module")
def communes(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        created = [create_committed_commune(slug) for slug in SLUGS]
    yield created
    with django_db_blocker.unblock():
        for commune in created:
            drop_committed_commune(commune)


def committed_sql(sql, params=None, fetch=False):
    def run():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if fetch else None

    return in_own_connection(run)


def column_exists(schema, table, column):
    return bool(committed_sql(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = %s AND table_name = %s AND column_name = %s",
        [schema, table, column], fetch=True))


def table_exists(schema, table):
    return bool(committed_sql("SELECT to_regclass(%s) IS NOT NULL", [f'"{schema}"."{table}"'], fetch=True)[0][0])


def recorded(schema, name):
    return bool(committed_sql(f'SELECT 1 FROM "{schema}".django_migrations WHERE name = %s', [name], fetch=True))


@pytest.fixture
def extra_migration(communes, settings, tmp_path):
    """Factory: make Django see one new booking migration of ``kind``; cleaned up after."""
    made = []

    def make(kind="add_field", fail_schemas=()):
        n = next(_counter)
        package = f"ops_extra_migrations_{n}_{id(tmp_path) % 100000}"
        name = f"9{n:03d}_ops_{kind}"
        write_extra_migration_package(tmp_path, package=package, name=name, kind=kind, fail_schemas=fail_schemas)
        sys.path.insert(0, str(tmp_path))
        settings.MIGRATION_MODULES = {"booking": package}
        made.append(name)
        return name

    yield make
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))
    for schema in SCHEMAS:
        committed_sql(f'ALTER TABLE "{schema}".booking_booking DROP COLUMN IF EXISTS ops_note;'
                      f'DROP TABLE IF EXISTS "{schema}".booking_opsprobe CASCADE;'
                      f"DELETE FROM \"{schema}\".django_migrations WHERE app = 'booking' AND name LIKE '9%%_ops_%%';"
                      f"DELETE FROM \"{schema}\".auth_permission WHERE codename LIKE '%%_opsprobe';"
                      f"DELETE FROM \"{schema}\".django_content_type WHERE app_label = 'booking' AND model = 'opsprobe';")


def statements(context):
    """Queries run, minus django-tenants' own ``SET search_path`` on a fresh cursor."""
    return [q["sql"] for q in context.captured_queries if not q["sql"].startswith("SET search_path")]


def run(**kwargs):
    lines = []
    report = schema_migrations.run(only=SCHEMAS, jobs=2, write=lines.append, **kwargs)
    return report, lines


def by_schema(report):
    return {r.schema: r for r in report.results}


def test_pending_detection_is_one_query_over_every_schema(db, communes, extra_migration):
    disk = schema_migrations.disk_migrations()
    with CaptureQueriesContext(connection) as nothing_pending:
        states = schema_migrations.detect(disk)
    assert len(statements(nothing_pending)) == 1
    assert {"alpha", "beta", *SCHEMAS} <= {s.schema for s in states}
    assert all(not s.missing for s in states if s.schema in SCHEMAS)

    name = extra_migration("add_field")
    disk = schema_migrations.disk_migrations()
    with CaptureQueriesContext(connection) as one_pending:
        states = schema_migrations.detect(disk)
    assert len(statements(one_pending)) == 1
    missing = {s.schema: s.missing for s in states}
    assert all(missing[schema] == {("booking", name)} for schema in [*SCHEMAS, "alpha", "beta"])


def test_a_deploy_with_nothing_pending_costs_one_query(db, communes, capsys):
    with CaptureQueriesContext(connection) as context:
        call_command(MigrateCommunes(), "--noinput", "--schemas", ",".join(["alpha", "beta", *SCHEMAS]))
    reads = [q for q in statements(context)
             if "advisory" not in q and not q.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
    assert len(reads) == 1 and "django_migrations" in reads[0]
    assert "Nothing to apply: 5 commune schemas up to date" in capsys.readouterr().out


def test_a_new_migration_is_applied_to_every_pending_schema_then_nothing_is_pending(db, communes, extra_migration):
    name = extra_migration("add_field")

    report, lines = run()

    assert report.pending_schemas == 3
    assert report.groups[0]["path"] == "sql" and report.groups[0]["pending"] == [f"booking.{name}"]
    assert {r.schema: r.status for r in report.results} == dict.fromkeys(SCHEMAS, "applied")
    for schema in SCHEMAS:
        assert column_exists(schema, "booking_booking", "ops_note")
        assert recorded(schema, name)
    assert not column_exists("alpha", "booking_booking", "ops_note")  # not in --schemas

    again, lines = run()
    assert again.pending_schemas == 0 and again.results == []
    assert "Nothing to apply" in lines[0]


def test_a_failing_schema_is_reported_rolled_back_whole_and_finished_by_a_rerun(db, communes, extra_migration):
    # Two operations: a column on booking_booking, then a new table. The table already
    # exists in the second schema, so its transaction must fail *after* adding the column.
    name = extra_migration("create_model_after_field")
    committed_sql(f'CREATE TABLE "{SCHEMAS[1]}".booking_opsprobe (id int)')

    report, lines = run()

    results = by_schema(report)
    assert results[SCHEMAS[0]].status == "applied" and results[SCHEMAS[2]].status == "applied"
    failed = results[SCHEMAS[1]]
    assert failed.status == "failed" and "booking_opsprobe" in failed.error and "already exists" in failed.error
    assert any(SCHEMAS[1] in line and "FAILED" in line for line in lines)
    # Nothing of the migration is left in the failed schema: not the column, not the row.
    assert not column_exists(SCHEMAS[1], "booking_booking", "ops_note")
    assert not recorded(SCHEMAS[1], name)
    assert column_exists(SCHEMAS[2], "booking_booking", "ops_note") and recorded(SCHEMAS[2], name)

    committed_sql(f'DROP TABLE "{SCHEMAS[1]}".booking_opsprobe')
    rerun, _ = run()
    assert [(r.schema, r.status) for r in rerun.results] == [(SCHEMAS[1], "applied")]
    assert column_exists(SCHEMAS[1], "booking_booking", "ops_note") and recorded(SCHEMAS[1], name)
    assert table_exists(SCHEMAS[1], "booking_opsprobe")


def test_the_canary_failing_leaves_the_other_schemas_untouched(db, communes, extra_migration):
    name = extra_migration("add_field")
    committed_sql(f'ALTER TABLE "{SCHEMAS[0]}".booking_booking ADD COLUMN ops_note int')

    report, lines = run()

    statuses = {r.schema: r.status for r in report.results}
    assert statuses == {SCHEMAS[0]: "failed", SCHEMAS[1]: "skipped", SCHEMAS[2]: "skipped"}
    assert not recorded(SCHEMAS[1], name) and not column_exists(SCHEMAS[1], "booking_booking", "ops_note")
    assert any("canary" in line for line in lines)


def test_sql_path_creates_the_same_content_types_and_permissions_as_django(db, communes, extra_migration):
    extra_migration("create_model")
    fast = schema_migrations.run(only=[SCHEMAS[0]])
    slow = schema_migrations.run(only=[SCHEMAS[1]], force_django=True)
    assert fast.groups[0]["path"] == "sql" and slow.groups[0]["path"] == "django"
    assert [r.status for r in fast.results + slow.results] == ["applied", "applied"]

    def auth_rows(schema):
        return sorted(committed_sql(
            f'SELECT c.app_label, c.model, p.codename, p.name FROM "{schema}".django_content_type c '
            f'LEFT JOIN "{schema}".auth_permission p ON p.content_type_id = c.id', fetch=True))

    assert ("booking", "opsprobe", "add_opsprobe", "Can add ops probe") in auth_rows(SCHEMAS[0])
    assert auth_rows(SCHEMAS[0]) == auth_rows(SCHEMAS[1])
    assert table_exists(SCHEMAS[0], "booking_opsprobe") and table_exists(SCHEMAS[1], "booking_opsprobe")


def test_python_migrations_take_djangos_path_one_transaction_per_schema(db, communes, extra_migration):
    name = extra_migration("run_python")

    report, _ = run()

    assert report.groups[0]["path"] == "django" and "RunPython" in report.groups[0]["reason"]
    assert {r.status for r in report.results} == {"applied"}
    assert all(recorded(s, name) and column_exists(s, "booking_booking", "ops_note") for s in SCHEMAS)


def test_a_python_migration_failing_in_one_schema_leaves_it_whole(db, communes, extra_migration):
    name = extra_migration("run_python", fail_schemas=(SCHEMAS[1],))

    report, lines = run()

    statuses = {r.schema: r.status for r in report.results}
    assert statuses == {SCHEMAS[0]: "applied", SCHEMAS[1]: "failed", SCHEMAS[2]: "applied"}
    assert "refused in" in by_schema(report)[SCHEMAS[1]].error
    # The column added by the first operation was rolled back with the failing RunPython.
    assert not column_exists(SCHEMAS[1], "booking_booking", "ops_note") and not recorded(SCHEMAS[1], name)


def test_command_checks_plans_and_fails_loudly(db, communes, extra_migration, capsys):
    name = extra_migration("add_field")
    with pytest.raises(CommandError, match="pending"):
        call_command(MigrateCommunes(), "--check", "--skip-shared", "--schemas", ",".join(SCHEMAS))
    call_command(MigrateCommunes(), "--plan", "--skip-shared", "--schemas", SCHEMAS[0], "-v", "2")
    out = capsys.readouterr().out
    assert f"booking.{name}" in out and "ALTER TABLE" in out and "ops_note" in out
    assert not recorded(SCHEMAS[0], name)

    committed_sql(f'ALTER TABLE "{SCHEMAS[2]}".booking_booking ADD COLUMN ops_note int')
    with pytest.raises(CommandError, match=SCHEMAS[2]):
        call_command(MigrateCommunes(), "--skip-shared", "--schemas", ",".join(SCHEMAS))
    assert recorded(SCHEMAS[0], name) and recorded(SCHEMAS[1], name) and not recorded(SCHEMAS[2], name)

    with pytest.raises(CommandError, match="invalid schema name"):
        call_command(MigrateCommunes(), "--skip-shared", "--schemas", 'x"; DROP TABLE y; --')


def test_schema_names_are_validated_identifiers():
    assert schema_migrations.valid_schema_name("pays_noyonnais")
    assert schema_migrations.quote_ident("2027_commune") == '"2027_commune"'
    for bad in ("Alpha", 'a"b', "a b", "pg_catalog", "", "a" * 64, "a-b", "a;b"):
        assert not schema_migrations.valid_schema_name(bad)
        with pytest.raises(schema_migrations.MigrationRunError):
            schema_migrations.quote_ident(bad)
