"""Migrating every commune schema quickly and safely (``manage.py migrate_communes``).

django-tenants' ``migrate_schemas`` runs Django's whole migrate machinery once per schema:
load and check the graph, four catalog-wide ``get_table_list`` queries, render model
states, emit signals. At 1,000 schemas that is ~180 s even when nothing is pending
(reference/perf-floor.md). Here:

1. **Pending detection in one query.** One SQL statement reads every commune schema's
   ``django_migrations`` (``table_to_xml`` per schema: no dynamic SQL, a schema without the
   table reads as empty) and returns, per schema, the migrations on disk it lacks. A deploy
   with nothing pending stops there.
2. **Schemas are grouped by what they lack** (normally one group: every commune lacks the
   same new migrations).
3. **SQL generated once per group.** Django's own executor plans the group's migrations on
   one schema of the group (the *template*) and ``collect_sql`` renders them, exactly what
   ``sqlmigrate`` prints; nothing is executed there while generating.
4. **Applied per schema in one transaction**: ``SET LOCAL search_path = <schema>, public``
   (what django-tenants does), the DDL, the ``django_migrations`` rows, and the content
   types and permissions Django's ``post_migrate`` would have created, then COMMIT. All or
   nothing per schema. The template goes first (canary): if it fails, no other schema of
   the group is touched. Then the others, on N connections in parallel.
5. **Django's per-schema migrate (slow path)** for what SQL cannot express: a migration with
   RunPython (also nested in SeparateDatabaseAndState), a non-atomic migration, a
   RenameModel (Django renames content types in Python), a schema whose history stops
   inside a squashed migration, a schema without ``django_migrations``, or SQL that names
   the template schema. Still one transaction per schema when every migration is atomic.

Failures are reported per schema (schema, migration, PostgreSQL error) and change nothing
in that schema; the others go on. A rerun finds the schemas still pending and continues.
A session advisory lock keeps two runs from overlapping.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    ProgrammingError,
    connection,
    connections,
    router,
    transaction,
)
from django.db.migrations import operations as migration_operations
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

logger = logging.getLogger(__name__)

# What a commune schema name may be (what tenants.commune_config.slug_to_schema_name makes, minus pg_*): it is
# quoted as an identifier anyway, but anything else is refused before reaching SQL.
SCHEMA_NAME_RE = re.compile(r"^[a-z0-9_]{1,63}$")
LOCK_KEY = "marelle.migrate_communes"
# Schemas read by one detection statement: each read takes a lock until the statement ends
# (max_locks_per_transaction × max_connections bounds them); 1,000 communes stay one query.
DETECTION_CHUNK = 1000

Key = tuple[str, str]
ALL: Key = ("*", "*")  # "every migration": a schema without django_migrations


class MigrationRunError(Exception):
    pass


def valid_schema_name(name: str) -> bool:
    return bool(SCHEMA_NAME_RE.match(name)) and not name.startswith("pg_")


def quote_ident(name: str) -> str:
    if not valid_schema_name(name):
        raise MigrationRunError(f"invalid schema name {name!r}")
    return '"' + name + '"'


def quote_literal(value: str) -> str:
    if "\x00" in value:
        raise MigrationRunError("NUL character in a literal")
    # standard_conforming_strings is on (PostgreSQL's default since 9.1): only ' needs doubling.
    return "'" + str(value).replace("'", "''") + "'"


# --------------------------------------------------------------------------------------
# What is on disk
# --------------------------------------------------------------------------------------


@dataclass
class DiskMigrations:
    loader: MigrationLoader
    nodes: set[Key]
    replacements: dict[Key, tuple[Key, ...]]

    @property
    def expected(self) -> list[Key]:
        """Every name a schema's django_migrations may need: the graph's nodes and the
        migrations a squash replaces."""
        names = set(self.nodes)
        for replaced in self.replacements.values():
            names.update(replaced)
        return sorted(names)


def disk_migrations() -> DiskMigrations:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    replacements = {key: tuple(tuple(r) for r in migration.replaces)
                    for key, migration in loader.replacements.items()}
    return DiskMigrations(loader=loader, nodes=set(loader.graph.nodes), replacements=replacements)


# --------------------------------------------------------------------------------------
# Pending detection: one query
# --------------------------------------------------------------------------------------


@dataclass
class SchemaState:
    schema: str
    has_table: bool
    missing: set[Key] = field(default_factory=set)


def _detection_sql(commune_table: str, only: list[str] | None) -> str:
    only_clause = "AND c.schema_name = ANY(%(only)s)" if only is not None else ""
    return f"""
