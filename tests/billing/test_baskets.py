"""Immediate payment: adhesion and prepaid bookings in a basket, paid (invoice issued and
settled, adhesion opens bookings) or expired (bookings released, places given back)."""

import copy
import html
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test import Client
from marelle.billing.baskets import (
    BasketError,
    basket_checkout,
    basket_for_adhesion,
    expire_unpaid_baskets,
    expire_unpaid_baskets_now,
    next_steps,
)
from marelle.billing.invoicing import invoicing_run_draft
from marelle.billing.models import Basket, FamilyCredit, Invoice, PaymentAttempt
from marelle.billing.settlement import payment_apply_status, payment_attach_reference
from marelle.booking.models import Booking, Enrolment, Occupancy
from marelle.booking.services import Change, reservation_submit
from marelle.catalog.models import Establishment, Regie
from marelle.core import commune as commune_configs
from marelle.payments.services import build_request

from tenants.commune_config.schema import CommuneConfig
from tests.factories import accept_document, enrol, make_family

PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=PARIS)
DAYS = (date(2026, 9, 14), date(2026, 9, 15))


@pytest.fixture
def prepaid(alpha, monkeypatch):
    """Alpha's cantine with an adhesion paid immediately (17,00 €) and bookings paid in
    advance within 30 minutes: the parsed configuration is swapped for this test only (also
    seen by requests, whose middleware loads the commune again)."""
    use_prepaid_config(alpha, monkeypatch)
    connection.set_tenant(alpha)
    return alpha


def use_prepaid_config(alpha, monkeypatch, *, booking_mode: str = "immediate") -> None:
    config = copy.deepcopy(alpha.config)
    cantine = next(s for s in config["services"] if s["code"] == "cantine")
    cantine["enrolment"]["adhesion"] = {"label": "Adhésion cantine", "amount_cents": 1700, "payment": "immediate"}
    cantine["booking"]["prepayment"] = {"basket_expiry_minutes": 30}
    cantine["booking"]["mode"] = booking_mode
    monkeypatch.setitem(commune_configs._by_digest, alpha.config_digest, CommuneConfig.model_validate(config))


@pytest.fixture
def family(prepaid):
    family = make_family("panier@example.fr", last_name="Panier", children=("Léa",))
    family.quotient_verified_until = date(2026, 12, 31)
    family.save()
    accept_document(family.children.get())
    return family


@pytest.fixture
def enrolment(family):
    with time_machine.travel(MONDAY, tick=False):
        return enrol(family.children.get(), "cantine")


def _pay(payment, status="paid", amount=None):
    reference = f"OP{payment.pk:06d}"
    payment_attach_reference(payment_id=payment.pk, provider_reference=reference)
    return payment_apply_status(payment_id=payment.pk, status=status,
                                amount_cents=payment.amount_cents if amount is None else amount,
                                provider_reference=reference)


def test_adhesion_paid_online_issues_a_paid_invoice_and_opens_bookings(family, enrolment):
    assert enrolment.adhesion == Enrolment.Adhesion.AWAITING_PAYMENT
    user = family.primary_guardian.user
    with time_machine.travel(MONDAY, tick=False):
        basket = basket_for_adhesion(actor=user, family=family, enrolment_id=enrolment.pk)
        assert basket_for_adhesion(actor=user, family=family, enrolment_id=enrolment.pk) == basket  # reused
        assert basket.invoice.status == "draft" and basket.invoice.number == "" and basket.invoice.total_cents == 1700
        assert basket.expires_at == MONDAY + timedelta(minutes=30)
        payment = basket_checkout(actor=user, family=family, basket_ids=[basket.pk])
        assert (payment.amount_cents, payment.provider, payment.state) == (1700, "payfip", "created")
        assert basket_checkout(actor=user, family=family, basket_ids=[basket.pk]) == payment  # no second attempt
        # What the provider's page shows: the invoice has no number yet, its label says what is paid.
        request = build_request(payment, return_url="https://a/r", notification_url="https://a/n")
        assert request.description.startswith("Adhésion cantine – Cantine d'Alpha – Léa")
        assert [(i.label, i.amount_cents) for i in request.items] == [(basket.label, 1700)]
        _pay(payment)

    basket.refresh_from_db()
    invoice = Invoice.objects.get(pk=basket.invoice_id)
    assert basket.state == Basket.State.PAID
    assert (invoice.status, invoice.paid_cents, invoice.total_cents) == ("paid", 1700, 1700)
    assert invoice.number == "SCO-2026-000001" and invoice.debtor["last_name"] == "Panier"
    assert invoice.lines.get().label == "Adhésion cantine – Cantine d'Alpha"
    enrolment.refresh_from_db()
    assert enrolment.adhesion == Enrolment.Adhesion.PAID
    # The payment's return page points to what it opened.
    assert next_steps(PaymentAttempt.objects.get(pk=payment.pk)) == [
        ("Réserver les jours de Léa – Cantine d'Alpha", f"/reservations/{enrolment.pk}/planning/")]


