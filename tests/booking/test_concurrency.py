"""Real parallel connections racing for the same places (no mocks, no shared transaction)."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, connections
from marelle.booking.models import Booking, Enrolment, Occupancy, Reservation
from marelle.booking.services import Change, ReservationRejected, reservation_submit
from marelle.catalog.models import Establishment

from tests.factories import accept_document, enrol, make_family
from tests.support import create_committed_commune, drop_committed_commune, in_own_connection

MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))
DAY = date(2026, 9, 14)
PARENTS = 20
PLACES = 5


@pytest.fixture
def race(db):
    with time_machine.travel(MONDAY, tick=False):
        commune = create_committed_commune("course")

        def populate():
            connection.set_tenant(commune)
            Establishment.objects.filter(code="ecole").update(capacity=PLACES)
            ids = []
            for index in range(PARENTS):
                child = make_family(f"parent{index}@example.fr", children=(f"Enfant{index}",)).children.get()
                accept_document(child)
                ids.append(enrol(child, "cantine").pk)
            return ids

        enrolment_ids = in_own_connection(populate)
        try:
            yield commune, enrolment_ids
        finally:
            drop_committed_commune(commune)


def run_in_parallel(commune, function, arguments):
    """Each call in its own thread and connection, all released at the same instant."""
    barrier = threading.Barrier(len(arguments))

    def attempt(argument):
        try:
            connection.set_tenant(commune)
            prepared = function.prepare(argument)
            barrier.wait(timeout=30)
            return function(prepared)
        finally:
            connections.close_all()

    with time_machine.travel(MONDAY, tick=False), ThreadPoolExecutor(len(arguments)) as pool:
        return list(pool.map(attempt, arguments))


class BookLastPlaces:
    @staticmethod
    def prepare(enrolment_id):
        return Enrolment.objects.select_related("child__family", "service", "period", "establishment").get(
            pk=enrolment_id)

    def __call__(self, enrolment):
        try:
            reservation_submit(actor=None, enrolment=enrolment, changes=[Change(DAY, "repas")])
            return "booked"
        except ReservationRejected as rejected:
            return str(rejected)


def test_twenty_parents_five_places_exactly_five_succeed(race):
    commune, enrolment_ids = race
    results = run_in_parallel(commune, BookLastPlaces(), enrolment_ids)
    assert results.count("booked") == PLACES
    refusals = [r for r in results if r != "booked"]
    assert len(refusals) == PARENTS - PLACES
    assert all("complet, plus de place" in r for r in refusals)

    def check():
        connection.set_tenant(commune)
        occupancy = Occupancy.objects.get(day=DAY)
        assert occupancy.taken == PLACES <= occupancy.capacity
        assert Booking.objects.filter(day=DAY, state="accepted").count() == PLACES
        # Refused submissions left nothing behind, and numbers have no gaps.
        numbers = sorted(Reservation.objects.values_list("number", flat=True))
        assert numbers == [f"R2026-{n:06d}" for n in range(1, PLACES + 1)]

    in_own_connection(check)


class SameKeyTwice:
    def __init__(self, enrolment_id):
        self.enrolment_id = enrolment_id

    def prepare(self, _):
        return Enrolment.objects.select_related("child__family", "service", "period", "establishment").get(
            pk=self.enrolment_id)

    def __call__(self, enrolment):
        return reservation_submit(actor=None, enrolment=enrolment, idempotency_key="retry-1",
                                  changes=[Change(DAY, "repas"), Change(date(2026, 9, 15), "repas")]).number


def test_a_retried_submission_racing_itself_books_once(race):
    commune, enrolment_ids = race
    numbers = run_in_parallel(commune, SameKeyTwice(enrolment_ids[0]), list(range(6)))
    assert len(set(numbers)) == 1

    def check():
        connection.set_tenant(commune)
        assert Reservation.objects.count() == 1
        assert Booking.objects.filter(state="accepted").count() == 2

    in_own_connection(check)


def test_a_refused_booking_writes_nothing_and_rolls_nothing_back(race):
    # Outside a transaction, a réservation of bookings is one statement: refused by the
    # capacity CHECK, it leaves nothing to roll back, and the connection keeps its prepared
    # statements (psycopg deallocates them all on ROLLBACK).
    commune, enrolment_ids = race

    def prepared_statements():
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            return cursor.fetchone()[0]

    def scenario():
        connection.set_tenant(commune)
        Establishment.objects.filter(code="ecole").update(capacity=1)
        first, second = (BookLastPlaces.prepare(pk) for pk in enrolment_ids[:2])
        with time_machine.travel(MONDAY, tick=False):
            reservation_submit(actor=None, enrolment=first, changes=[Change(DAY, "repas")])
            before = prepared_statements()
            with pytest.raises(ReservationRejected, match="complet, plus de place"):
                reservation_submit(actor=None, enrolment=second,
                                   changes=[Change(date(2026, 9, 15), "repas"), Change(DAY, "repas")])
            after = prepared_statements()
        return before, after, {o.day: o.taken for o in Occupancy.objects.all()}, Reservation.objects.count()

    before, after, taken, reservations = in_own_connection(scenario)
    assert before >= 1 and after > before
    assert taken == {DAY: 1} and reservations == 1