WITH expected(app, name) AS (SELECT * FROM unnest(%(apps)s::text[], %(names)s::text[])),
communes AS (
    SELECT c.schema_name
      FROM {commune_table} c
      JOIN pg_namespace n ON n.nspname = c.schema_name
     WHERE c.schema_name <> %(public)s {only_clause}
     ORDER BY c.schema_name
     LIMIT %(limit)s OFFSET %(offset)s
),
schemas AS (
    SELECT schema_name, to_regclass(format('%%I.django_migrations', schema_name)) AS tbl
      FROM (SELECT schema_name FROM communes
            UNION ALL
            SELECT %(public)s WHERE %(with_public)s) s
),
applied AS (
    SELECT s.schema_name, x.app, x.name
      FROM schemas s
     CROSS JOIN LATERAL XMLTABLE('/*/row' PASSING table_to_xml(s.tbl, false, false, '')
                                 COLUMNS app text, name text) x
)
SELECT s.schema_name, s.tbl IS NOT NULL, e.app, e.name
  FROM schemas s
  LEFT JOIN expected e
         ON s.tbl IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM applied a
                         WHERE a.schema_name = s.schema_name AND a.app = e.app AND a.name = e.name)
 ORDER BY 1
"""


def detect(disk: DiskMigrations, *, only: list[str] | None = None, using: str = DEFAULT_DB_ALIAS,
           chunk: int = DETECTION_CHUNK, include_public: bool = False) -> list[SchemaState]:
    """Every commune schema (existing in the database) and the expected migrations it lacks
    (and the public schema's, with ``include_public``: Django records every migration in
    every schema, the router only skips their operations).

    One statement for up to ``chunk`` communes (1,000 by default), on the public schema.
    """
    from tenants.models import Commune

    conn = connections[using]
    conn.set_schema_to_public()
    expected = disk.expected
    params = {"apps": [a for a, _ in expected], "names": [n for _, n in expected],
              "public": settings.PUBLIC_SCHEMA_NAME, "only": only, "limit": chunk}
    sql = _detection_sql(conn.ops.quote_name(Commune._meta.db_table), only)
    states: dict[str, SchemaState] = {}
    offset = 0
    while True:
        with conn.cursor() as cursor:
            cursor.execute(sql, {**params, "offset": offset, "with_public": include_public and offset == 0})
            rows = cursor.fetchall()
        seen = set()
        for schema, has_table, app, name in rows:
            if schema != settings.PUBLIC_SCHEMA_NAME:
                seen.add(schema)
            state = states.setdefault(schema, SchemaState(schema, has_table))
            if app is not None:
                state.missing.add((app, name))
        if len(seen) < chunk:
            break
        offset += chunk
    return list(states.values())


def pending_of(state: SchemaState, disk: DiskMigrations) -> tuple[frozenset[Key], str | None]:
    """The graph nodes this schema still needs, and why Django must apply them (or None).

    Squashes: all replaced applied -> the squash counts as applied; none applied -> the
    squash is what is pending; some applied -> Django's loader decides (slow path)."""
    if not state.has_table:
        return frozenset({ALL}), "schema has no django_migrations table"
    missing = set(state.missing)
    reason = None
    for squash, replaced in disk.replacements.items():
        replaced_missing = [r for r in replaced if r in missing]
        if squash in missing and not replaced_missing:
            missing.discard(squash)  # history predates the squash, fully applied
        elif squash in missing and len(replaced_missing) != len(replaced):
            reason = f"history stops inside the squashed migration {squash[0]}.{squash[1]}"
        missing.difference_update(replaced)
    return frozenset(missing & disk.nodes), reason


