"""Benchmark of a Trésor public batch through the real services (figures for the notes; a
script, not a test).

It provisions a scratch commune from tests/fixtures/communes/alpha.yaml in a dedicated
database, inserts N families with a month of cantine bookings and issues their invoices
(``scripts/bench_invoicing.py``'s fixture and the real invoicing run), switches the régie to the
``tresor_public`` plugin, then times ``batch_prepare`` and ``batch_export`` (numbers, PES file
built by the plugin and checked by its validator, file stored, invoices transmitted with their
règlements) and counts their SQL queries:

1. without PDFs (``edition: null``: the commune sends its own avis des sommes à payer);
2. with the invoice PDFs in ``PES_PJ`` (``edition: "06"``). Invoice PDFs are rendered by a
   Celery task after the invoicing run and cached in ``Invoice.pdf``; the export reads that
   cache. Rendering 5,000 PDFs with WeasyPrint is the task's work, not the export's: here a
   sample of real PDFs is rendered and stored as each invoice's cache (cycled), so the export
   reads, gzips and base64-encodes real PDF bytes from disk for every invoice.

Between the two runs the first batch is undone in SQL (a fixture reset, not measured). Then a
PES Retour marking every pièce of the last batch soldée (written by the tests' fake guichet,
``tests/recovery/pes_fakes.py``) is imported twice through ``feedback_import``: the second
import must change nothing.

    .venv/bin/python scripts/bench_pes.py [--invoices 5000] [--pdf-sample 10]

The database ``marelle_bench_pes`` on the server of DATABASE_URL is dropped and created at
start, and left afterwards for inspection (``--drop-after`` to remove it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import bench_invoicing as fixture  # noqa: E402 - the invoicing benchmark's commune and families

fixture.DB_NAME = "marelle_bench_pes"
SETTINGS = {"id_post": "034000", "id_coll": "21340017910006", "cod_col": "123", "cod_bud": "00",
            "label": "Budget principal", "product_codes": {"cantine": "CANT"}}


def issue_invoices(families: int) -> int:
    from marelle.billing import invoicing
    from marelle.catalog.models import Regie

    fixture.populate(families)
    invoicing._after_issue = lambda run_id: None  # PDFs and e-mails: Celery's work, not measured here
    regie = Regie.objects.get(code="scolaire")
    run = invoicing.invoicing_run_draft(actor=None, regie=regie, period_start=fixture.PERIOD[0],
                                        period_end=fixture.PERIOD[1], label="Septembre 2026")
    invoicing.invoicing_run_issue(actor=None, run_id=run.pk)
    return run.invoices.count()


def cache_pdfs(sample: int) -> float:
    """Render ``sample`` real invoice PDFs and store them, cycled, as every invoice's cached PDF
    (what the post-issue task leaves behind). Returns the median rendering time (ms)."""
    from marelle.billing.models import Invoice
    from marelle.billing.pdf import render_invoice_pdf, store_invoice_pdf

    invoices = list(Invoice.objects.exclude(number="").order_by("pk"))
    rendered, timings = [], []
    for invoice in invoices[:sample]:
        started = time.perf_counter()
        rendered.append(render_invoice_pdf(invoice))
        timings.append((time.perf_counter() - started) * 1000)
    for index, invoice in enumerate(invoices):
        store_invoice_pdf(invoice, data=rendered[index % len(rendered)])
    timings = sorted(timings[1:] or timings)
    return timings[len(timings) // 2]


def undo_batches() -> None:
    """Fixture reset between the two runs (SQL, not the services)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM recovery_appliedfeedback; DELETE FROM recovery_recoveryitem; "
                       "DELETE FROM recovery_recoverybatch; DELETE FROM billing_allocation; "
                       "DELETE FROM billing_paymentattempt; "
                       "UPDATE billing_invoice SET status = 'to_pay', paid_cents = 0 WHERE status = 'transmitted'; "
                       "ANALYZE")


def run_once(edition) -> dict:
    from marelle.accounts.models import User
    from marelle.catalog.models import Regie
    from marelle.recovery import services
    from marelle_tresor_public.validator import validate_pes_aller

    Regie.objects.filter(code="scolaire").update(payment_plugin="tresor_public",
                                                 payment_settings={**SETTINGS, "edition": edition})
    regie = Regie.objects.get(code="scolaire")
    staff = User.objects.filter(email="regisseur@bench.example").first() or User.objects.create_user(
        "regisseur@bench.example", "Un-mot-de-passe-solide-42", first_name="Régis", last_name="Seur",
        is_active=True, is_staff=True, staff_role="regisseur")
    batch, prepare_s, prepare_q, _ = fixture.measure(lambda: services.batch_prepare(staff=staff, regie=regie))
    batch, export_s, export_q, slow = fixture.measure(lambda: services.batch_export(staff=staff, batch_id=batch.pk))
    content = services.batch_content(batch)
    started = time.perf_counter()
    errors = validate_pes_aller(content)
    revalidate_s = time.perf_counter() - started
    return {"edition": edition, "invoices": batch.invoice_count, "total_cents": batch.total_cents,
            "prepare_s": prepare_s, "prepare_q": prepare_q, "export_s": export_s, "export_q": export_q,
            "export_db_s": sum(t for t, _ in slow), "bytes": len(content), "errors": len(errors),
            "revalidate_s": revalidate_s, "sequence": batch.sequence}


