"""``manage.py migrate_communes``: the shared schema, then every commune schema, fast.

    manage.py migrate_communes                 # public schema, then all communes
    manage.py migrate_communes --plan          # what is pending, by group, and which path
    manage.py migrate_communes --plan -v 2     # ... with the SQL a schema would receive
    manage.py migrate_communes --check         # exit 1 if anything is pending (no change)
    manage.py migrate_communes --schemas a,b   # only these communes
    manage.py migrate_communes --jobs 4        # connections applying SQL in parallel

Exit status 1 when a schema failed: the Helm hook then fails the release, and a rerun
continues with the schemas still pending. See marelle.ops.schema_migrations and
docs/operations.md (expand/contract rules).
"""

import json
import os
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS

from marelle.ops import schema_migrations


class Command(BaseCommand):
    help = "Migrate the shared schema, then every commune schema (pending detection in one query, SQL generated once)."
    requires_system_checks = []

    def add_arguments(self, parser):
        default_jobs = int(os.environ.get("MIGRATE_COMMUNES_JOBS")
                           or os.environ.get("TENANT_MULTIPROCESSING_MAX_PROCESSES") or 4)
        parser.add_argument("--jobs", type=int, default=default_jobs,
                            help="Database connections applying SQL in parallel (default %(default)s).")
        parser.add_argument("--schemas", default="", help="Comma-separated commune schemas (default: all).")
        parser.add_argument("--skip-shared", action="store_true", help="Do not migrate the public schema.")
        parser.add_argument("--plan", action="store_true", help="Show what is pending and how it would be applied.")
        parser.add_argument("--check", action="store_true", help="Exit 1 if anything is pending; change nothing.")
        parser.add_argument("--django", action="store_true", dest="force_django",
                            help="Apply with Django's migrate per schema (the slow path) for every group.")
        parser.add_argument("--no-canary", action="store_false", dest="canary",
                            help="Do not apply the first schema of a group alone before the others.")
        parser.add_argument("--lock-timeout", default=os.environ.get("MIGRATE_COMMUNES_LOCK_TIMEOUT", "5s"),
                            help="PostgreSQL lock_timeout per schema transaction (default %(default)s).")
        parser.add_argument("--statement-timeout", default=os.environ.get("MIGRATE_COMMUNES_STATEMENT_TIMEOUT"),
                            help="PostgreSQL statement_timeout per statement (default: none).")
        parser.add_argument("--report", default="", help="Write a JSON report to this file.")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument("--noinput", "--no-input", action="store_true",
                            help="Accepted for symmetry with migrate: this command never asks anything.")

    def handle(self, *args, **options):
        started = time.perf_counter()
        verbosity = options["verbosity"]
        only = [s.strip() for s in options["schemas"].split(",") if s.strip()] or None
        for schema in only or []:
            if not schema_migrations.valid_schema_name(schema):
                raise CommandError(f"invalid schema name {schema!r}")
        dry = options["plan"] or options["check"]

        def migrate_shared():
            call_command("migrate_schemas", shared=True, interactive=False,
                         verbosity=max(0, verbosity - 1), database=options["database"])

        try:
            report = schema_migrations.run(
                only=only, jobs=options["jobs"], lock_timeout=options["lock_timeout"],
                statement_timeout=options["statement_timeout"], canary=options["canary"],
                force_django=options["force_django"], dry_run=dry, verbosity=verbosity,
                write=self.stdout.write, using=options["database"],
                migrate_shared=None if options["skip_shared"] else migrate_shared,
            )
        except schema_migrations.MigrationRunError as exc:
            raise CommandError(str(exc)) from exc

        if options["report"]:
            data = report.as_json()
            data["total_seconds"] = round(time.perf_counter() - started, 3)
            with open(options["report"], "w") as fh:
                json.dump(data, fh, indent=2, default=str)
        shared = report.shared_pending or []
        if options["check"] and (shared or report.pending_schemas):
            raise CommandError(f"pending: shared schema {len(shared)} migrations, "
                               f"{report.pending_schemas} commune schemas", returncode=1)
        if report.failed:
            raise CommandError(f"{len(report.failed)} commune schemas not migrated: "
                               + ", ".join(f"{r.schema} ({r.error})" for r in report.failed[:20])
                               + (" …" if len(report.failed) > 20 else ""))