# --------------------------------------------------------------------------------------
# SQL generation for a group, on its template schema
# --------------------------------------------------------------------------------------


def _walk(operations):
    for operation in operations:
        yield operation
        if isinstance(operation, migration_operations.SeparateDatabaseAndState):
            yield from _walk(operation.database_operations)


def needs_django(migration) -> str | None:
    """Why this migration cannot be applied as plain SQL (None: it can)."""
    if not migration.atomic:
        return f"{migration.app_label}.{migration.name} is not atomic"
    for operation in _walk(migration.operations):
        if isinstance(operation, migration_operations.RunPython) or not operation.reduces_to_sql:
            return f"{migration.app_label}.{migration.name} runs Python ({type(operation).__name__})"
        if isinstance(operation, migration_operations.RenameModel):
            return f"{migration.app_label}.{migration.name} renames a model (content types)"
    return None


@dataclass
class GroupPlan:
    pending: frozenset[Key]
    schemas: list[str]
    slow_reason: str | None = None
    migrations: list[Key] = field(default_factory=list)
    ddl: str = ""
    recorded: list[Key] = field(default_factory=list)
    post_migrate_sql: str = ""  # with {schema} placeholders (already quoted identifiers)
    generation_seconds: float = 0.0


def _post_migrate_sql(state_apps, using: str) -> str:
    """The content types and permissions Django's post_migrate would create, as two
    idempotent set-based statements (placeholders ``{schema}``)."""
    from django.apps import apps as global_apps
    from django.contrib.auth.management import _get_all_permissions
    from django.contrib.contenttypes.models import ContentType

    try:
        from django.contrib.auth.models import Permission
    except Exception:  # noqa: BLE001 - auth not installed
        Permission = None  # noqa: N806

    content_types, permissions = [], []
    for app_config in global_apps.get_app_configs():
        if app_config.models_module is None:
            continue
        try:
            state_config = state_apps.get_app_config(app_config.label)
        except LookupError:
            continue
        for model in state_config.get_models():
            content_types.append((app_config.label, model._meta.model_name))
            for codename, name in _get_all_permissions(model._meta):
                if len(name) <= 255:
                    permissions.append((app_config.label, model._meta.model_name, codename, str(name)))
    statements = []
    if content_types and router.allow_migrate_model(using, ContentType):
        values = ",\n".join(f"({quote_literal(a)}, {quote_literal(m)})" for a, m in content_types)
        statements.append(
            "INSERT INTO {schema}.django_content_type (app_label, model)\n"
            f"SELECT v.app_label, v.model FROM (VALUES {values}) v(app_label, model)\n"
            " WHERE NOT EXISTS (SELECT 1 FROM {schema}.django_content_type c"
            " WHERE c.app_label = v.app_label AND c.model = v.model);")
    if permissions and Permission is not None and router.allow_migrate_model(using, Permission):
        values = ",\n".join(f"({quote_literal(a)}, {quote_literal(m)}, {quote_literal(c)}, {quote_literal(n)})"
                            for a, m, c, n in permissions)
        statements.append(
            "INSERT INTO {schema}.auth_permission (name, content_type_id, codename)\n"
            f"SELECT v.name, c.id, v.codename FROM (VALUES {values}) v(app_label, model, codename, name)\n"
            " JOIN {schema}.django_content_type c ON c.app_label = v.app_label AND c.model = v.model\n"
            " WHERE NOT EXISTS (SELECT 1 FROM {schema}.auth_permission p"
            " WHERE p.content_type_id = c.id AND p.codename = v.codename);")
    # Literal braces from the data must survive str.format: double them, then restore ours.
    return "\n".join(s.replace("{", "{{").replace("}", "}}").replace("{{schema}}", "{schema}")
                     for s in statements)


