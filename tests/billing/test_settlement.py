"""The settlement core: provider statuses applied once, allocation, credit, desk payments,
refunds, online payment rules, reconciliation of stale attempts."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from marelle.audit.models import AuditEvent
from marelle.billing.models import (
    Allocation,
    FamilyCredit,
    Invoice,
    PaymentAttempt,
    ProviderNotification,
)
from marelle.billing.reconciliation import reconcile_all_communes, reconcile_pending
from marelle.billing.settlement import (
    SettlementError,
    credit_apply,
    credit_balance_cents,
    online_payment_window,
    payment_accept_reported_amount,
    payment_apply_status,
    payment_attach_reference,
    payment_record_manual,
    payment_refund,
    payment_start,
)
from marelle.catalog.models import Regie

from tests.factories import make_family, make_staff

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=PARIS)


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def regie(alpha):
    connection.set_tenant(alpha)
    return Regie.objects.get(code="scolaire")


@pytest.fixture
def family(regie):
    return make_family("payeur@example.fr", last_name="Payeur")


@pytest.fixture
def staff(regie):
    return make_staff("regisseur@example.fr", role="regisseur")


_numbers = iter(range(1, 10_000))


def issue(family, regie, total_cents, *, issued=None) -> Invoice:
    """An issued invoice to pay (as invoicing_run_issue leaves it)."""
    return Invoice.objects.create(regie=regie, family=family, label="Cantine", number=f"SCO-2026-{next(_numbers):06d}",
                                  status="to_pay", total_cents=total_cents, issued_at=issued or timezone.now(),
                                  due_date=date(2026, 12, 31))


def fresh(obj):
    obj.refresh_from_db()
    return obj


def paid_online(family, invoices, *, event_id="", amount=None):
    payment = payment_start(actor=family.primary_guardian.user, family=family, invoice_ids=[i.pk for i in invoices])
    return payment_apply_status(payment_id=payment.pk, status="paid",
                                amount_cents=payment.amount_cents if amount is None else amount,
                                provider_reference=f"REF-{payment.pk}", event_id=event_id, raw={"idOp": payment.pk})


# --- Start -----------------------------------------------------------------------------------


def test_start_creates_the_attempt_with_snapshot_and_intended_allocations(family, regie):
    first, second = issue(family, regie, 900), issue(family, regie, 1500)
    payment = payment_start(actor=family.primary_guardian.user, family=family, invoice_ids=[second.pk, first.pk])
    assert (payment.state, payment.means, payment.amount_cents) == ("created", "online", 2400)
    assert payment.provider == "payfip" and payment.settings_snapshot == {"numcli": "123456"}
    assert list(payment.allocations.order_by("pk").values_list("invoice_id", "amount_cents")) == [
        (first.pk, 900), (second.pk, 1500)]
    # Intended only: nothing is paid yet.
    assert fresh(first).paid_cents == 0 and fresh(first).status == "to_pay"
    assert AuditEvent.objects.filter(action="payment.started", target=f"payment:{payment.pk}").exists()

    payment_attach_reference(payment_id=payment.pk, provider_reference="IDOP-1")
    payment_attach_reference(payment_id=payment.pk, provider_reference="IDOP-1")  # same again: no-op
    with pytest.raises(SettlementError, match="déjà la référence"):
        payment_attach_reference(payment_id=payment.pk, provider_reference="IDOP-2")


def test_amount_is_the_sum_of_balances(family, regie, staff):
    invoice = issue(family, regie, 900)
    payment_record_manual(staff=staff, family=family, regie=regie, means="cheque", amount_cents=500,
                          invoice_ids=[invoice.pk])
    payment = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    assert payment.amount_cents == 400


def test_another_familys_invoice_is_refused_as_unknown(family, regie):
    other = make_family("autre@example.fr", last_name="Autre")
    theirs = issue(other, regie, 900)
    mine = issue(family, regie, 500)
    with pytest.raises(SettlementError, match="Facture introuvable pour ce foyer") as refusal:
        payment_start(actor=None, family=family, invoice_ids=[mine.pk, theirs.pk])
    assert refusal.value.field == "invoice_ids"
    assert not PaymentAttempt.objects.exists()


def test_paid_invoices_credit_notes_and_several_regies_are_refused(family, regie):
    paid = issue(family, regie, 900)
    Invoice.objects.filter(pk=paid.pk).update(status="paid", paid_cents=900)
    with pytest.raises(SettlementError, match="n'est pas à payer"):
        payment_start(actor=None, family=family, invoice_ids=[paid.pk])
    other_regie = Regie.objects.create(code="loisirs", label="Régie loisirs", invoice_prefix="LOI",
                                       payment_plugin="payfip")
    one, two = issue(family, regie, 100), issue(family, other_regie, 100)
    with pytest.raises(SettlementError, match="même régie"):
        payment_start(actor=None, family=family, invoice_ids=[one.pk, two.pk])
    with pytest.raises(SettlementError, match="au moins une facture"):
        payment_start(actor=None, family=family, invoice_ids=[])


def test_regie_without_online_payment_is_refused(family, regie):
    invoice = issue(family, regie, 900)
    Regie.objects.filter(pk=regie.pk).update(payment_plugin="")
    with pytest.raises(SettlementError, match="uniquement auprès de la régie"):
        payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    Regie.objects.filter(pk=regie.pk).update(payment_plugin="tresor_public")
    with pytest.raises(SettlementError, match="transmises au Trésor public"):
        payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    Regie.objects.filter(pk=regie.pk).update(payment_plugin="not_installed")
    with pytest.raises(SettlementError, match="pas disponible"):
        payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    assert not PaymentAttempt.objects.exists()


def test_outside_the_payment_window_says_when_it_opens(family, regie):
    invoice = issue(family, regie, 900)
    Regie.objects.filter(pk=regie.pk).update(online_payment_windows=[
        {"from_day": 1, "to_day": 20, "from_date": None, "to_date": None}])
    with pytest.raises(SettlementError) as refusal:  # the 25th of November
        payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    assert refusal.value.message == ("Paiement en ligne possible du 1 au 20 de chaque mois : "
                                     "à partir du 1er décembre 2026.")

    with time_machine.travel(datetime(2026, 12, 3, 8, 0, tzinfo=PARIS), tick=False):
        window = online_payment_window(fresh(regie))
        assert window.open and window.until == date(2026, 12, 20)
        assert window.message == "Paiement en ligne possible jusqu'au 20 décembre 2026."
        assert payment_start(actor=None, family=family, invoice_ids=[invoice.pk]).state == "created"

    Regie.objects.filter(pk=regie.pk).update(online_payment_windows=[
        {"from_date": "2027-01-04", "to_date": "2027-01-15"}])
    window = online_payment_window(fresh(regie))
    assert not window.open and window.opens_on == date(2027, 1, 4)
    assert window.message == ("Paiement en ligne possible du 4 janvier 2027 au 15 janvier 2027 : "
                              "à partir du 4 janvier 2027.")


def test_paris_day_decides_the_window(regie):
    regie.online_payment_windows = [{"from_day": 1, "to_day": 20}]
    # 20 Nov 23:30 UTC is already the 21st in Paris: closed.
    with time_machine.travel(datetime(2026, 11, 20, 23, 30, tzinfo=ZoneInfo("UTC")), tick=False):
        assert not online_payment_window(regie).open


# --- Provider statuses ---------------------------------------------------------------------


def test_paid_allocates_in_invoice_order_and_marks_invoices_paid(family, regie):
    first, second = issue(family, regie, 900), issue(family, regie, 1500)
    payment = paid_online(family, [first, second], event_id="evt-1")
    assert payment.state == "paid" and payment.settled_at is not None and payment.provider_reference
    assert (fresh(first).status, first.paid_cents) == ("paid", 900)
    assert (fresh(second).status, second.paid_cents) == ("paid", 1500)
    assert sorted(payment.allocations.values_list("amount_cents", flat=True)) == [900, 1500]
    assert credit_balance_cents(family=family, regie=regie) == 0
    notification = ProviderNotification.objects.get(payment=payment)
    assert notification.outcome == "payé"
    assert notification.payload["raw"] == {"idOp": payment.pk}


def test_duplicate_event_has_one_effect(family, regie):
    invoice = issue(family, regie, 900)
    payment = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    for _ in range(2):
        payment_apply_status(payment_id=payment.pk, status="paid", amount_cents=900, event_id="evt-42",
                             provider="payfip", raw={"n": 1})
    assert fresh(invoice).paid_cents == 900
    assert ProviderNotification.objects.filter(event_id="evt-42").count() == 1
    assert AuditEvent.objects.filter(action="payment.paid").count() == 1
    assert Allocation.objects.filter(payment=payment).aggregate(s=Sum("amount_cents"))["s"] == 900


def test_repeated_paid_without_event_id_is_recorded_but_changes_nothing(family, regie):
    invoice = issue(family, regie, 900)
    payment = paid_online(family, [invoice])
    payment_apply_status(payment_id=payment.pk, status="paid", amount_cents=900)
    assert fresh(invoice).paid_cents == 900
    outcomes = list(ProviderNotification.objects.filter(payment=payment).order_by("pk").values_list("outcome", flat=True))
    assert outcomes[0] == "payé" and outcomes[1].startswith("répétition")


def test_out_of_order_a_success_never_becomes_a_failure(family, regie):
    invoice = issue(family, regie, 900)
    payment = paid_online(family, [invoice], event_id="e1")
    payment_apply_status(payment_id=payment.pk, status="pending", event_id="e0")  # late
    assert fresh(payment).state == "paid"
    payment_apply_status(payment_id=payment.pk, status="refused", event_id="e2")
    payment_apply_status(payment_id=payment.pk, status="expired")
    assert fresh(payment).state == "paid" and fresh(invoice).paid_cents == 900
    ignored = ProviderNotification.objects.filter(payment=payment, outcome__startswith="ignoré")
    assert ignored.count() == 3
    assert AuditEvent.objects.filter(action="payment.transition_ignored", target=f"payment:{payment.pk}").count() == 3


def test_backward_and_failure_transitions(family, regie):
    invoice = issue(family, regie, 900)
    payment = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    payment_apply_status(payment_id=payment.pk, status="pending")
    payment_apply_status(payment_id=payment.pk, status="created")
    assert fresh(payment).state == "pending"
    payment_apply_status(payment_id=payment.pk, status="refused")
    payment_apply_status(payment_id=payment.pk, status="pending")
    payment_apply_status(payment_id=payment.pk, status="cancelled")
    assert fresh(payment).state == "refused" and fresh(invoice).paid_cents == 0
    with pytest.raises(SettlementError, match="inconnu"):
        payment_apply_status(payment_id=payment.pk, status="ok")
    with pytest.raises(SettlementError, match="stripe"):
        payment_apply_status(payment_id=payment.pk, status="paid", provider="stripe")


def test_money_arriving_after_expiry_is_still_settled(family, regie, staff):
    invoice = issue(family, regie, 900)
    payment = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    payment_apply_status(payment_id=payment.pk, status="expired")
    # Meanwhile the family paid at the desk; then the bank confirms the online payment after all.
    payment_record_manual(staff=staff, family=family, regie=regie, means="cheque", amount_cents=900,
                          invoice_ids=[invoice.pk])
    payment_apply_status(payment_id=payment.pk, status="paid", amount_cents=900)
    assert fresh(payment).state == "paid"
    assert fresh(invoice).paid_cents == 900  # counted once
    assert not payment.allocations.exists()
    assert credit_balance_cents(family=family, regie=regie) == 900


def test_amount_mismatch_is_flagged_and_invoices_untouched(family, regie, staff):
    invoice = issue(family, regie, 900)
    payment = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    payment_apply_status(payment_id=payment.pk, status="paid", amount_cents=1000, event_id="m1")
    payment = fresh(payment)
    assert payment.state == "pending"
    assert payment.anomaly == ("Montant reçu 10,00 € différent du montant attendu 9,00 € : paiement en attente "
                               "de vérification par la régie.")
    assert (fresh(invoice).paid_cents, invoice.status) == (0, "to_pay")
    assert list(payment.allocations.values_list("amount_cents", flat=True)) == [900]  # still the intent
    payment_apply_status(payment_id=payment.pk, status="paid", amount_cents=1000, event_id="m2")
    assert ProviderNotification.objects.get(event_id="m2").outcome == "anomalie déjà signalée"
    assert AuditEvent.objects.filter(action="payment.anomaly").count() == 1
    # The reconciliation leaves it to the régisseur.
    PaymentAttempt.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(hours=5))
    assert reconcile_pending(fetch_status=lambda p: ("paid", 1000, ""))["checked"] == 0

    # The régisseur accepts what was received: paid, the extra euro on the credit.
    payment = payment_accept_reported_amount(staff=staff, payment_id=payment.pk)
    assert (payment.state, payment.amount_cents) == ("paid", 1000) and "accepté par" in payment.anomaly
    assert fresh(invoice).status == "paid"
    assert credit_balance_cents(family=family, regie=regie) == 100


def test_partial_manual_payment_leaves_the_invoice_partially_paid(family, regie, staff):
    invoice = issue(family, regie, 900)
    payment = payment_record_manual(staff=staff, family=family, regie=regie, means="cheque", amount_cents=500,
                                    invoice_ids=[invoice.pk], reference="Chq 0012345")
    assert (payment.state, payment.reference) == ("paid", "Chq 0012345")
    assert (fresh(invoice).status, invoice.paid_cents, invoice.balance_cents) == ("partially_paid", 500, 400)
    second = payment_record_manual(staff=staff, family=family, regie=regie, means="especes", amount_cents=400,
                                   invoice_ids=[invoice.pk])
    assert (fresh(invoice).status, invoice.balance_cents) == ("paid", 0)
    assert second.settings_snapshot == {"received_on": "2026-11-25"}


def test_overpayment_goes_to_credit_and_pays_the_next_invoice(family, regie, staff):
    september = issue(family, regie, 900)
    cheque = payment_record_manual(staff=staff, family=family, regie=regie, means="cheque", amount_cents=1500,
                                   invoice_ids=[september.pk])
    assert fresh(september).status == "paid"
    assert FamilyCredit.objects.get(family=family, regie=regie).balance_cents == 600

    october = issue(family, regie, 1000)
    with pytest.raises(SettlementError, match="personnel"):
        credit_apply(staff_or_system=family.primary_guardian.user, family=family, regie=regie, invoice_id=october.pk)
    october = credit_apply(staff_or_system=None, family=family, regie=regie, invoice_id=october.pk)
    assert (october.paid_cents, october.status) == (600, "partially_paid")
    assert credit_balance_cents(family=family, regie=regie) == 0
    # Traced: the cheque pays September and part of October.
    assert sorted(cheque.allocations.values_list("invoice_id", "amount_cents")) == sorted(
        [(september.pk, 900), (october.pk, 600)])
    with pytest.raises(SettlementError, match="pas de crédit"):
        credit_apply(staff_or_system=staff, family=family, regie=regie, invoice_id=october.pk)
    # The rest paid online: 400.
    assert payment_start(actor=None, family=family, invoice_ids=[october.pk]).amount_cents == 400


def test_two_online_attempts_for_the_same_invoice_never_pay_it_twice(family, regie):
    invoice = issue(family, regie, 900)
    first = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    second = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])  # another tab
    payment_apply_status(payment_id=first.pk, status="paid", amount_cents=900)
    payment_apply_status(payment_id=second.pk, status="paid", amount_cents=900)
    assert fresh(invoice).paid_cents == 900
    assert credit_balance_cents(family=family, regie=regie) == 900


def test_manual_means_and_cash_limit(family, regie, staff):
    invoice = issue(family, regie, 50_000)
    with pytest.raises(SettlementError) as refusal:
        payment_record_manual(staff=staff, family=family, regie=regie, means="especes", amount_cents=30_001,
                              invoice_ids=[invoice.pk])
    assert refusal.value.message == "Un paiement en espèces ne peut dépasser 300,00 €."
    assert refusal.value.field == "amount_cents"
    assert not PaymentAttempt.objects.exists()
    for means, cents in (("especes", 30_000), ("cesu", 5_000), ("ancv", 5_000), ("virement", 5_000),
                         ("cheque", 4_000)):
        payment_record_manual(staff=staff, family=family, regie=regie, means=means, amount_cents=cents,
                              invoice_ids=[invoice.pk], received_on=date(2026, 11, 20))
    assert fresh(invoice).paid_cents == 49_000 and invoice.status == "partially_paid"
    assert AuditEvent.objects.filter(action="payment.recorded").count() == 5
    with pytest.raises(SettlementError, match="guichet"):
        payment_record_manual(staff=staff, family=family, regie=regie, means="online", amount_cents=100,
                              invoice_ids=[invoice.pk])
    with pytest.raises(SettlementError, match="personnel"):
        payment_record_manual(staff=family.primary_guardian.user, family=family, regie=regie, means="cheque",
                              amount_cents=100, invoice_ids=[invoice.pk])
    with pytest.raises(SettlementError, match="futur"):
        payment_record_manual(staff=staff, family=family, regie=regie, means="cheque", amount_cents=100,
                              invoice_ids=[invoice.pk], received_on=date(2026, 11, 26))
    with pytest.raises(SettlementError, match="positif"):
        payment_record_manual(staff=staff, family=family, regie=regie, means="cheque", amount_cents=0,
                              invoice_ids=[invoice.pk])


# --- Refunds -----------------------------------------------------------------------------------


def test_partial_then_full_refund_reopens_invoices_latest_first(family, regie, staff):
    first, second = issue(family, regie, 900), issue(family, regie, 1500)
    payment = paid_online(family, [first, second])
    payment = payment_refund(staff=staff, payment_id=payment.pk, amount_cents=1000)
    assert (payment.state, payment.refunded_cents) == ("partially_refunded", 1000)
    assert (fresh(second).paid_cents, second.status) == (500, "partially_paid")
    assert fresh(first).status == "paid"
    payment_apply_status(payment_id=payment.pk, status="paid", amount_cents=2400)  # late: nothing
    assert fresh(payment).state == "partially_refunded"

    with pytest.raises(SettlementError, match="au plus 14,00 €"):
        payment_refund(staff=staff, payment_id=payment.pk, amount_cents=1401)
    payment = payment_refund(staff=staff, payment_id=payment.pk, amount_cents=1400)
    assert (payment.state, payment.refunded_cents) == ("refunded", 2400)
    assert (fresh(first).status, first.paid_cents) == ("to_pay", 0)
    assert (fresh(second).status, second.paid_cents) == ("to_pay", 0)
    assert not payment.allocations.exists()
    with pytest.raises(SettlementError, match="validé"):
        payment_refund(staff=staff, payment_id=payment.pk, amount_cents=1)
    assert AuditEvent.objects.filter(action="payment.refunded").count() == 2


def test_refund_takes_back_the_overpayment_from_the_credit_first(family, regie, staff):
    invoice = issue(family, regie, 900)
    cheque = payment_record_manual(staff=staff, family=family, regie=regie, means="cheque", amount_cents=1500,
                                   invoice_ids=[invoice.pk])
    payment_refund(staff=staff, payment_id=cheque.pk, amount_cents=600)
    assert credit_balance_cents(family=family, regie=regie) == 0
    assert fresh(invoice).status == "paid"
    assert fresh(cheque).state == "partially_refunded"


def test_refund_through_the_provider_needs_the_plugin(family, regie, staff):
    invoice = issue(family, regie, 900)
    payment = paid_online(family, [invoice])
    with pytest.raises(SettlementError, match="remboursement externe"):
        payment_refund(staff=staff, payment_id=payment.pk, amount_cents=900, external=False)
    calls = []

    def provider_refund(attempt, cents):
        calls.append((attempt.pk, cents))
        return "RFD-1"

    payment_refund(staff=staff, payment_id=payment.pk, amount_cents=900, external=False,
                   provider_refund=provider_refund)
    assert calls == [(payment.pk, 900)]
    event = AuditEvent.objects.get(action="payment.refunded")
    assert event.details["provider_reference"] == "RFD-1" and event.details["external"] is False


# --- Reconciliation ----------------------------------------------------------------------------


def _aged(payment, **delta):
    PaymentAttempt.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(**delta))
    return payment


def test_reconciliation_settles_a_stale_pending_attempt(family, regie):
    invoice = issue(family, regie, 900)
    stale = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    payment_apply_status(payment_id=stale.pk, status="pending")
    _aged(stale, minutes=30)
    recent = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    asked = []

    def fetch_status(payment):
        asked.append(payment.pk)
        return "paid", 900, "IDOP-77"

    report = reconcile_pending(fetch_status=fetch_status)
    assert asked == [stale.pk]
    assert report["checked"] == 1 and report["paid"] == 1
    assert fresh(stale).state == "paid" and stale.provider_reference == "IDOP-77"
    assert fresh(recent).state == "created" and fresh(invoice).status == "paid"
    notification = ProviderNotification.objects.get(payment=stale, payload__raw__source="reconciliation")
    assert notification.outcome == "payé"


def test_reconciliation_without_provider_expires_only_old_created_attempts(family, regie):
    invoice = issue(family, regie, 900)
    old = _aged(payment_start(actor=None, family=family, invoice_ids=[invoice.pk]), hours=3)
    young = _aged(payment_start(actor=None, family=family, invoice_ids=[invoice.pk]), minutes=30)
    waiting = payment_start(actor=None, family=family, invoice_ids=[invoice.pk])
    payment_apply_status(payment_id=waiting.pk, status="pending")
    _aged(waiting, hours=3)
    report = reconcile_pending()
    assert report["checked"] == 1 and report["expired"] == 1
    assert [fresh(p).state for p in (old, young, waiting)] == ["expired", "created", "pending"]


def test_reconciliation_goes_on_when_the_provider_fails_for_one(family, regie):
    invoice = issue(family, regie, 900)
    broken = _aged(payment_start(actor=None, family=family, invoice_ids=[invoice.pk]), hours=1)
    fine = _aged(payment_start(actor=None, family=family, invoice_ids=[invoice.pk]), minutes=50)

    def fetch_status(payment):
        if payment.pk == broken.pk:
            raise ConnectionError("PayFiP ne répond pas")
        return "cancelled", None, ""

    report = reconcile_pending(fetch_status=fetch_status)
    assert report["errors"] == 1 and report["cancelled"] == 1
    assert fresh(broken).state == "created" and fresh(fine).state == "cancelled"


def test_fan_out_runs_one_reconciliation_per_commune_in_its_schema(alpha, family, regie):
    invoice = issue(family, regie, 900)
    old = _aged(payment_start(actor=None, family=family, invoice_ids=[invoice.pk]), hours=3)
    connection.set_schema_to_public()
    enqueued = reconcile_all_communes()  # eager in tests: each runs at once, in its commune
    assert {"alpha", "beta"} <= set(enqueued) and "public" not in enqueued
    connection.set_tenant(alpha)
    assert fresh(old).state == "expired"
