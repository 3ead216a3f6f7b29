"""Settlement under real concurrency: parallel PostgreSQL connections on a committed commune.

Each thread has its own connection (autocommit), waits at a barrier, then calls the
settlement core at the same moment as the others: only the row locks keep the books right.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.db.models import Sum
from django.utils import timezone
from marelle.billing.models import (
    Allocation,
    FamilyCredit,
    Invoice,
    PaymentAttempt,
    ProviderNotification,
)
from marelle.billing.reconciliation import reconcile_pending
from marelle.billing.settlement import payment_apply_status, payment_record_manual, payment_start
from marelle.catalog.models import Regie

from tests.factories import make_family, make_staff
from tests.support import create_committed_commune, drop_committed_commune, in_own_connection


@pytest.fixture(scope="module")
def commune(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        commune = create_committed_commune("reglements")
        try:
            yield commune
        finally:
            drop_committed_commune(commune)


_counter = iter(range(1, 100_000))


@pytest.fixture
def books(db, commune):
    """Committed: a family with two invoices (9 € and 15 €) and an online attempt for both."""

    def create():
        connection.set_tenant(commune)
        n = next(_counter)
        regie = Regie.objects.get(code="scolaire")
        family = make_family(f"course{n}@example.fr", last_name=f"Course{n}")
        invoices = [Invoice.objects.create(regie=regie, family=family, label="Cantine", status="to_pay",
                                           number=f"SCO-2026-{n:04d}{k}", total_cents=total, issued_at=timezone.now())
                    for k, total in enumerate((900, 1500))]
        payment = payment_start(actor=None, family=family, invoice_ids=[i.pk for i in invoices])
        staff = make_staff(f"regie{n}@example.fr", role="regisseur")
        return {"n": n, "family": family.pk, "regie": regie.pk, "invoices": [i.pk for i in invoices],
                "payment": payment.pk, "staff": staff.pk}

    return in_own_connection(create)


def race(commune, *calls):
    """Run the callables at the same moment, each on its own connection; re-raise errors."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        try:
            connection.set_tenant(commune)
            barrier.wait(timeout=30)
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(run, call) for call in calls]]


def committed(commune, function):
    def read():
        connection.set_tenant(commune)
        return function()

    return in_own_connection(read)


def ledger(books):
    """What the database says about the family's money, read from a fresh connection."""
    invoices = {i.pk: i for i in Invoice.objects.filter(pk__in=books["invoices"])}
    payment = PaymentAttempt.objects.get(pk=books["payment"])
    credit = FamilyCredit.objects.filter(family_id=books["family"]).values_list("balance_cents", flat=True).first()
    received = PaymentAttempt.objects.filter(family_id=books["family"], state="paid").aggregate(
        s=Sum("amount_cents"))["s"] or 0
    allocated = Allocation.objects.filter(payment__family_id=books["family"], payment__state="paid").aggregate(
        s=Sum("amount_cents"))["s"] or 0
    return {
        "state": payment.state,
        "paid_cents": [invoices[pk].paid_cents for pk in books["invoices"]],
        "statuses": [invoices[pk].status for pk in books["invoices"]],
        "credit": credit or 0,
        "received": received,
        "allocated": allocated,
        "outcomes": sorted(ProviderNotification.objects.filter(payment=payment).values_list("outcome", flat=True)),
        "events": sorted(ProviderNotification.objects.filter(payment=payment).values_list("event_id", flat=True)),
    }


def test_concurrent_confirmations_of_one_attempt_settle_it_once(commune, books):
    def confirm(event_id):
        event_id = event_id and f"{event_id}-{books['n']}"
        return lambda: payment_apply_status(payment_id=books["payment"], status="paid", amount_cents=2400,
                                            provider_reference=f"IDOP-{books['n']}", event_id=event_id,
                                            provider="payfip", raw={"event": event_id})

    # The webhook delivered twice, the browser return (no event id) and a second event.
    results = race(commune, confirm("evt-1"), confirm("evt-1"), confirm(""), confirm("evt-2"))
    assert {r.state for r in results} == {"paid"}

    books_now = committed(commune, lambda: ledger(books))
    assert books_now["state"] == "paid"
    assert books_now["paid_cents"] == [900, 1500] and books_now["statuses"] == ["paid", "paid"]
    assert books_now["credit"] == 0 and books_now["allocated"] == books_now["received"] == 2400
    # One record per distinct event (the duplicate evt-1 left none), exactly one settled it.
    assert books_now["events"] == ["", f"evt-1-{books['n']}", f"evt-2-{books['n']}"]
    assert books_now["outcomes"].count("payé") == 1
    assert sum(o.startswith("répétition") for o in books_now["outcomes"]) == 2


@pytest.mark.parametrize("reconciliation_says", ["paid", "cancelled"])
def test_notification_racing_the_reconciliation(commune, books, reconciliation_says):
    def age():
        connection.set_tenant(commune)
        payment_apply_status(payment_id=books["payment"], status="pending")
        PaymentAttempt.objects.filter(pk=books["payment"]).update(created_at=timezone.now() - timedelta(minutes=45))

    in_own_connection(age)
    reference = f"IDOP-{books['n']}"

    def notification():
        return payment_apply_status(payment_id=books["payment"], status="paid", amount_cents=2400,
                                    provider_reference=reference, event_id=f"evt-{reference}", provider="payfip")

    def reconciliation():
        # A provider answer that may be stale ("cancelled" read before the bank validated).
        return reconcile_pending(fetch_status=lambda p: (reconciliation_says, 2400, reference))

    race(commune, notification, reconciliation)

    books_now = committed(commune, lambda: ledger(books))
    # Whatever the order: paid once, never turned into a failure, counted once.
    assert books_now["state"] == "paid"
    assert books_now["paid_cents"] == [900, 1500]
    assert books_now["credit"] == 0 and books_now["allocated"] == 2400
    assert sum(o.startswith("payé") for o in books_now["outcomes"]) == 1


def test_desk_payment_racing_the_online_confirmation_never_overpays_an_invoice(commune, books):
    def online():
        return payment_apply_status(payment_id=books["payment"], status="paid", amount_cents=2400,
                                    event_id=f"evt-o-{books['n']}")

    def desk():
        from marelle.accounts.models import User
        from marelle.families.models import Family

        return payment_record_manual(staff=User.objects.get(pk=books["staff"]),
                                     family=Family.objects.get(pk=books["family"]),
                                     regie=Regie.objects.get(pk=books["regie"]), means="cheque", amount_cents=900,
                                     invoice_ids=[books["invoices"][0]], reference="Chq 42")

    race(commune, online, desk)

    books_now = committed(commune, lambda: ledger(books))
    assert books_now["paid_cents"] == [900, 1500]
    # 33 € received for 24 € owed: the 9 € paid twice are on the family's credit.
    assert books_now["received"] == 3300 and books_now["credit"] == 900
    assert books_now["allocated"] + books_now["credit"] == books_now["received"]
