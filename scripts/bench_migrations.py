#!/usr/bin/env python
"""Benchmark: migrations across many commune schemas, and provisioning one commune.

    .venv/bin/python scripts/bench_migrations.py                  # 200 and 1,000 communes
    .venv/bin/python scripts/bench_migrations.py --sizes 50       # a quick run
    .venv/bin/python scripts/bench_migrations.py --sizes 200,1000 --skip-slow-above 200

What it does, in a dedicated database (dropped and created:
``postgres://postgres@127.0.0.1:5432/marelle_bench_migrations``, or --database-url):

1. the public schema with ``migrate_schemas --shared``; one commune schema ``c00000``
   provisioned by migrations (the template of the fixture);
2. provisioning probes at 0, 200 and 1,000 existing schemas: a new schema by Django
   migrations (``create_schema``) against a clone of the template (django-tenants'
   ``clone_schema``, then the fake migrate ``TENANT_BASE_SCHEMA`` runs), each created then
   dropped, ``--probes`` times (median, min, max);
3. the fixture: communes up to N, each a copy of ``c00000``'s ``pg_dump`` with the schema
   name replaced, loaded by two ``psql`` in parallel (fast; what is measured is not this);
4. for each N: a deploy with nothing pending, then one new migration (``AddField`` of a
   nullable column on ``booking_booking``), with django-tenants' ``standard`` and
   ``multiprocessing`` (2 processes) executors and with ``migrate_communes``; each command
   is a fresh ``manage.py`` process, timed wall-clock, Python start-up included. Between
   two "new migration" runs, the column and its django_migrations rows are removed by SQL.

"The new migration" is not in the app's folder: a package generated in a temporary
directory mirrors booking's migrations plus ``9001_bench_note`` (marelle.ops.testing), and
a generated settings module (``from marelle.settings import *``, plus ``marelle.ops`` in
SHARED_APPS, plus ``MIGRATION_MODULES`` when BENCH_NEW_MIGRATION=1) points Django at it.

Prints a table and writes JSON (--out, default test-artifacts/bench_migrations.json).
Every command has a time limit (--timeout, default 900 s); a run over it is recorded as such.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parent.parent
PLATFORM = REPO / "platform"
PYTHON = sys.executable
TEMPLATE = "c00000"
MIGRATION_PACKAGE = "bench_booking_migrations"
MIGRATION_NAME = "9001_bench_note"
FIELD = "bench_note"

SETTINGS_MODULE = '''
import os
from marelle.settings import *  # noqa: F401,F403
from marelle.settings import INSTALLED_APPS, SHARED_APPS

if "marelle.ops" not in SHARED_APPS:
    SHARED_APPS = [*SHARED_APPS, "marelle.ops"]
    INSTALLED_APPS = [*INSTALLED_APPS, "marelle.ops"]
if os.environ.get("BENCH_NEW_MIGRATION") == "1":
    MIGRATION_MODULES = {"booking": "MIGRATION_PACKAGE"}
TENANT_MULTIPROCESSING_MAX_PROCESSES = int(os.environ.get("TENANT_MULTIPROCESSING_MAX_PROCESSES", "2"))
'''.replace("MIGRATION_PACKAGE", MIGRATION_PACKAGE)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.url = args.database_url
        parsed = urlparse(self.url)
        self.dbname = parsed.path.lstrip("/")
        self.admin_url = self.url.rsplit("/", 1)[0] + "/postgres"
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_migrations_"))
        (self.tmp / "bench_settings.py").write_text(SETTINGS_MODULE)
        self.env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "DJANGO_SETTINGS_MODULE": "bench_settings",
            "MARELLE_ENV": "development",
            "DEBUG": "false",
            "REDIS_URL": "",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join([str(self.tmp), str(PLATFORM), str(REPO)]),
            "TENANT_MULTIPROCESSING_MAX_PROCESSES": "2",
        }
        self.env.pop("BENCH_NEW_MIGRATION", None)
        self.results: dict = {"database": self.url, "cpus": os.cpu_count(), "sizes": {}, "provisioning": {},
                              "commands": {}, "notes": []}
        self.existing = 0

    # --- helpers ---------------------------------------------------------------------
    def psql(self, sql: str | None = None, *, file: Path | None = None, db: str | None = None,
             quiet: bool = True, capture: bool = False) -> str:
        cmd = ["psql", db or self.url, "-v", "ON_ERROR_STOP=1", "-X"]
        if quiet:
            cmd += ["-q"]
        if capture:
            cmd += ["-At"]
        cmd += ["-c", sql] if sql is not None else ["-f", str(file)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env={**os.environ, "PGOPTIONS": "-c synchronous_commit=off"})
        return out.stdout

    def manage(self, *argv, new_migration=False, timeout=None, check=True):
        env = dict(self.env)
        if new_migration:
            env["BENCH_NEW_MIGRATION"] = "1"
        started = time.perf_counter()
        try:
            proc = subprocess.run([PYTHON, str(PLATFORM / "manage.py"), *argv], env=env, cwd=REPO,
                                  capture_output=True, text=True, timeout=timeout or self.args.timeout)
        except subprocess.TimeoutExpired:
            return None, "timeout"
        seconds = time.perf_counter() - started
        if check and proc.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return seconds, proc.stdout + proc.stderr

    def django(self, *argv, new_migration=False):
        env = dict(self.env)
        if new_migration:
            env["BENCH_NEW_MIGRATION"] = "1"
        proc = subprocess.run([PYTHON, __file__, "_django", *argv], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=self.args.timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"_django {' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    # --- steps -----------------------------------------------------------------------
    def create_database(self):
        log(f"database {self.dbname}: drop and create")
        self.psql(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)', db=self.admin_url)
        self.psql(f'CREATE DATABASE "{self.dbname}"', db=self.admin_url)
        seconds, _ = self.manage("migrate_schemas", "--shared", "--noinput", "-v", "0")
        log(f"public schema migrated in {seconds:.1f} s")
        self.django("write-migration", str(self.tmp))
        info = self.django("template", TEMPLATE)
        self.existing = 1
        log(f"template commune {TEMPLATE} provisioned by migrations in {info['seconds']:.2f} s")
        self.dump = self.tmp / "template.sql"
        subprocess.run(["pg_dump", "--no-owner", "--no-privileges", "-n", TEMPLATE, "-f", str(self.dump), self.url],
                       check=True)

    def fill(self, n: int):
        """Communes up to n (the template included), as copies of the template's dump."""
        if n <= self.existing:
            return
        started = time.perf_counter()
        text = self.dump.read_text()
        lines = [line for line in text.splitlines(keepends=True)
                 if not line.startswith("SELECT pg_catalog.set_config('search_path'")]
        text = "".join(lines)
        files = [self.tmp / f"fill_{k}.sql" for k in range(2)]
        handles = [f.open("w") for f in files]
        names = [f"c{i:05d}" for i in range(self.existing, n)]
        for i, name in enumerate(names):
            handles[i % 2].write("BEGIN;\n" + text.replace(TEMPLATE, name) + "COMMIT;\n")
        for h in handles:
            h.close()
        procs = [subprocess.Popen(["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(f)],
                                  stdout=subprocess.DEVNULL, env={**os.environ, "PGOPTIONS": "-c synchronous_commit=off"})
                 for f in files]
        if any(p.wait() != 0 for p in procs):
            raise RuntimeError("fixture load failed")
        self.django("commune-rows", ",".join(names))
        for f in files:
            f.unlink()
        self.existing = n
        for catalog in ("pg_class", "pg_attribute", "pg_namespace", "pg_constraint", "pg_index"):
            self.psql(f"VACUUM ANALYZE pg_catalog.{catalog}")
        log(f"fixture: {n} communes ({len(names)} copied in {time.perf_counter() - started:.1f} s)")

    def probe_provisioning(self):
        label = str(self.existing - 1 if self.existing > 1 else 0)
        data = self.django("probe", TEMPLATE, str(self.args.probes))
        self.results["provisioning"][label] = data
        log(f"provisioning at {label} existing: migrations {data['migrations']['median']:.3f} s, "
            f"clone {data['clone']['median']:.3f} s, clone+fake migrate "
            f"{data['clone_and_fake_migrate']['median']:.3f} s (medians), "
            f"same DDL: {data.get('clone_structure_identical_to_migrated')}")

    def count_with_field(self) -> int:
        return int(self.psql(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'booking_booking' "
            f"AND column_name = '{FIELD}' AND table_schema <> 'public'", capture=True).strip())

    def reset_new_migration(self):
        schemas = self.psql("SELECT table_schema FROM information_schema.columns WHERE table_name = "
                            f"'booking_booking' AND column_name = '{FIELD}'", capture=True).split()
        if not schemas:
            return
        sql = self.tmp / "reset.sql"
        with sql.open("w") as fh:
            fh.write("BEGIN;\n")
            for s in schemas:
                fh.write(f'ALTER TABLE "{s}".booking_booking DROP COLUMN {FIELD};\n'
                         f"DELETE FROM \"{s}\".django_migrations WHERE app = 'booking' AND name = '{MIGRATION_NAME}';\n")
            fh.write("COMMIT;\n")
        self.psql(file=sql)

    def time_commands(self, n: int):
        tenants = n
        runs = {}
        slow_allowed = n <= self.args.skip_slow_above
        commands = {
            "migrate_communes": ["migrate_communes", "--skip-shared", "--jobs", str(self.args.jobs), "-v", "0"],
            "multiprocessing": ["migrate_schemas", "--tenant", "--noinput", "--executor=multiprocessing", "-v", "0"],
            "standard": ["migrate_schemas", "--tenant", "--noinput", "--executor=standard", "-v", "0"],
        }
        self.results["commands"] = {k: "manage.py " + " ".join(v) for k, v in commands.items()}
        for scenario, new in (("no-op", False), ("one new migration", True)):
            for name, argv in commands.items():
                if name != "migrate_communes" and not slow_allowed:
                    runs[(scenario, name)] = None
                    continue
                if new:
                    self.reset_new_migration()
                seconds, output = self.manage(*argv, new_migration=new, check=False)
                ok = seconds is not None
                if new and ok:
                    applied = self.count_with_field()
                    ok = applied == tenants
                    if not ok:
                        self.results["notes"].append(f"{name} at {n}: {applied}/{tenants} schemas got the column")
                runs[(scenario, name)] = {"seconds": round(seconds, 2) if seconds else None,
                                          "timeout": seconds is None, "ok": ok}
                log(f"N={n} {scenario:18} {name:17} "
                    + (f"{seconds:7.1f} s" if seconds else f"> {self.args.timeout} s (timeout)")
                    + ("" if ok else "  (NOT all schemas migrated)"))
        # A detection-only figure from migrate_communes itself (the query, no start-up).
        report = self.tmp / "report.json"
        self.manage("migrate_communes", "--skip-shared", "--check", "--report", str(report), check=False)
        detection = json.loads(report.read_text())["detection_seconds"]
        self.results["sizes"][str(n)] = {
            "runs": {f"{s} / {c}": r for (s, c), r in runs.items()},
            "detection_query_seconds": round(detection, 3),
            "relations": int(self.psql("SELECT count(*) FROM pg_class", capture=True)),
        }
        self.reset_new_migration()

    def run(self):
        started = time.perf_counter()
        sizes = sorted(int(s) for s in self.args.sizes.split(","))
        self.create_database()
        self.probe_provisioning()
        for n in sizes:
            self.fill(n)
            self.probe_provisioning()
            self.time_commands(n)
        self.results["total_seconds"] = round(time.perf_counter() - started, 1)
        self.print_table(sizes)
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.results, indent=2))
        log(f"JSON written to {out}")
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def print_table(self, sizes):
        print()
        print("Migrations across N commune schemas (wall clock of one manage.py process, seconds)")
        header = f"{'scenario':20}{'command':18}" + "".join(f"{'N=' + str(n):>10}" for n in sizes)
        print(header)
        print("-" * len(header))
        for scenario in ("no-op", "one new migration"):
            for name in ("standard", "multiprocessing", "migrate_communes"):
                cells = []
                for n in sizes:
                    run = self.results["sizes"][str(n)]["runs"].get(f"{scenario} / {name}")
                    if run is None:
                        cells.append(f"{'skipped':>10}")
                    elif run["timeout"]:
                        cells.append(f"{'timeout':>10}")
                    else:
                        cells.append(f"{run['seconds']:>9.1f}{'' if run['ok'] else '!'}")
                print(f"{scenario:20}{name:18}" + "".join(cells))
        print(f"{'detection query':38}" + "".join(
            f"{self.results['sizes'][str(n)]['detection_query_seconds']:>10.3f}" for n in sizes))
        print()
        print("Provisioning one commune schema (seconds, median [min-max])")
        for label, data in self.results["provisioning"].items():
            cells = "  ".join(f"{k}: {v['median']:.3f} [{v['min']:.3f}-{v['max']:.3f}]" for k, v in data.items()
                              if isinstance(v, dict))
            print(f"  {label:>5} existing  {cells}")
        for note in self.results["notes"]:
            print("note:", note)