def test_prepaid_bookings_are_paid_once_and_left_out_of_the_monthly_run(family, enrolment):
    Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.PAID)
    enrolment.refresh_from_db()
    user = family.primary_guardian.user
    with time_machine.travel(MONDAY, tick=False):
        reservation = reservation_submit(actor=user, enrolment=enrolment, changes=[Change(d, "repas") for d in DAYS])
        basket = Basket.objects.get(family=family)
        invoice = basket.invoice
        assert basket.items.count() == 2 and invoice.total_cents == 2 * 300
        line = invoice.lines.get()
        assert (line.quantity, line.unit_price_cents, line.dates) == (2, 300, ["2026-09-14", "2026-09-15"])
        assert reservation.number in basket.label
        _pay(basket_checkout(actor=user, family=family, basket_ids=[basket.pk]))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.paid_cents) == ("paid", 600)

    # September's run must not bill the prepaid meals a second time.
    with time_machine.travel(datetime(2026, 10, 5, 9, 0, tzinfo=PARIS), tick=False):
        run = invoicing_run_draft(actor=None, regie=Regie.objects.get(code="scolaire"),
                                  period_start=date(2026, 9, 1), period_end=date(2026, 9, 30), label="Septembre")
    assert not run.invoices.exists()


def test_basket_expiry_releases_the_bookings_and_gives_the_places_back(family, enrolment):
    Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.PAID)
    enrolment.refresh_from_db()
    user = family.primary_guardian.user
    with time_machine.travel(MONDAY, tick=False):
        reservation_submit(actor=user, enrolment=enrolment, changes=[Change(d, "repas") for d in DAYS])
    basket = Basket.objects.get(family=family)
    establishment = Establishment.objects.get(pk=enrolment.establishment_id)
    taken = Occupancy.objects.get(establishment=establishment, day=DAYS[0]).taken
    assert taken == 1

    with time_machine.travel(MONDAY + timedelta(minutes=29), tick=False):
        assert expire_unpaid_baskets_now() == {"expired": 0, "waiting_for_payment": 0}
    with time_machine.travel(MONDAY + timedelta(minutes=31), tick=False):
        with pytest.raises(BasketError, match="Le délai de paiement de .* est dépassé"):
            basket_checkout(actor=user, family=family, basket_ids=[basket.pk])
        assert expire_unpaid_baskets.apply().result == {"expired": 1, "waiting_for_payment": 0}
        assert expire_unpaid_baskets_now() == {"expired": 0, "waiting_for_payment": 0}  # once

    basket.refresh_from_db()
    assert basket.state == Basket.State.EXPIRED
    assert set(Booking.objects.filter(enrolment=enrolment, action="book").values_list("state", flat=True)) == {
        "cancelled"}
    assert Occupancy.objects.get(establishment=establishment, day=DAYS[0]).taken == 0
    assert Invoice.objects.get(pk=basket.invoice_id).number == ""  # never numbered: no gap


