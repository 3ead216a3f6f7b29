"""Families' "Mes factures et paiements": list, legend, detail, PDF, isolation, recap and
"Payer" (the real settlement core), windows, Trésor public, query counts."""

import html
import re
from datetime import datetime

import pytest
import time_machine
from django.db import connection
from django.http import HttpResponse
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from marelle.billing.invoicing import credit_note_create
from marelle.billing.models import Allocation, Invoice, PaymentAttempt
from marelle.catalog.models import Regie

from tests.billing import test_pdf as shared
from tests.billing.test_pdf import (
    ISSUE_DAY,
    PARIS,
    book_september,
    issue_september,
    pdf_text,
)
from tests.factories import make_family, make_staff

# Fixtures shared with the PDF tests.
in_alpha = shared.in_alpha
media_root = shared.media_root

HOST = "alpha.marelle.test"
LIST = "/factures/"

# This module is also a URLconf: the portal's, plus a stand-in for the payments app's start
# page (namespace "payments"), to check that "Payer" hands the attempt over to it.
urlpatterns = [
    path("paiement/", include(([path("<int:payment_id>/demarrer/", lambda request, payment_id: HttpResponse(
        f"start {payment_id}"), name="start")], "payments"))),
    path("", include("marelle.urls_tenant")),
]


def settlement_or_skip():
    return pytest.importorskip(
        "marelle.billing.settlement",
        reason="billing/settlement.py (payment_start, payment_record_manual) has not landed yet: the lead reruns "
               "these tests once it has")


def text(response) -> str:
    return re.sub(r"[\u00a0\u202f]", " ", html.unescape(response.content.decode()))


def client_for(user) -> Client:
    client = Client(HTTP_HOST=HOST)
    client.force_login(user)
    return client


@pytest.fixture
def family(in_alpha):
    return make_family("claire@example.fr", last_name="Martin", children=("Léa",))


@pytest.fixture
def other_family(in_alpha):
    return make_family("karim@example.fr", last_name="Benali", first_name="Karim", children=("Inès",))


@pytest.fixture
def invoices(family, other_family, media_root):
    """Both families' September cantine invoices (3 meals at 5,00 €), issued."""
    book_september(family)
    book_september(other_family)
    run = issue_september()
    return {i.family_id: i for i in Invoice.objects.filter(run=run).select_related("regie")}


@pytest.fixture
def family_client(family, in_alpha):
    client = client_for(family.guardians.get().user)
    connection.set_tenant(in_alpha)
    return client


def other_regie_invoice(family, *, number="ALSH-2026-000001", total=4000) -> Invoice:
    """An issued invoice of a second régie (alpha's YAML has one)."""
    regie = Regie.objects.create(code="alsh", label="Régie ALSH", invoice_prefix="ALSH", payment_plugin="payfip")
    return Invoice.objects.create(regie=regie, family=family, number=number, label="Vacances d'automne",
                                  status=Invoice.Status.TO_PAY, total_cents=total, issued_at=ISSUE_DAY,
                                  due_date=ISSUE_DAY.date())


# --- List, legend, states -----------------------------------------------------------------------


def test_list_shows_invoices_with_states_legend_and_payments(family, family_client, invoices, other_family):
    invoice = invoices[family.pk]
    with time_machine.travel(ISSUE_DAY, tick=False):
        credit = credit_note_create(actor=None, invoice_id=invoice.pk, amount_cents=500, reason="Grève")

    page = text(family_client.get(LIST))

    assert "<h1>Mes factures et paiements</h1>" in page
    row = page.split(f'id="facture-{invoice.pk}"')[1].split("</tr>")[0]
    assert invoice.number in row and "15,00 €" in row and "10,00 €" in row
    assert 'class="state state-partially_paid">Partiellement payée</span>' in row
    credit_row = page.split(f'id="facture-{credit.pk}"')[1].split("</tr>")[0]
    assert credit.number in credit_row and 'state-credit_note">Avoir</span>' in credit_row
    legend = page.split('id="legende-factures"')[1].split("</dl>")[0]
    for label in ("À payer", "Partiellement payée", "Payée", "Transmise au Trésor public", "Annulée", "Avoir"):
        assert f">{label}</span>" in legend
    payments_legend = page.split('id="legende-paiements"')[1].split("</dl>")[0]
    for label in ("En attente de validation par la banque", "Validé", "Refusé"):
        assert f">{label}</span>" in payments_legend
    # Another family's invoice is nowhere.
    assert invoices[other_family.pk].number not in page
    assert "Aucun paiement pour l'instant." in page