def unknown_post_migrate_receivers() -> list[str]:
    """pre_migrate/post_migrate receivers other than Django's content types and permissions
    ones: the SQL path cannot reproduce what they do, so their presence means Django's."""
    from django.apps import apps as global_apps
    from django.db.models.signals import post_migrate, pre_migrate

    known = {
        "django.contrib.contenttypes.management.create_contenttypes",
        "django.contrib.auth.management.create_permissions",
        "django.contrib.contenttypes.management.inject_rename_contenttypes_operations",
    }
    found = set()
    for signal in (pre_migrate, post_migrate):
        for app_config in [None, *global_apps.get_app_configs()]:
            sync_receivers, async_receivers = signal._live_receivers(app_config)
            for receiver in [*sync_receivers, *async_receivers]:
                func = getattr(receiver, "__func__", receiver)
                name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
                if name not in known:
                    found.add(name)
    return sorted(found)


def plan_group(group: GroupPlan, *, using: str = DEFAULT_DB_ALIAS) -> GroupPlan:
    """Plan the group's migrations on its template schema with Django's executor and, when
    they are pure SQL, render that SQL once."""
    started = time.perf_counter()
    if group.slow_reason:
        return group
    template = group.schemas[0]
    conn = connections[using]
    try:
        conn.set_schema(template)
        executor = MigrationExecutor(conn)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        group.migrations = [(m.app_label, m.name) for m, _ in plan]
        if any(backwards for _, backwards in plan) or set(group.migrations) != set(group.pending):
            group.slow_reason = "Django's plan on the template differs from the detected pending set"
            return group
        for migration, _ in plan:
            reason = needs_django(migration)
            if reason:
                group.slow_reason = reason
                return group
        others = unknown_post_migrate_receivers()
        if others:
            group.slow_reason = "pre/post_migrate receivers to run: " + ", ".join(others)
            return group
        statements = executor.loader.collect_sql(plan)
        ddl = "\n".join(statements)
        if re.search(rf'(?<![A-Za-z0-9_])"?{re.escape(template)}"?\s*\.', ddl):
            group.slow_reason = f"generated SQL names the template schema {template}"
            return group
        group.ddl = ddl
        for migration, _ in plan:
            if migration.replaces:
                group.recorded.extend(tuple(r) for r in migration.replaces)
            group.recorded.append((migration.app_label, migration.name))
        post_state = executor.loader.project_state()
        group.post_migrate_sql = _post_migrate_sql(post_state.apps, using)
    finally:
        conn.set_schema_to_public()
        group.generation_seconds = time.perf_counter() - started
    return group


def schema_script(group: GroupPlan, schema: str) -> str:
    """The statements applying the group to ``schema``, inside its transaction."""
    ident = quote_ident(schema)
    rows = ",\n".join(f"({quote_literal(app)}, {quote_literal(name)}, now())" for app, name in group.recorded)
    parts = [
        f"SET LOCAL search_path = {ident}, public;",
        group.ddl,
        f"INSERT INTO {ident}.django_migrations (app, name, applied) VALUES\n{rows};",
    ]
    if group.post_migrate_sql:
        parts.append(group.post_migrate_sql.format(schema=ident))
    return "\n".join(parts)


# --------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------


@dataclass
class SchemaResult:
    schema: str
    status: str  # applied | failed | skipped | already
    path: str  # sql | django
    migrations: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


def raw_connection_params(using: str = DEFAULT_DB_ALIAS) -> dict:
    params = connections[using].get_connection_params()
    return {k: v for k, v in params.items() if isinstance(v, (str, int)) and k not in ("prepare_threshold",)}


