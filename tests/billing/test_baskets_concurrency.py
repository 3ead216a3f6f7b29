"""Immediate payment under real concurrency: the bank confirms a basket's payment at the very
moment the expiry task releases it (parallel PostgreSQL connections on a committed commune).

Whichever takes the basket's row lock first wins, and the books agree with it: either the
basket is paid (invoice issued and settled, bookings kept) or it expired (bookings released,
the money kept as the family's credit); never both, never neither.
"""

import time
from datetime import date, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from marelle.billing.baskets import basket_checkout, expire_unpaid_baskets_now
from marelle.billing.models import Basket, FamilyCredit, Invoice, PaymentAttempt
from marelle.billing.settlement import payment_apply_status, payment_attach_reference
from marelle.booking.models import Booking, Enrolment, Occupancy
from marelle.booking.services import Change, plan_changes, reservation_submit

from tests.billing.test_settlement_concurrency import committed, race
from tests.factories import accept_document, enrol, make_family
from tests.support import (
    ALPHA_YAML,
    create_committed_commune,
    drop_committed_commune,
    in_own_connection,
)

PREPAID_YAML = ALPHA_YAML.replace(
    "      booking_deadline: S-1 jeudi 12:00\n",
    "      booking_deadline: S-1 jeudi 12:00\n      prepayment: {basket_expiry_minutes: 30}\n")


@pytest.fixture(scope="module")
def commune(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        commune = create_committed_commune("paniers", PREPAID_YAML)
        try:
            yield commune
        finally:
            drop_committed_commune(commune)


_counter = iter(range(1, 100_000))


def _basket_past_its_expiry(commune) -> dict:
    """Committed: a family with a prepaid meal in a basket, its payment refused by the bank
    (so the expiry may release it), and the basket's 30 minutes over."""

    def create():
        connection.set_tenant(commune)
        n = next(_counter)
        family = make_family(f"course{n}@example.fr", last_name=f"Course{n}")
        child = family.children.get()
        accept_document(child)
        enrolment = enrol(child, "cantine")
        Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.NOT_REQUIRED)
        days = [date.today() + timedelta(days=d) for d in range(21, 60)]
        planned, _ = plan_changes(enrolment=enrolment, changes=[Change(d, "repas") for d in days])
        reservation_submit(actor=None, enrolment=enrolment, changes=[planned[0].change])
        basket = Basket.objects.get(family=family)
        payment = basket_checkout(actor=None, family=family, basket_ids=[basket.pk])
        payment_attach_reference(payment_id=payment.pk, provider_reference=f"OP-{n}")
        payment_apply_status(payment_id=payment.pk, status="refused", provider_reference=f"OP-{n}")
        Basket.objects.filter(pk=basket.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        return {"n": n, "family": family.pk, "basket": basket.pk, "payment": payment.pk,
                "amount": payment.amount_cents, "day": planned[0].change.day}

    return in_own_connection(create)


def _later(seconds, call):
    def run():
        time.sleep(seconds)
        return call()
    return run


# Started together the expiry usually wins (the payment has more to do before it reaches the
# basket's lock); a head start for the payment shows the other outcome.
@pytest.mark.parametrize("expiry_delay", [0, 0, 0.02, 0.3])
def test_payment_and_expiry_at_the_same_moment_agree(db, commune, expiry_delay):
    books = _basket_past_its_expiry(commune)
    race(commune,
         lambda: payment_apply_status(payment_id=books["payment"], status="paid", amount_cents=books["amount"],
                                      provider_reference=f"OP-{books['n']}"),
         _later(expiry_delay, expire_unpaid_baskets_now))

    def outcome():
        basket = Basket.objects.select_related("invoice").get(pk=books["basket"])
        booking = Booking.objects.get(child__family_id=books["family"], action="book")
        credit = FamilyCredit.objects.filter(family_id=books["family"]).values_list("balance_cents", flat=True).first()
        # The day's places equal its live bookings (earlier races may have booked it too).
        taken = (Occupancy.objects.get(day=books["day"]).taken,
                 Booking.objects.filter(day=books["day"], action="book", state__in=Booking.SEAT_STATES).count())
        numbers = sorted(Invoice.objects.exclude(number="").values_list("number", flat=True))
        return {"numbers": numbers, "basket": basket.state, "invoice": (basket.invoice.status, bool(basket.invoice.number),
                                                    basket.invoice.paid_cents),
                "booking": booking.state, "credit": credit or 0, "taken": taken,
                "payment": PaymentAttempt.objects.get(pk=books["payment"]).state}

    seen = committed(commune, outcome)
    assert seen["payment"] == "paid"  # the bank's money is never ignored
    if seen["basket"] == "paid":
        assert seen["invoice"] == ("paid", True, books["amount"])
        assert (seen["booking"], seen["credit"]) == ("accepted", 0)
    else:
        assert seen["basket"] == "expired"
        assert seen["invoice"] == ("draft", False, 0)
        assert (seen["booking"], seen["credit"]) == ("cancelled", books["amount"])
    assert seen["taken"][0] == seen["taken"][1]
    # Only paid baskets took a number: the régie's numbering has no gap.
    assert seen["numbers"] == [f"SCO-{date.today().year}-{k:06d}" for k in range(1, len(seen["numbers"]) + 1)]