def test_expiry_waits_for_a_payment_under_way_and_late_money_goes_to_credit(family, enrolment):
    Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.PAID)
    enrolment.refresh_from_db()
    user = family.primary_guardian.user
    with time_machine.travel(MONDAY, tick=False):
        reservation_submit(actor=user, enrolment=enrolment, changes=[Change(DAYS[0], "repas")])
        basket = Basket.objects.get(family=family)
        payment = basket_checkout(actor=user, family=family, basket_ids=[basket.pk])
        payment_attach_reference(payment_id=payment.pk, provider_reference="OP777")
        payment_apply_status(payment_id=payment.pk, status="pending", provider_reference="OP777")
    with time_machine.travel(MONDAY + timedelta(minutes=45), tick=False):
        # The family is on the bank's page: nothing is released under their feet.
        assert expire_unpaid_baskets_now() == {"expired": 0, "waiting_for_payment": 1}
        payment_apply_status(payment_id=payment.pk, status="refused", provider_reference="OP777")
        assert expire_unpaid_baskets_now()["expired"] == 1
        # The bank finally says paid after all: the money is kept as the family's credit.
        payment_apply_status(payment_id=payment.pk, status="paid", amount_cents=300, provider_reference="OP777")
    assert PaymentAttempt.objects.get(pk=payment.pk).state == "paid"
    assert FamilyCredit.objects.get(family=family).balance_cents == 300
    assert Invoice.objects.get(pk=basket.invoice_id).status == "draft"


def test_another_familys_basket_is_unknown(family, enrolment):
    other = make_family("autre@example.fr", last_name="Autre")
    with time_machine.travel(MONDAY, tick=False):
        basket = basket_for_adhesion(actor=None, family=family, enrolment_id=enrolment.pk)
        with pytest.raises(BasketError, match="introuvable"):
            basket_checkout(actor=None, family=other, basket_ids=[basket.pk])
        with pytest.raises(BasketError, match="introuvable"):
            basket_for_adhesion(actor=None, family=other, enrolment_id=enrolment.pk)


def test_family_pages_pay_the_adhesion_and_list_what_is_due(family, enrolment):
    client = Client(HTTP_HOST="alpha.marelle.test")
    client.force_login(family.primary_guardian.user)
    with time_machine.travel(MONDAY, tick=False):
        page = client.get(f"/reservations/inscription/{enrolment.pk}/adhesion/")
        assert page.status_code == 200 and "Payer 17,00" in page.content.decode().replace("\u00a0", " ")
        response = client.post(f"/reservations/inscription/{enrolment.pk}/adhesion/")
        payment = PaymentAttempt.objects.get(family=family)
        assert response.status_code == 302 and response["Location"] == f"/paiement/{payment.pk}/demarrer/"

        home = html.unescape(client.get("/famille/").content.decode()).replace("\u00a0", " ")
        assert "Paiement immédiat en attente : 17,00 €</a>, à régler avant le 7 septembre à 10h30." in home
        due = html.unescape(client.get("/factures/a-payer/").content.decode()).replace("\u00a0", " ")
        assert "Adhésion cantine – Cantine d'Alpha" in due and "Payer 17,00 € en ligne" in due
        assert "régler avant le" in client.get("/factures/").content.decode()
        # Another family cannot pay (nor see) it.
        other = Client(HTTP_HOST="alpha.marelle.test")
        other.force_login(make_family("autre2@example.fr", last_name="Autre").primary_guardian.user)
        basket = Basket.objects.get(family=family)
        refused = other.post("/factures/a-payer/payer/", {"panier": basket.pk}, follow=True)
        assert "introuvable" in refused.content.decode()
        assert PaymentAttempt.objects.filter(family=family).count() == 1


def test_validating_a_prepaid_reservation_sends_the_family_to_pay(family, enrolment):
    Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.PAID)
    client = Client(HTTP_HOST="alpha.marelle.test")
    client.force_login(family.primary_guardian.user)
    with time_machine.travel(MONDAY, tick=False):
        response = client.post(f"/reservations/{enrolment.pk}/recapitulatif/", {
            "cle": "b" * 32, "ligne": [f"{d.isoformat()}|repas|book||" for d in DAYS]}, follow=True)
    page = html.unescape(response.content.decode()).replace("\u00a0", " ").replace("\u202f", " ")
    assert response.redirect_chain[-1][0] == "/factures/a-payer/"
    assert "elle se paie d'avance. Réglez 6,00 € avant 10h30" in page
    assert "Payer 6,00 € en ligne" in page and "14/09, 15/09" in page


def test_a_paid_adhesion_needs_no_basket(family, enrolment):
    Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.PAID)
    with pytest.raises(BasketError, match="Aucune adhésion"):
        basket_for_adhesion(actor=None, family=family, enrolment_id=enrolment.pk)


