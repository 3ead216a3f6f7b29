"""Invoice PDFs (WeasyPrint), read back with pypdf; the task run after issuing; the cache."""

import io
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.files.storage import default_storage
from django.db import connection
from django.test import override_settings
from django.utils.functional import empty
from marelle.billing.invoicing import credit_note_create, invoicing_run_draft, invoicing_run_issue
from marelle.billing.models import Invoice
from marelle.billing.pdf import invoice_pdf_bytes, render_invoice_pdf, stored_pdf_is_current
from marelle.billing.selectors import compact_dates, window_status
from marelle.booking.services import Change, reservation_submit
from marelle.catalog.models import Regie
from marelle.celery import app as celery_app

from tests.factories import accept_document, enrol, make_family

PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=PARIS)
ISSUE_DAY = datetime(2026, 10, 5, 9, 0, tzinfo=PARIS)
SEPT = (date(2026, 9, 1), date(2026, 9, 30))
DAYS = (date(2026, 9, 14), date(2026, 9, 15), date(2026, 9, 17))


# --- Helpers shared with the page tests ------------------------------------------------------


def _forget_media_root():
    # TenantFileSystemStorage caches MEDIA_ROOT/<schema>; its setting_changed hook does not
    # clear it for MEDIA_ROOT.
    if default_storage._wrapped is not empty:
        default_storage._wrapped.__dict__.pop("relative_media_root", None)


@pytest.fixture
def media_root(tmp_path):
    """PDFs of these tests go to a temporary MEDIA_ROOT."""
    with override_settings(MEDIA_ROOT=tmp_path):
        _forget_media_root()
        yield tmp_path
    _forget_media_root()


@pytest.fixture
def eager_celery():
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def book_september(family, days=DAYS):
    """Cantine bookings of the family's first child on ``days`` (clock frozen before the deadline)."""
    with time_machine.travel(MONDAY, tick=False):
        child = family.children.order_by("pk").first()
        accept_document(child)
        reservation_submit(actor=None, enrolment=enrol(child, "cantine"), changes=[Change(d, "repas") for d in days])


def issue_september(actor=None, label="Septembre 2026"):
    """Draft then issue the September run of alpha's "scolaire" régie; returns the run."""
    with time_machine.travel(ISSUE_DAY, tick=False):
        run = invoicing_run_draft(actor=actor, regie=Regie.objects.get(code="scolaire"), period_start=SEPT[0],
                                  period_end=SEPT[1], label=label)
        invoicing_run_issue(actor=actor, run_id=run.pk)
    return run


def issued_invoice(family) -> Invoice:
    """One issued invoice of 3 meals (no quotient proof: 5,00 € each → 15,00 €)."""
    book_september(family)
    run = issue_september()
    return Invoice.objects.select_related("regie").get(run=run, family=family)


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    assert data.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    return re.sub(r"[ \u00a0\u202f]+", " ", text)


@pytest.fixture
def in_alpha(alpha):
    connection.set_tenant(alpha)
    yield alpha
    connection.set_schema_to_public()


# --- Pure helpers ------------------------------------------------------------------------------


def test_dates_are_compacted_per_month():
    assert compact_dates(["2026-09-14", "2026-09-15", "2026-09-17"]) == "14, 15, 17/09"
    assert compact_dates(["2026-10-01", "2026-09-29", "2026-09-28"]) == "28, 29/09, 01/10"
    assert compact_dates(["2026-12-31", "2027-01-04"]) == "31/12/2026, 04/01/2027"
    assert compact_dates([]) == ""


def test_online_payment_windows_say_until_when_and_from_when(in_alpha):
    regie = Regie.objects.get(code="scolaire")
    assert window_status(regie, date(2026, 10, 20)).always
    regie.online_payment_windows = [{"from_day": 1, "to_day": 10}]
    open_now = window_status(regie, date(2026, 10, 5))
    assert open_now.is_open and open_now.until == date(2026, 10, 10)
    assert "jusqu'au 10 octobre 2026" in open_now.text
    closed = window_status(regie, date(2026, 10, 20))
    assert not closed.is_open and closed.opens_on == date(2026, 11, 1)
    assert "à partir du 1er novembre 2026" in closed.text
    regie.online_payment_windows = [{"from_date": "2026-12-01", "to_date": "2026-12-15"}]
    assert window_status(regie, date(2026, 11, 2)).opens_on == date(2026, 12, 1)
    over = window_status(regie, date(2027, 1, 2))
    assert not over.is_open and over.opens_on is None and "terminée" in over.text


# --- The PDF ---------------------------------------------------------------------------------


def test_invoice_pdf_is_readable_and_carries_number_total_commune_and_lines(in_alpha, media_root):
    family = make_family("pdf@example.fr", last_name="Durand", children=("Zoé",))
    invoice = issued_invoice(family)

    text = pdf_text(render_invoice_pdf(invoice))

    assert invoice.number == "SCO-2026-000001"
    assert "Facture n° SCO-2026-000001" in text
    assert "Commune d'Alpha" in text and "Régie scolaire" in text
    assert "15,00 €" in text and "5,00 €" in text
    assert "Zoé Durand" in text and "14, 15, 17/09" in text
    assert "Madame Claire Durand" in text and "Alixan" in text and f"F{family.pk:06d}" in text
    assert "05/10/2026" in text and "04/11/2026" in text  # issued, due
    assert "du 01/09/2026 au 30/09/2026" in text
    assert "Déjà réglé 0,00 €" in text and "Reste à payer 15,00 €" in text
    # Régie with PayFiP: paid online on the portal, or at the desk.
    assert "Paiement en ligne" in text and "http://alpha.marelle.test/factures/" in text


