"""Benchmark of the invoicing run (figures for the notes; a script, not a test).

For each size (default 500 and 5,000 families) it provisions a commune from
tests/fixtures/communes/alpha.yaml in a dedicated database, inserts that many families with
one child each and a month of accepted cantine bookings (set-based: bulk inserts of the
booking rows themselves, not through the booking service: this is a fixture), then times
``invoicing_run_draft`` and ``invoicing_run_issue`` and counts their SQL queries. The count
must not grow with the number of families: the run is set-based.

PDFs and "nouvelle facture" e-mails run in Celery after the issue commits: they are kept out
of the issue timing and a sample of PDFs is timed separately.

    .venv/bin/python scripts/bench_invoicing.py [--families 500,5000] [--pdf-sample 20]

The database ``marelle_bench_invoicing`` on the server of DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/) is dropped and created at start, and left afterwards
for inspection (``--drop-after`` to remove it).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO))

DB_NAME = "marelle_bench_invoicing"
MAX_FAMILIES = 50_000  # bounded: a benchmark, not a load test
PERIOD = (date(2026, 9, 1), date(2026, 9, 30))


def server_url(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def recreate_database(base_url: str) -> str:
    import psycopg

    admin = server_url(base_url, "postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return server_url(base_url, DB_NAME)


def drop_database(base_url: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    admin = server_url(base_url, "postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def provision(slug: str):
    from tenants.commune_config.validation import validate_text
    from tenants.models import Commune
    from tenants.sync import sync_commune

    text = (REPO / "tests" / "fixtures" / "communes" / "alpha.yaml").read_text()
    text = text.replace("slug: alpha", f"slug: {slug}").replace("  - famille.alpha.example\n", f"  - {slug}.example\n")
    loaded, errors = validate_text(text, f"{slug}.yaml", expected_slug=slug)
    if errors:
        raise SystemExit("\n".join(map(str, errors)))
    plan = sync_commune(loaded)
    if plan.outcome != "created":
        raise SystemExit(f"sync of {slug}: {plan.outcome} {plan.error}")
    return Commune.objects.get(slug=slug)


def school_days() -> list[date]:
    """Cantine days of the period (alpha: lundi, mardi, jeudi, vendredi)."""
    day, days = PERIOD[0], []
    while day <= PERIOD[1]:
        if day.weekday() in (0, 1, 3, 4):
            days.append(day)
        day += timedelta(days=1)
    return days


def populate(families: int, seed: int = 2026) -> int:
    """``families`` families, one child each, enrolled in the cantine with every school day
    of the month booked. Set-based: a handful of bulk inserts whatever the size."""
    from django.utils import timezone
    from marelle.booking.models import Booking, Enrolment, Reservation
    from marelle.catalog.models import Service
    from marelle.families.models import Child, Family, Guardian

    rng = random.Random(seed)
    service = Service.objects.get(code="cantine")
    establishment, period, unit = service.establishments.get(), service.periods.get(), service.units.get()
    now = timezone.now()
    family_rows = Family.objects.bulk_create(
        [Family(quotient=rng.randint(300, 1500),
                quotient_verified_until=date(2027, 8, 31) if rng.random() < 0.7 else None)
         for _ in range(families)], batch_size=5000)
    Guardian.objects.bulk_create(
        [Guardian(family=f, position=1, civility="mme", last_name=f"Nom{i:05d}", first_name="Camille",
                  email=f"parent{i}@bench.example", address_line=f"{i} rue de l'École", postcode="26300",
                  city="Alixan") for i, f in enumerate(family_rows)], batch_size=5000)
    children = Child.objects.bulk_create(
        [Child(family=f, last_name=f"Nom{i:05d}", first_name="Enfant", birth_date=date(2018, 1 + i % 12, 1 + i % 28),
               sex="f" if i % 2 else "m", consent_at=now) for i, f in enumerate(family_rows)], batch_size=5000)
    enrolments = Enrolment.objects.bulk_create(
        [Enrolment(child=c, service=service, establishment=establishment, period=period,
                   status=Enrolment.Status.ACCEPTED, decided_at=now) for c in children], batch_size=5000)
    days = school_days()
    # Prices as the booking service froze them: t1 300 (verified quotient ≤ 700), else 500.
    prices = {f.pk: 300 if (f.quotient_verified_until and f.quotient <= 700) else 500 for f in family_rows}
    reservations = Reservation.objects.bulk_create(
        [Reservation(number=f"R2026-{i + 1:06d}", child=e.child, enrolment=e, state=Reservation.State.ACCEPTED,
                     total_cents=len(days) * prices[e.child.family_id]) for i, e in enumerate(enrolments)],
        batch_size=5000)
    bookings = [Booking(reservation=r, enrolment=r.enrolment, child=r.child, establishment=establishment, unit=unit,
                        day=day, action=Booking.Action.BOOK, state=Booking.State.ACCEPTED,
                        unit_price_cents=prices[r.child.family_id])
                for r in reservations for day in days if rng.random() < 0.92]  # a few days not booked
    Booking.objects.bulk_create(bookings, batch_size=10_000)
    return len(bookings)


def measure(function):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        result = function()
        elapsed = time.perf_counter() - started
    captured = [q for q in queries.captured_queries if not q["sql"].startswith("SET search_path")]
    slowest = sorted(captured, key=lambda q: float(q["time"]), reverse=True)
    timed = [(float(q["time"]), q["sql"]) for q in slowest]
    return result, elapsed, len(captured), timed


def bench(families: int, pdf_sample: int) -> dict:
    from django.db import connection
    from django_tenants.utils import tenant_context
    from marelle.billing import invoicing
    from marelle.billing.models import Invoice, InvoiceLine
    from marelle.catalog.models import Regie

    commune = provision(f"bench{families}")
    with tenant_context(commune):
        started = time.perf_counter()
        bookings = populate(families)
        populate_s = time.perf_counter() - started
        connection.cursor().execute("ANALYZE")
        regie = Regie.objects.get(code="scolaire")

        deferred = []
        # PDFs and e-mails are Celery's work after the commit: recorded, not run, here.
        invoicing._after_issue = deferred.append
        run, draft_s, draft_q, draft_slow = measure(lambda: invoicing.invoicing_run_draft(
            actor=None, regie=regie, period_start=PERIOD[0], period_end=PERIOD[1], label="Septembre 2026"))
        _, issue_s, issue_q, issue_slow = measure(lambda: invoicing.invoicing_run_issue(actor=None, run_id=run.pk))
        assert deferred == [run.pk], deferred

        invoices = Invoice.objects.filter(run=run)
        count = invoices.count()
        assert count == families, (count, families)
        assert invoices.exclude(number="").count() == families
        lines = InvoiceLine.objects.filter(invoice__run=run).count()
        total = sum(invoices.values_list("total_cents", flat=True))

        pdf_ms = None
        if pdf_sample:
            try:
                from marelle.billing.pdf import render_invoice_pdf
            except ImportError:
                render_invoice_pdf = None
            if render_invoice_pdf is not None:
                timings = []
                for invoice in invoices.order_by("pk")[:pdf_sample]:
                    started = time.perf_counter()
                    render_invoice_pdf(invoice)
                    timings.append((time.perf_counter() - started) * 1000)
                pdf_ms = statistics.median(timings[1:] or timings)  # the first one warms fonts up
    return {"families": families, "bookings": bookings, "populate_s": populate_s, "draft_s": draft_s,
            "draft_q": draft_q, "draft_slow": draft_slow, "issue_s": issue_s, "issue_q": issue_q,
            "issue_slow": issue_slow, "invoices": count, "lines": lines, "total_cents": total, "pdf_ms": pdf_ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="500,5000", help="sizes, comma-separated (default 500,5000)")
    parser.add_argument("--pdf-sample", type=int, default=20, help="PDFs rendered to time one (0: none)")
    parser.add_argument("--slowest", type=int, default=0, help="also print the N slowest queries of each step")
    parser.add_argument("--drop-after", action="store_true", help="drop the benchmark database at the end")
    args = parser.parse_args()
    sizes = [int(s) for s in args.families.split(",") if s.strip()]
    if not sizes or any(not 0 < s <= MAX_FAMILIES for s in sizes):
        parser.error(f"--families: between 1 and {MAX_FAMILIES}")

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marelle")
    os.environ["DATABASE_URL"] = recreate_database(base)
    os.environ.setdefault("MARELLE_ENV", "development")
    os.environ["DEBUG"] = "false"
    os.environ["REDIS_URL"] = ""  # no broker: nothing leaves the process
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marelle.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()
    from django.core.management import call_command

    print(f"Base : {os.environ['DATABASE_URL']}", flush=True)
    call_command("migrate_schemas", "--shared", verbosity=0)

    results = []
    for families in sizes:
        print(f"… {families} familles", flush=True)
        results.append(bench(families, args.pdf_sample))

    print()
    header = (f"{'familles':>8} {'réservations':>12} {'factures':>8} | {'brouillon s':>11} {'dont BD':>7} "
              f"{'SQL':>4} | {'émission s':>10} {'dont BD':>7} {'SQL':>4} | {'total s':>7} {'ms/famille':>10} | "
              f"{'PDF ms':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        total_s = r["draft_s"] + r["issue_s"]
        pdf = f"{r['pdf_ms']:.0f}" if r["pdf_ms"] is not None else "n/a"
        draft_db, issue_db = (sum(t for t, _ in r[f"{step}_slow"]) for step in ("draft", "issue"))
        print(f"{r['families']:>8} {r['bookings']:>12} {r['invoices']:>8} | {r['draft_s']:>11.2f} {draft_db:>7.2f} "
              f"{r['draft_q']:>4} | {r['issue_s']:>10.2f} {issue_db:>7.2f} {r['issue_q']:>4} | {total_s:>7.2f} "
              f"{total_s * 1000 / r['families']:>10.2f} | {pdf:>6}")
    print()
    print("SQL : requêtes de la facturation (hors « SET search_path » de django-tenants) ; « dont BD » : temps "
          "passé dans PostgreSQL, le reste est du Python (ORM). "
          "Insertion des données de test non comptée : " +
          ", ".join(f"{r['families']} familles {r['populate_s']:.1f} s" for r in results) + ".")
    if len(results) > 1:
        small, large = results[0], results[-1]
        grow_draft = large["draft_q"] - small["draft_q"]
        grow_issue = large["issue_q"] - small["issue_q"]
        print(f"Croissance du nombre de requêtes de {small['families']} à {large['families']} familles : "
              f"brouillon {grow_draft:+d}, émission {grow_issue:+d} "
              "(lignes insérées par lots de 2 000, émission en une seule requête UPDATE : pas une requête par famille).")
    if any(r["pdf_ms"] is not None for r in results):
        pdf = statistics.median(r["pdf_ms"] for r in results if r["pdf_ms"] is not None)
        print(f"PDF (tâche Celery après l'émission, hors chronométrage) : ~{pdf:.0f} ms par facture "
              f"(médiane sur {args.pdf_sample}), soit ~{pdf * max(sizes) / 60000:.0f} min de worker "
              f"pour {max(sizes)} factures.")
    for r in results if args.slowest else ():
        for step in ("draft", "issue"):
            print(f"\n{r['families']} familles, {'brouillon' if step == 'draft' else 'émission'} : "
                  f"les {args.slowest} requêtes les plus lentes")
            for seconds, sql in r[f"{step}_slow"][:args.slowest]:
                print(f"  {seconds:7.3f} s  {' '.join(sql.split())[:150]}")
    if args.drop_after:
        drop_database(base)
    else:
        print(f"Base « {DB_NAME} » laissée pour inspection (--drop-after pour la supprimer).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