def test_payments_are_listed_with_their_state(family, family_client, invoices):
    settlement = settlement_or_skip()
    invoice = invoices[family.pk]
    staff = make_staff("regie@mairie.fr", role="regisseur")
    settlement.payment_record_manual(staff=staff, family=family, regie=invoice.regie, means="cheque",
                                     amount_cents=1500, invoice_ids=[invoice.pk], reference="CHQ 1234567")

    page = text(family_client.get(LIST))

    payments = page.split('id="paiements-titre"')[1]
    assert "Chèque" in payments and "15,00 €" in payments and invoice.number in payments
    assert 'state-paid">Validé</span>' in payments
    row = page.split(f'id="facture-{invoice.pk}"')[1].split("</tr>")[0]
    assert 'state-paid">Payée</span>' in row and 'type="checkbox"' not in row


def test_list_query_count_does_not_grow_with_invoices(family, family_client, invoices):
    with CaptureQueriesContext(connection) as one:
        assert family_client.get(LIST).status_code == 200
    regie = Regie.objects.create(code="alsh", label="Régie ALSH", invoice_prefix="ALSH", payment_plugin="payfip")
    for n in range(1, 6):
        Invoice.objects.create(regie=regie, family=family, number=f"ALSH-2026-{n:06d}", label="Vacances",
                               status=Invoice.Status.TO_PAY, total_cents=1000 * n, issued_at=ISSUE_DAY)
    with CaptureQueriesContext(connection) as six:
        page = text(family_client.get(LIST))
    assert "ALSH-2026-000005" in page
    assert len(six.captured_queries) == len(one.captured_queries)


# --- Detail and PDF, isolation ---------------------------------------------------------------------


def test_detail_shows_lines_per_child_totals_and_how_to_pay(family, family_client, invoices):
    invoice = invoices[family.pk]
    response = family_client.get(f"/factures/{invoice.pk}/")
    page = text(response)
    assert response.status_code == 200
    assert f"Facture {invoice.number}" in page and "Léa Martin" in page
    assert "14, 15, 17/09" in page and "5,00 €" in page and "15,00 €" in page
    assert "Reste à payer" in page and "Paiement en ligne par carte bancaire" in page
    assert f'href="/factures/{invoice.pk}/pdf/"' in page
    assert "Payer cette facture en ligne" in page