def test_credit_note_pdf_says_avoir_and_references_the_invoice(in_alpha, media_root):
    invoice = issued_invoice(make_family("avoir@example.fr", children=("Léo",)))
    with time_machine.travel(ISSUE_DAY, tick=False):
        credit = credit_note_create(actor=None, invoice_id=invoice.pk, amount_cents=500, reason="Repas non servi")

    text = pdf_text(render_invoice_pdf(credit))

    assert f"Avoir n° {credit.number}" in text
    assert f"Avoir sur la facture {invoice.number}" in text
    assert "Montant de l'avoir 5,00 €" in text and "Repas non servi" in text
    # The invoice now shows what the avoir settled.
    invoice.refresh_from_db()
    text = pdf_text(render_invoice_pdf(invoice))
    assert "Déjà réglé 5,00 €" in text and "Reste à payer 10,00 €" in text


def test_how_to_pay_follows_the_regie(in_alpha, media_root):
    invoice = issued_invoice(make_family("regie@example.fr"))
    Regie.objects.filter(pk=invoice.regie_id).update(payment_plugin="tresor_public")
    invoice.regie.refresh_from_db()
    assert "transmise au Trésor public" in pdf_text(render_invoice_pdf(invoice))

    Regie.objects.filter(pk=invoice.regie_id).update(payment_plugin="")
    invoice.regie.refresh_from_db()
    text = pdf_text(render_invoice_pdf(invoice))
    assert "À régler auprès de la régie : Régie scolaire" in text and "Paiement en ligne par carte" not in text

    Regie.objects.filter(pk=invoice.regie_id).update(payment_plugin="payfip",
                                                     online_payment_windows=[{"from_day": 1, "to_day": 10}])
    invoice.regie.refresh_from_db()
    with time_machine.travel(datetime(2026, 10, 20, 9, 0, tzinfo=PARIS), tick=False):
        text = pdf_text(render_invoice_pdf(invoice))
    assert "à partir du 1er novembre 2026" in text


# --- Issued → task: PDF cached, e-mail sent ----------------------------------------------------


def test_issuing_a_run_stores_each_pdf_and_emails_each_family(in_alpha, media_root, eager_celery,
                                                              django_capture_on_commit_callbacks):
    families = [make_family(f"f{i}@example.fr", last_name=f"Nom{i}", children=("E",)) for i in range(2)]
    for family in families:
        book_september(family)
    with django_capture_on_commit_callbacks(execute=True):
        run = issue_september()

    invoices = list(Invoice.objects.filter(run=run).order_by("number"))
    assert len(invoices) == 2
    for invoice in invoices:
        assert invoice.pdf.name.startswith(f"factures/{invoice.number}_")
        assert stored_pdf_is_current(invoice)
        assert (media_root / connection.schema_name / invoice.pdf.name).exists()  # per-tenant storage
        assert "15,00 €" in pdf_text(invoice.pdf.read())
    subjects = sorted(m.subject for m in mail.outbox)
    assert subjects == [f"Nouvelle facture disponible : {i.number} – Commune d'Alpha" for i in invoices]
    message = next(m for m in mail.outbox if invoices[0].number in m.subject)
    assert message.to == ["f0@example.fr"]
    body = re.sub(r"[\u00a0\u202f]", " ", message.body)
    assert "Montant : 15,00 €" in body and "À payer avant le 4 novembre 2026" in body
    assert f"http://alpha.marelle.test/factures/{invoices[0].pk}/" in message.body

    # Run again (a retried task): no second e-mail, PDFs kept.
    from marelle.billing.tasks import invoices_issued

    mail.outbox.clear()
    names = [i.pdf.name for i in invoices]
    with django_capture_on_commit_callbacks(execute=True):
        invoices_issued.delay(run.pk)
    assert mail.outbox == []
    assert [i.pdf.name for i in Invoice.objects.filter(run=run).order_by("number")] == names


def test_cached_pdf_is_reused_until_the_invoice_state_changes(in_alpha, media_root):
    invoice = issued_invoice(make_family("cache@example.fr"))
    assert not invoice.pdf

    first = invoice_pdf_bytes(invoice)  # generated on the fly, then stored
    invoice.refresh_from_db()
    stored = invoice.pdf.name
    assert stored and stored_pdf_is_current(invoice)
    assert invoice_pdf_bytes(invoice) == first
    invoice.refresh_from_db()
    assert invoice.pdf.name == stored

    with time_machine.travel(ISSUE_DAY, tick=False):
        credit_note_create(actor=None, invoice_id=invoice.pk, amount_cents=500, reason="Grève")
    invoice.refresh_from_db()
    assert not stored_pdf_is_current(invoice)
    assert "Reste à payer 10,00 €" in pdf_text(invoice_pdf_bytes(invoice))
    invoice.refresh_from_db()
    assert invoice.pdf.name != stored and not default_storage.exists(stored)