def _describe_error(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    if diag is not None and getattr(diag, "context", None):
        text += f" ({diag.context.strip().splitlines()[0]})"
    return f"{type(exc).__name__}{f' [{sqlstate}]' if sqlstate else ''}: {text}"


def apply_sql_to_schema(conn, group: GroupPlan, schema: str, *, lock_timeout: str,
                        statement_timeout: str | None) -> SchemaResult:
    """One schema, one transaction: check it still lacks the migrations, apply, record."""
    import psycopg

    started = time.perf_counter()
    names = [f"{a}.{n}" for a, n in group.migrations]
    ident = quote_ident(schema)
    try:
        with conn.transaction():
            with conn.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = {quote_literal(lock_timeout)}")
                if statement_timeout:
                    cur.execute(f"SET LOCAL statement_timeout = {quote_literal(statement_timeout)}")
                # Applied meanwhile (a concurrent migrate_schemas, a manual fix)? Then leave it.
                cur.execute(
                    f"SELECT count(*) FROM {ident}.django_migrations"
                    " WHERE (app, name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                    [[a for a, _ in group.migrations], [n for _, n in group.migrations]])
                already = cur.fetchone()[0]
                if already:
                    status = "already" if already == len(group.migrations) else "skipped"
                    error = "" if status == "already" else "partly applied meanwhile: left for a rerun"
                    raise _Skip(status, error)
                cur.execute(schema_script(group, schema))
        return SchemaResult(schema, "applied", "sql", names, seconds=time.perf_counter() - started)
    except _Skip as skip:
        return SchemaResult(schema, skip.status, "sql", names, skip.error, time.perf_counter() - started)
    except psycopg.Error as exc:
        return SchemaResult(schema, "failed", "sql", names, _describe_error(exc), time.perf_counter() - started)


class _Skip(Exception):
    def __init__(self, status, error):
        super().__init__(error)
        self.status, self.error = status, error


def apply_sql_in_parallel(group: GroupPlan, schemas: list[str], *, jobs: int, lock_timeout: str,
                          statement_timeout: str | None, using: str = DEFAULT_DB_ALIAS,
                          on_result=None) -> list[SchemaResult]:
    """Apply the group's SQL to ``schemas`` on ``jobs`` connections of their own."""
    import psycopg

    params = raw_connection_params(using)
    work: queue.Queue[str] = queue.Queue()
    for schema in schemas:
        work.put(schema)
    results: list[SchemaResult] = []
    lock = threading.Lock()

    def worker():
        try:
            conn = psycopg.connect(**params, autocommit=True)
        except psycopg.Error as exc:
            error = _describe_error(exc)
            while True:
                try:
                    schema = work.get_nowait()
                except queue.Empty:
                    return
                with lock:
                    results.append(SchemaResult(schema, "failed", "sql", error=f"no connection: {error}"))
        try:
            while True:
                try:
                    schema = work.get_nowait()
                except queue.Empty:
                    return
                result = apply_sql_to_schema(conn, group, schema, lock_timeout=lock_timeout,
                                             statement_timeout=statement_timeout)
                with lock:
                    results.append(result)
                if on_result:
                    on_result(result)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, name=f"migrate-communes-{i}", daemon=True)
               for i in range(max(1, min(jobs, len(schemas))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _migrate_options(verbosity: int) -> dict:
    from django_tenants.utils import get_tenant_base_migrate_command_class

    command = get_tenant_base_migrate_command_class()()
    options = vars(command.create_parser("manage.py", "migrate").parse_args([]))
    options.update(interactive=False, verbosity=verbosity, skip_checks=True, database=DEFAULT_DB_ALIAS)
    return options


def migrate_with_django(schemas: list[str], *, atomic: bool, verbosity: int = 0,
                        on_result=None) -> list[SchemaResult]:
    """Django's own migrate, schema after schema (django-tenants' run_migrations), on a
    connection of its own (a thread): committed per schema whatever the caller's
    transaction. With ``atomic``, a schema's whole run is one transaction."""
    from django_tenants.migration_executors.base import run_migrations

    results: list[SchemaResult] = []

    def run():
        options = _migrate_options(verbosity)
        for schema in schemas:
            started = time.perf_counter()
            try:
                quote_ident(schema)
                if atomic:
                    with transaction.atomic():
                        run_migrations([], dict(options), "django", schema, allow_atomic=True)
                else:
                    run_migrations([], dict(options), "django", schema, allow_atomic=False)
                result = SchemaResult(schema, "applied", "django", seconds=time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - reported per schema
                result = SchemaResult(schema, "failed", "django", error=_describe_error(exc),
                                      seconds=time.perf_counter() - started)
            finally:
                connection.set_schema_to_public()
            results.append(result)
            if on_result:
                on_result(result)
        connections.close_all()

    thread = threading.Thread(target=run, name="migrate-communes-django")
    thread.start()
    thread.join()
    return results


# --------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------


@dataclass
class RunReport:
    schemas_total: int = 0
    pending_schemas: int = 0
    shared_pending: list[str] | None = None
    groups: list[dict] = field(default_factory=list)
    results: list[SchemaResult] = field(default_factory=list)
    detection_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def failed(self) -> list[SchemaResult]:
        return [r for r in self.results if r.status in ("failed", "skipped")]

    def as_json(self) -> dict:
        data = asdict(self)
        data["failed"] = [asdict(r) for r in self.failed]
        return data


def all_atomic(disk: DiskMigrations, pending: frozenset[Key]) -> bool:
    """Whether one transaction can hold all of ``pending`` (Django's path)."""
    keys = disk.nodes if ALL in pending else pending
    return all(disk.loader.graph.nodes[key].atomic for key in keys if key in disk.loader.graph.nodes)


@dataclass
class Detection:
    groups: list[GroupPlan]
    schemas: list[str]  # every commune schema looked at
    seconds: float
    public: list[str] | None  # what the public schema lacks (None: not looked at)
    invalid: list[str] = field(default_factory=list)  # schema names refused (never put in SQL)


def plan_run(*, only: list[str] | None = None, using: str = DEFAULT_DB_ALIAS,
             disk: DiskMigrations | None = None, include_public: bool = False) -> Detection:
    """Detect (one query) and group the commune schemas by what they lack."""
    disk = disk or disk_migrations()
    started = time.perf_counter()
    states = detect(disk, only=only, using=using, include_public=include_public)
    detection = time.perf_counter() - started
    public = None
    invalid = []
    by_pending: dict[tuple[frozenset, str | None], list[str]] = defaultdict(list)
    for state in states:
        if state.schema == settings.PUBLIC_SCHEMA_NAME:
            public = sorted(f"{a}.{n}" for a, n in pending_of(state, disk)[0])
            continue
        if not valid_schema_name(state.schema):
            invalid.append(state.schema)
            continue
        pending, reason = pending_of(state, disk)
        if pending:
            by_pending[(pending, reason)].append(state.schema)
    groups = [GroupPlan(pending=pending, schemas=sorted(schemas), slow_reason=reason)
              for (pending, reason), schemas in sorted(by_pending.items(), key=lambda kv: -len(kv[1]))]
    return Detection(groups, [s.schema for s in states if s.schema != settings.PUBLIC_SCHEMA_NAME],
                     detection, public, invalid)


def acquire_run_lock(using: str = DEFAULT_DB_ALIAS) -> bool:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [LOCK_KEY])
        return cursor.fetchone()[0]


def release_run_lock(using: str = DEFAULT_DB_ALIAS) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [LOCK_KEY])


def run(*, only: list[str] | None = None, jobs: int = 4, lock_timeout: str = "5s",
        statement_timeout: str | None = None, canary: bool = True, force_django: bool = False,
        dry_run: bool = False, verbosity: int = 1, write=None, using: str = DEFAULT_DB_ALIAS,
        migrate_shared=None) -> RunReport:
    """Migrate the commune schemas. See the module docstring.

    With ``migrate_shared`` (a callable), the same detection query reads the public schema
    too, and when it lacks something ``migrate_shared()`` (Django's migrate of the shared
    apps) runs first."""
    write = write or (lambda line: None)
    report = RunReport()
    clock = time.perf_counter()
    groups: list[GroupPlan] = []
    if not acquire_run_lock(using):
        raise MigrationRunError("another migrate_communes holds the lock; try again when it ends")
    try:
        disk = disk_migrations()
        try:
            with transaction.atomic(using=using):
                detection = plan_run(only=only, using=using, disk=disk, include_public=migrate_shared is not None)
        except ProgrammingError:
            # A new database: no tenants_commune yet. The shared schema first, then detect.
            if migrate_shared is None or dry_run:
                raise
            write("Shared schema not migrated yet: Django's migrate.")
            migrate_shared()
            detection = plan_run(only=only, using=using, disk=disk, include_public=True)
        groups = detection.groups
        report.schemas_total, report.detection_seconds = len(detection.schemas), detection.seconds
        report.shared_pending = detection.public
        for schema in detection.invalid:
            write(f"  FAILED {schema!r}: not a valid schema name ([a-z0-9_], 63 at most, not pg_*)")
            report.results.append(SchemaResult(schema, "failed", "-", error="invalid schema name"))
        if only:
            for schema in sorted(set(only) - set(detection.schemas)):
                write(f"  FAILED {schema}: no commune has this schema in the database")
                report.results.append(SchemaResult(schema, "failed", "-", error="no such commune schema"))
        if report.shared_pending:
            write(f"Shared schema lacks {len(report.shared_pending)} migrations: "
                  + ("Django's migrate." if not dry_run else ", ".join(report.shared_pending)))
            if not dry_run:
                migrate_shared()
        report.pending_schemas = sum(len(g.schemas) for g in groups)
        if not groups:
            write(f"Nothing to apply: {report.schemas_total} commune schemas up to date "
                  f"(checked in {report.detection_seconds:.2f} s).")
        for group in groups:
            if force_django and not group.slow_reason:
                group.slow_reason = "--django requested"
            plan_group(group, using=using)
            pending_names = sorted(f"{a}.{n}" for a, n in group.pending if (a, n) != ALL)
            summary = {"schemas": len(group.schemas), "pending": pending_names,
                       "path": "django" if group.slow_reason else "sql", "reason": group.slow_reason,
                       "generation_seconds": round(group.generation_seconds, 3)}
            report.groups.append(summary)
            write(f"{len(group.schemas)} schemas lack {', '.join(pending_names) or 'every migration'}: "
                  + (f"Django's migrate per schema ({group.slow_reason})" if group.slow_reason
                     else f"SQL generated once on {group.schemas[0]} in {group.generation_seconds:.2f} s"))
            if dry_run:
                if not group.slow_reason and verbosity >= 2:
                    write(schema_script(group, group.schemas[0]))
                continue

            def on_result(result, _group=group):
                if result.status == "failed":
                    write(f"  FAILED {result.schema}: {result.error}")
                elif verbosity >= 2:
                    write(f"  {result.status} {result.schema} ({result.path}, {result.seconds * 1000:.0f} ms)")

            if group.slow_reason:
                report.results += migrate_with_django(group.schemas, atomic=all_atomic(disk, group.pending),
                                                      verbosity=max(0, verbosity - 2), on_result=on_result)
                continue
            rest = group.schemas
            if canary:
                first = apply_sql_in_parallel(group, rest[:1], jobs=1, lock_timeout=lock_timeout,
                                              statement_timeout=statement_timeout, using=using,
                                              on_result=on_result)
                report.results += first
                rest = rest[1:]
                if first[0].status == "failed":
                    write(f"  canary {first[0].schema} failed: the {len(rest)} other schemas of this "
                          "group were not touched")
                    report.results += [SchemaResult(s, "skipped", "sql", error="canary failed") for s in rest]
                    continue
            report.results += apply_sql_in_parallel(group, rest, jobs=jobs, lock_timeout=lock_timeout,
                                                    statement_timeout=statement_timeout, using=using,
                                                    on_result=on_result)
    finally:
        release_run_lock(using)
        connections[using].set_schema_to_public()
    report.seconds = time.perf_counter() - clock
    applied = sum(1 for r in report.results if r.status in ("applied", "already"))
    if groups and not dry_run:
        write(f"{applied} schemas migrated, {len(report.failed)} failed or left pending, "
              f"in {report.seconds:.1f} s.")
    return report