def test_pdf_download_is_the_familys_own_invoice_only(family, family_client, invoices, other_family):
    invoice = invoices[family.pk]
    response = family_client.get(f"/factures/{invoice.pk}/pdf/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="facture-{invoice.number}.pdf"'
    assert "no-store" in response["Cache-Control"]
    body = pdf_text(response.content)
    assert invoice.number in body and "15,00 €" in body and "Commune d'Alpha" in body
    invoice.refresh_from_db()
    assert invoice.pdf.name.startswith(f"factures/{invoice.number}_")  # generated on the fly, then kept

    theirs = invoices[other_family.pk]
    for url in (f"/factures/{theirs.pk}/", f"/factures/{theirs.pk}/pdf/", "/factures/999999/pdf/"):
        assert family_client.get(url).status_code == 404


def test_pages_are_for_signed_in_families(family, invoices):
    invoice = invoices[family.pk]
    anonymous = Client(HTTP_HOST=HOST).get(f"/factures/{invoice.pk}/pdf/")
    assert anonymous.status_code == 302 and "/compte/" in anonymous["Location"]
    staff = client_for(make_staff("agent@mairie.fr", role="regisseur"))
    assert staff.get(LIST).status_code == 403


# --- Recap and "Payer" --------------------------------------------------------------------------


def test_recap_then_payer_starts_the_payment_with_the_settlement_core(family, family_client, invoices):
    settlement_or_skip()
    invoice = invoices[family.pk]
    list_page = text(family_client.get(LIST))
    assert f'<input type="checkbox" name="factures" value="{invoice.pk}"' in list_page

    recap = family_client.get("/factures/payer/", {"factures": [invoice.pk]})
    page = text(recap)
    assert recap.status_code == 200
    assert invoice.number in page and 'id="total">15,00 €' in page and "Payer 15,00 €" in page

    response = family_client.post("/factures/payer/", {"factures": [invoice.pk]})
    attempt = PaymentAttempt.objects.get(family=family)
    # The payments package is mounted: "Payer" hands over to the provider's start page.
    assert response.status_code == 302 and response["Location"] == f"/paiement/{attempt.pk}/demarrer/"
    assert (attempt.state, attempt.amount_cents, attempt.means) == ("created", 1500, "online")
    assert list(attempt.allocations.values_list("invoice_id", flat=True)) == [invoice.pk]

    page = text(family_client.get(f"/factures/paiements/{attempt.pk}/"))
    assert "Paiement en ligne : redirection vers le prestataire" in page
    assert f'id="reference">P{attempt.pk:06d}</strong>' in page and invoice.number in page
    # Nothing was paid.
    invoice.refresh_from_db()
    assert invoice.status == "to_pay" and invoice.paid_cents == 0


def test_payer_hands_the_attempt_to_the_payments_app_when_it_is_mounted(family, family_client, invoices):
    settlement_or_skip()
    invoice = invoices[family.pk]
    with override_settings(ROOT_URLCONF=__name__):
        response = family_client.post("/factures/payer/", {"factures": [invoice.pk]})
    attempt = PaymentAttempt.objects.get(family=family)
    assert response.status_code == 302 and response["Location"] == f"/paiement/{attempt.pk}/demarrer/"


def test_several_invoices_of_one_regie_are_paid_together_not_across_regies(family, family_client, invoices):
    settlement_or_skip()
    first = invoices[family.pk]
    alsh = other_regie_invoice(family)

    refused = family_client.get("/factures/payer/", {"factures": [first.pk, alsh.pk]})
    assert refused.status_code == 400 and "même régie" in text(refused)
    # The ticked boxes are kept.
    assert f'value="{first.pk}" id="payer-{first.pk}" checked' in text(refused)

    second = Invoice.objects.create(regie=alsh.regie, family=family, number="ALSH-2026-000002", label="Toussaint",
                                    status=Invoice.Status.TO_PAY, total_cents=2550, issued_at=ISSUE_DAY)
    recap = text(family_client.get("/factures/payer/", {"factures": [alsh.pk, second.pk]}))
    assert "ALSH-2026-000001" in recap and "ALSH-2026-000002" in recap and 'id="total">65,50 €' in recap
    family_client.post("/factures/payer/", {"factures": [alsh.pk, second.pk]})
    assert PaymentAttempt.objects.get(family=family).amount_cents == 6550


def test_someone_elses_invoice_cannot_be_put_in_the_basket(family, family_client, invoices, other_family):
    settlement_or_skip()
    theirs = invoices[other_family.pk]
    response = family_client.get("/factures/payer/", {"factures": [theirs.pk]})
    assert response.status_code == 400 and theirs.number not in text(response)
    response = family_client.post("/factures/payer/", {"factures": [theirs.pk]})
    assert response.status_code == 302 and not PaymentAttempt.objects.exists()


def test_windows_say_until_when_and_from_when(family, family_client, invoices):
    settlement_or_skip()
    invoice = invoices[family.pk]
    Regie.objects.filter(pk=invoice.regie_id).update(online_payment_windows=[{"from_day": 1, "to_day": 10}])

    with time_machine.travel(datetime(2026, 10, 20, 12, 0, tzinfo=PARIS), tick=False):
        page = text(family_client.get(LIST))
        assert "à partir du 1er novembre 2026" in page
        assert 'type="checkbox" name="factures"' not in page
        refused = family_client.get("/factures/payer/", {"factures": [invoice.pk]})
        assert refused.status_code == 400 and "à partir du 1er novembre 2026" in text(refused)
        family_client.post("/factures/payer/", {"factures": [invoice.pk]})
        assert not PaymentAttempt.objects.exists()

    with time_machine.travel(datetime(2026, 11, 5, 12, 0, tzinfo=PARIS), tick=False):
        page = text(family_client.get(LIST))
        assert "jusqu'au 10 novembre 2026" in page
        assert f'type="checkbox" name="factures" value="{invoice.pk}"' in page
        assert family_client.post("/factures/payer/", {"factures": [invoice.pk]}).status_code == 302
        assert PaymentAttempt.objects.filter(family=family).count() == 1


def test_tresor_public_regie_says_it_is_paid_to_the_tresor_public(family, family_client, invoices):
    invoice = invoices[family.pk]
    Regie.objects.filter(pk=invoice.regie_id).update(payment_plugin="tresor_public")

    page = text(family_client.get(LIST))
    assert "se règlent auprès du Trésor public" in page
    assert "À régler auprès du Trésor public : pas de paiement sur ce portail." in page
    assert 'type="checkbox" name="factures"' not in page

    # Once transmitted (what the Trésor public plugin records), its reference is shown.
    Invoice.objects.filter(pk=invoice.pk).update(status=Invoice.Status.TRANSMITTED)
    transmission = PaymentAttempt.objects.create(regie=invoice.regie, family=family, means="tresor_public",
                                                 state="paid", amount_cents=1500, reference="TITRE 2026-000123")
    Allocation.objects.create(payment=transmission, invoice=invoice, amount_cents=1500)
    page = text(family_client.get(LIST))
    assert 'state-transmitted">Transmise au Trésor public</span>' in page
    assert "À régler auprès du Trésor public (référence TITRE 2026-000123)" in page
    detail = text(family_client.get(f"/factures/{invoice.pk}/"))
    assert "Référence à rappeler au Trésor public : TITRE 2026-000123." in detail