# --- inside Django (subprocess) ---------------------------------------------------------

def same_structure(a: str, b: str) -> bool:
    """Whether two schemas have the same DDL (pg_dump --schema-only, names normalised)."""
    url = os.environ["DATABASE_URL"]

    def ddl(schema):
        out = subprocess.run(["pg_dump", "--schema-only", "--no-owner", "--no-privileges", "-n", schema, url],
                             check=True, capture_output=True, text=True).stdout
        lines = [line.replace(schema, "SCHEMA_X") for line in out.splitlines()
                 if line.strip() and not line.startswith(("--", "SET ", "SELECT pg_catalog"))]
        return sorted(lines)

    return ddl(a) == ddl(b)


def django_main(action: str, *argv):
    import django

    django.setup()
    from django.db import connection

    from tenants.models import Commune

    if action == "write-migration":
        from marelle.ops.testing import write_extra_migration_package

        write_extra_migration_package(argv[0], app_label="booking", package=MIGRATION_PACKAGE,
                                      name=MIGRATION_NAME, kind="add_field", field=FIELD)
        return {"ok": True}
    if action == "template":
        started = time.perf_counter()
        commune = Commune.objects.create(schema_name=argv[0], slug=argv[0].replace("_", "-"), name=argv[0],
                                         status=Commune.Status.ACTIVE)
        commune.create_schema(check_if_exists=True, verbosity=0)
        return {"seconds": time.perf_counter() - started}
    if action == "commune-rows":
        names = argv[0].split(",")
        Commune.objects.bulk_create(
            [Commune(schema_name=n, slug=n, name=n, status=Commune.Status.ACTIVE) for n in names], batch_size=500)
        return {"created": len(names)}
    if action == "probe":
        from django.core.management import call_command
        from django_tenants.clone import CloneSchema

        template, reps = argv[0], int(argv[1])
        timings = {"migrations": [], "clone": [], "clone_and_fake_migrate": []}
        identical = None
        for i in range(reps):
            made = {}
            for way in timings:
                name = f"probe_{list(timings).index(way)}_{i}"
                connection.set_schema_to_public()
                with connection.cursor() as cursor:
                    cursor.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                started = time.perf_counter()
                if way == "migrations":
                    probe = Commune(schema_name=name, slug=name.replace("_", "-"), name=name)
                    probe.create_schema(check_if_exists=False, verbosity=0)
                else:
                    CloneSchema().clone_schema(template, name, "DATA")
                    if way == "clone_and_fake_migrate":
                        # What django-tenants does after a clone (TENANT_BASE_SCHEMA).
                        call_command("migrate_schemas", tenant=True, fake=True, schema_name=name,
                                     interactive=False, verbosity=0)
                timings[way].append(time.perf_counter() - started)
                made[way] = name
            connection.set_schema_to_public()
            if i == 0:
                identical = same_structure(made["migrations"], made["clone"])
            with connection.cursor() as cursor:
                for name in made.values():
                    cursor.execute(f'DROP SCHEMA "{name}" CASCADE')
        out = {way: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
               for way, v in timings.items()}
        out["clone_structure_identical_to_migrated"] = identical
        return out
    raise SystemExit(f"unknown action {action}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_django":
        print(json.dumps(django_main(*sys.argv[2:])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=textwrap.dedent(__doc__.split("\n\n", 1)[1]))
    parser.add_argument("--sizes", default="200,1000", help="communes counts (default %(default)s)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/marelle_bench_migrations")
    parser.add_argument("--jobs", type=int, default=2, help="migrate_communes --jobs (default %(default)s)")
    parser.add_argument("--probes", type=int, default=3, help="provisioning probes per way (default %(default)s)")
    parser.add_argument("--timeout", type=int, default=900, help="limit per command, seconds")
    parser.add_argument("--skip-slow-above", type=int, default=10**9,
                        help="do not run django-tenants' executors above this many communes")
    parser.add_argument("--out", default=str(REPO / "test-artifacts" / "bench_migrations.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not urlparse(args.database_url).path.lstrip("/").startswith("marelle_bench"):
        parser.error("the database is dropped: its name must start with marelle_bench")
    Bench(args).run()


if __name__ == "__main__":
    main()