def import_retour(sequence: int) -> dict:
    from marelle.accounts.models import User
    from marelle.billing.models import Invoice
    from marelle.catalog.models import Regie
    from marelle.recovery import services
    from marelle.recovery.models import RecoveryItem

    from tests.recovery import pes_fakes

    items = RecoveryItem.objects.filter(status="exported").order_by("piece_number")
    pieces = [pes_fakes.piece(piece=item.piece_number, lines=[("05", item.amount_cents, item.amount_cents, "10")],
                              debt_number=f"{item.piece_number:012d}") for item in items]
    content = pes_fakes.retour(exercice=items[0].exercice, bordereau=sequence, pieces=pieces)
    staff, regie = User.objects.get(email="regisseur@bench.example"), Regie.objects.get(code="scolaire")
    first, first_s, first_q, _ = fixture.measure(
        lambda: services.feedback_import(staff=staff, regie=regie, content=content, filename="retour.xml"))
    second, second_s, second_q, _ = fixture.measure(
        lambda: services.feedback_import(staff=staff, regie=regie, content=content, filename="retour.xml"))
    paid = Invoice.objects.filter(regie=regie, status="paid").count()
    return {"pieces": len(pieces), "bytes": len(content), "first_s": first_s, "first_q": first_q,
            "first_changes": len(first.changes), "second_s": second_s, "second_q": second_q,
            "second_changes": len(second.changes), "paid": paid}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=5000, help="families, hence invoices (default 5000)")
    parser.add_argument("--pdf-sample", type=int, default=10, help="real PDFs rendered and cycled (default 10)")
    parser.add_argument("--drop-after", action="store_true", help="drop the benchmark database at the end")
    args = parser.parse_args()
    if not 0 < args.invoices <= fixture.MAX_FAMILIES or args.pdf_sample < 1:
        parser.error("--invoices between 1 and 50,000, --pdf-sample at least 1")

    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/marelle")
    os.environ["DATABASE_URL"] = fixture.recreate_database(base)
    os.environ.setdefault("MARELLE_ENV", "development")
    os.environ["DEBUG"] = "false"
    os.environ["REDIS_URL"] = ""
    os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="marelle-bench-pes-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marelle.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_tenants.utils import tenant_context

    call_command("migrate_schemas", "--shared", verbosity=0)
    commune = fixture.provision("benchpes")
    with tenant_context(commune):
        started = time.perf_counter()
        count = issue_invoices(args.invoices)
        connection.cursor().execute("ANALYZE")
        setup_s = time.perf_counter() - started
        print(f"{count} factures émises en {setup_s:.1f} s (préparation, non comptée)", flush=True)
        without = run_once(None)
        undo_batches()
        pdf_ms = cache_pdfs(args.pdf_sample)
        with_pdfs = run_once("06")
        retour = import_retour(with_pdfs["sequence"])

    print()
    print(f"{'PDF':>4} {'factures':>8} | {'préparer s':>10} {'SQL':>4} | {'générer s':>9} {'dont BD':>7} {'SQL':>4} "
          f"| {'fichier Mo':>10} {'erreurs':>7} | {'revalidation s':>14}")
    for r in (without, with_pdfs):
        print(f"{'oui' if r['edition'] else 'non':>4} {r['invoices']:>8} | {r['prepare_s']:>10.2f} "
              f"{r['prepare_q']:>4} | {r['export_s']:>9.2f} {r['export_db_s']:>7.2f} {r['export_q']:>4} | "
              f"{r['bytes'] / 1e6:>10.1f} {r['errors']:>7} | {r['revalidate_s']:>14.2f}")
    print()
    print("« générer » = numéros + construction du PES par le plugin + validation structurelle + fichier stocké + "
          "factures transmises (règlements, ventilations, journal d'audit), une transaction. "
          f"PDF : lus depuis le cache Invoice.pdf (rendus par la tâche Celery après l'émission ; ici {args.pdf_sample} "
          f"PDF réels rendus, médiane {pdf_ms:.0f} ms chacun, recopiés pour chaque facture).")
    print(f"PES Retour de {retour['pieces']} pièces soldées ({retour['bytes'] / 1e6:.1f} Mo) : 1er import "
          f"{retour['first_s']:.2f} s, {retour['first_q']} requêtes, {retour['first_changes']} changements "
          f"({retour['paid']} factures réglées) ; 2e import {retour['second_s']:.2f} s, {retour['second_q']} "
          f"requêtes, {retour['second_changes']} changement.")
    if args.drop_after:
        fixture.drop_database(base)
    else:
        print(f"Base « {fixture.DB_NAME} » laissée pour inspection (--drop-after pour la supprimer).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