def test_two_childrens_adhesions_are_paid_in_one_payment(family, enrolment):
    from marelle.booking.models import Enrolment as EnrolmentModel
    from marelle.families.models import Child

    with time_machine.travel(MONDAY, tick=False):
        tom = Child.objects.create(family=family, last_name="Panier", first_name="Tom", birth_date=date(2019, 5, 2),
                                   sex="m", consent_at=MONDAY)
        accept_document(tom)
        second = enrol(tom, "cantine")
        first_basket = basket_for_adhesion(actor=None, family=family, enrolment_id=enrolment.pk)
        second_basket = basket_for_adhesion(actor=None, family=family, enrolment_id=second.pk)
        client = Client(HTTP_HOST="alpha.marelle.test")
        client.force_login(family.primary_guardian.user)
        page = html.unescape(client.get("/factures/a-payer/").content.decode()).replace("\u00a0", " ")
        assert "2 paiements pour un montant total de <strong>34,00 €</strong>" in page
        response = client.post("/factures/a-payer/payer/", {"panier": [first_basket.pk, second_basket.pk]})
        payment = PaymentAttempt.objects.get(family=family)
        assert response["Location"] == f"/paiement/{payment.pk}/demarrer/" and payment.amount_cents == 3400
        _pay(payment)
    numbers = sorted(Invoice.objects.filter(basket__in=[first_basket, second_basket]).values_list("number", flat=True))
    assert numbers == ["SCO-2026-000001", "SCO-2026-000002"]
    assert set(EnrolmentModel.objects.filter(child__family=family).values_list("adhesion", flat=True)) == {"paid"}


def test_the_api_says_what_to_pay_for_prepaid_bookings(family, enrolment):
    from marelle.api.services import token_obtain
    from rest_framework.test import APIClient

    Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.PAID)
    with time_machine.travel(MONDAY, tick=False):
        api = APIClient(HTTP_HOST="alpha.marelle.test")
        api.credentials(HTTP_AUTHORIZATION=f"Token {token_obtain(user=family.primary_guardian.user).key}")
        response = api.post(f"/api/v1/inscriptions/{enrolment.pk}/reservations/", {"lignes": [
            {"jour": d.isoformat(), "unite": "repas", "action": "reserver"} for d in DAYS]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["payment_due"] == {"amount_cents": 600, "pay_before": "2026-09-07T10:30:00+02:00",
                                              "url": "http://alpha.marelle.test/factures/a-payer/"}


def test_a_prepaid_day_cancelled_in_time_becomes_an_avoir_and_credit(family, enrolment):
    from marelle.billing.models import Allocation
    from marelle.billing.settlement import credit_balance_cents

    Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.PAID)
    enrolment.refresh_from_db()
    user = family.primary_guardian.user
    with time_machine.travel(MONDAY, tick=False):
        reservation_submit(actor=user, enrolment=enrolment, changes=[Change(d, "repas") for d in DAYS])
        basket = Basket.objects.get(family=family)
        payment = basket_checkout(actor=user, family=family, basket_ids=[basket.pk])
        _pay(payment)
        cancel = reservation_submit(actor=user, enrolment=enrolment, changes=[Change(DAYS[1], "repas", "cancel")])
    invoice = Invoice.objects.get(pk=basket.invoice_id)
    [avoir] = invoice.credit_notes.all()
    assert (avoir.total_cents, avoir.status, avoir.number) == (-300, "paid", "SCO-2026-000002")
    assert "15/09" in avoir.label and cancel.number in avoir.label
    assert (invoice.status, invoice.paid_cents) == ("paid", 600)  # settled: 300 paid + 300 avoir
    assert Allocation.objects.get(payment=payment, invoice=invoice).amount_cents == 300
    assert credit_balance_cents(family=family, regie=invoice.regie) == 300


def test_requests_accepted_by_staff_are_paid_in_advance_and_accepted_cancellations_credited(
        prepaid, monkeypatch, django_capture_on_commit_callbacks):
    """A prepaid service in "request" mode: nothing to pay until the agent accepts; then a
    basket with 48 hours to pay, announced by e-mail; an accepted cancellation of a paid day
    becomes an avoir and credit."""
    from django.core import mail
    from marelle.billing.settlement import credit_balance_cents
    from marelle.booking.services import booking_decide

    from tests.factories import make_staff

    use_prepaid_config(prepaid, monkeypatch, booking_mode="request")
    family = make_family("demande@example.fr", last_name="Demande", children=("Zoé",))
    child = family.children.get()
    accept_document(child)
    staff = make_staff("agent@example.fr", role="regisseur")
    with time_machine.travel(MONDAY, tick=False):
        enrolment = enrol(child, "cantine")
        Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.PAID)
        enrolment.refresh_from_db()
        reservation = reservation_submit(actor=None, enrolment=enrolment, changes=[Change(d, "repas") for d in DAYS])
        assert not Basket.objects.filter(family=family).exists()  # requested: nothing to pay yet
        with django_capture_on_commit_callbacks(execute=True):
            booking_decide(staff=staff, booking_ids=list(reservation.lines.values_list("pk", flat=True)), accept=True)
        basket = Basket.objects.get(family=family)
        assert basket.expires_at == MONDAY + timedelta(hours=48) and basket.invoice.total_cents == 1000
        assert "réglez 10,00 € avant le mercredi 9 septembre 2026 à 10h00" in mail.outbox[-1].body.replace("\u00a0", " ")
        _pay(basket_checkout(actor=None, family=family, basket_ids=[basket.pk]))
        # The family asks to cancel a paid day (in "request" mode, a request); the agent accepts.
        later = MONDAY.replace(day=8)
    with time_machine.travel(later, tick=False):
        cancel = reservation_submit(actor=None, enrolment=enrolment, changes=[Change(DAYS[0], "repas", "cancel")])
        booked = Booking.objects.get(enrolment=enrolment, day=DAYS[0], action="book")
        assert booked.state == "cancel_requested", cancel.state
        booking_decide(staff=staff, booking_ids=[booked.pk], accept=True)
    assert credit_balance_cents(family=family, regie=basket.regie) == 500
    assert Invoice.objects.get(pk=basket.invoice_id).credit_notes.get().total_cents == -500


