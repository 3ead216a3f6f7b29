"""The booking submission's hand-written statements, as PostgreSQL plans them.

A booking's statements are tiny (one child, a few days), but PostgreSQL only knows what
its estimates tell it: a set-returning function counts for 100 rows, and a statement
joining three of them was estimated at 10¹⁰ rows. Above ``jit_above_cost`` PostgreSQL
compiles the statement to machine code at every execution: 300 ms of server CPU for a
booking that takes one (scripts/bench_booking.py measured 5 bookings/s instead of 330).
"""

from datetime import date, timedelta

import pytest
from django.db import connection
from marelle.api.authentication import FamilyTokenAuthentication
from marelle.booking import statements
from marelle.booking.models import Booking
from marelle.booking.services import Change, ReservationRejected, reservation_submit
from marelle.catalog.models import Establishment
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.booking.test_services import NEXT_WEEK, book
from tests.factories import accept_document, enrol, make_family

# Below PostgreSQL's default jit_above_cost (100 000) by far: a booking statement that
# costs this much is an estimate gone wrong, whatever the server's JIT settings.
COST_CEILING = 1000


class CapturedStatements:
    """The (sql, params) of every statement that reads or writes rows, run while active."""

    def __init__(self):
        self.seen = []

    def __call__(self, execute, sql, params, many, context):
        if not many and sql.lstrip().startswith(("SELECT", "WITH", "INSERT", "UPDATE")):
            self.seen.append((sql, params))
        return execute(sql, params, many, context)


def estimated_cost(sql, params) -> tuple[float, str]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    plan = plan[0]  # EXPLAIN (FORMAT JSON) answers a list of one plan
    return plan["Plan"]["Total Cost"], str(plan)


def test_every_statement_of_a_submission_is_estimated_as_small_as_it_is(in_alpha, clock):
    family = make_family("claire@example.fr", children=("Léa", "Tom"))
    lea, tom = family.children.order_by("first_name")
    for child in (lea, tom):
        accept_document(child)
    Establishment.objects.filter(code="ecole").update(capacity=1)
    first, second = enrol(lea, "cantine"), enrol(tom, "cantine")
    token = Token.objects.create(user=family.guardians.get().user)

    capture = CapturedStatements()
    with connection.execute_wrapper(capture):
        FamilyTokenAuthentication().authenticate_credentials(token.key)
        statements.enrolment_of_family(family, first.pk)
        book(first, NEXT_WEEK, idempotency_key="semaine")          # the writing statement
        with pytest.raises(ReservationRejected):                   # full: the obstacles read
            book(second, NEXT_WEEK[:2], idempotency_key="pleine")
        with pytest.raises(ReservationRejected):                   # a closed day: the read, with cancellations
            reservation_submit(actor=None, enrolment=first, changes=[
                Change(date(2026, 9, 16), "repas"), Change(NEXT_WEEK[0], "repas", "cancel")])
        statements.take_seats(first.establishment_id, [(first.service.units.get(code="repas"), date(2026, 9, 21))])
        # Through the API: the token and the enrolment in one statement.
        client = APIClient(HTTP_HOST="alpha.marelle.test", HTTP_AUTHORIZATION=f"Token {token.key}")
        response = client.post(f"/api/v1/inscriptions/{first.pk}/reservations/", format="json",
                               data={"lignes": [{"jour": "2026-09-22", "unite": "repas", "action": "reserver"}]})
        assert response.status_code == 201, response.content

    texts = [sql for sql, _ in capture.seen]
    assert any("booking_occupancy" in sql and "audit_auditevent" in sql for sql in texts)  # insert_reservation
    assert any("'full'" in sql for sql in texts)                                           # obstacles
    assert any("'cancellable'" in sql for sql in texts)
    assert any("authtoken_token" in sql and "LATERAL" not in sql for sql in texts)
    assert any("authtoken_token" in sql and "LATERAL" in sql for sql in texts)     # token + enrolment
    assert Booking.objects.filter(child=lea).count() == len(NEXT_WEEK) + 1
    for sql, params in capture.seen:
        cost, plan = estimated_cost(sql, params)
        assert cost < COST_CEILING, f"estimated cost {cost} for {sql[:160]}…: {plan[:400]}"
        assert "JIT" not in plan


def test_prepared_statements_use_their_generic_plan_from_the_first_execution(in_alpha, clock):
    # Each commune has its own statements (tables named with the schema): left to choose,
    # PostgreSQL would plan each one five times per connection before keeping a plan.
    family = make_family("claire@example.fr")
    child = family.children.get()
    accept_document(child)
    enrolment = enrol(child, "cantine")
    statements.enrolment_of_family(family, enrolment.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                       "WHERE statement LIKE %s", ['%"alpha"."booking_enrolment"%'])
        plans = cursor.fetchall()
    assert plans == [(1, 0)]


def test_a_cancellation_of_six_days_sends_as_many_statements_as_one_of_two_days(in_alpha, clock):
    family = make_family("claire@example.fr")
    child = family.children.get()
    accept_document(child)
    enrolment = enrol(child, "cantine")
    days = NEXT_WEEK + [day + timedelta(days=7) for day in NEXT_WEEK]
    book(enrolment, days)
    sent = []
    for cancelled in (days[:2], days[2:]):
        capture = CapturedStatements()
        with connection.execute_wrapper(capture):
            book(enrolment, cancelled, action="cancel")
        sent.append(capture.seen)
    assert len(sent[0]) == len(sent[1])
    assert any("UPDATE" in sql and "booking_occupancy" in sql for sql, _ in sent[1])  # the places given back
    assert Booking.objects.filter(action="book", state="cancelled").count() == len(days)
    for sql, params in sent[0] + sent[1]:
        cost, plan = estimated_cost(sql, params)
        assert cost < COST_CEILING, f"estimated cost {cost} for {sql[:160]}…: {plan[:400]}"
        assert "JIT" not in plan