def test_an_abandoned_bank_page_holds_the_places_only_a_little_past_the_expiry(family, enrolment):
    Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.PAID)
    enrolment.refresh_from_db()
    with time_machine.travel(MONDAY, tick=False):
        reservation_submit(actor=None, enrolment=enrolment, changes=[Change(DAYS[0], "repas")])
        basket = Basket.objects.get(family=family)
        payment = basket_checkout(actor=None, family=family, basket_ids=[basket.pk])
        payment_attach_reference(payment_id=payment.pk, provider_reference="OP888")
        payment_apply_status(payment_id=payment.pk, status="pending", provider_reference="OP888")
    with time_machine.travel(MONDAY + timedelta(minutes=49), tick=False):  # 30 + 19
        assert expire_unpaid_baskets_now() == {"expired": 0, "waiting_for_payment": 1}
    with time_machine.travel(MONDAY + timedelta(minutes=51), tick=False):  # 30 + 20 and more
        assert expire_unpaid_baskets_now() == {"expired": 1, "waiting_for_payment": 0}
    assert Booking.objects.get(enrolment=enrolment, action="book").state == "cancelled"
    assert PaymentAttempt.objects.get(pk=payment.pk).state == "pending"  # the bank still decides


def test_an_adhesion_paid_after_its_basket_expired_is_still_settled_once(family, enrolment):
    with time_machine.travel(MONDAY, tick=False):
        basket = basket_for_adhesion(actor=None, family=family, enrolment_id=enrolment.pk)
        late = basket_checkout(actor=None, family=family, basket_ids=[basket.pk])
        payment_attach_reference(payment_id=late.pk, provider_reference="OP-LATE")
    with time_machine.travel(MONDAY + timedelta(hours=2), tick=False):
        assert expire_unpaid_baskets_now()["expired"] == 1  # nothing to release: adhesions hold no place
        retry = basket_for_adhesion(actor=None, family=family, enrolment_id=enrolment.pk)
        assert retry != basket
        # The bank confirms the first payment after all: the adhesion is paid, its invoice issued.
        payment_apply_status(payment_id=late.pk, status="paid", amount_cents=1700, provider_reference="OP-LATE")
        enrolment.refresh_from_db()
        assert enrolment.adhesion == Enrolment.Adhesion.PAID
        assert Invoice.objects.get(pk=basket.invoice_id).status == "paid"
        assert not FamilyCredit.objects.filter(family=family, balance_cents__gt=0).exists()
        # The second basket cannot be paid twice.
        with pytest.raises(BasketError, match="L'adhésion de Léa est déjà payée"):
            basket_checkout(actor=None, family=family, basket_ids=[retry.pk])
