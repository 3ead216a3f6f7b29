"""Real parallel connections racing for the same places (no mocks, no shared transaction)."""

import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from zoneinfo import ZoneInfo

import psycopg
import pytest
import time_machine
from django.db import connection, connections
from marelle.booking.models import Booking, Enrolment, Occupancy, Reservation
from marelle.booking.services import Change, ReservationRejected, reservation_submit
from marelle.catalog.models import Establishment
from prometheus_client import REGISTRY

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


class BookAndCancelTheSameDay:
    """One family's devices booking and cancelling the same day over and over."""

    rounds = 12

    def __init__(self, enrolment_id):
        self.enrolment_id = enrolment_id

    def prepare(self, _):
        return BookLastPlaces.prepare(self.enrolment_id)

    def __call__(self, enrolment):
        outcomes = collections.Counter()
        for _ in range(self.rounds):
            for action in ("book", "cancel"):
                try:
                    reservation_submit(actor=None, enrolment=enrolment, changes=[Change(DAY, "repas", action)])
                    outcomes[action] += 1
                except ReservationRejected:
                    outcomes["refused"] += 1
        return outcomes


def test_booking_and_cancelling_one_day_from_several_connections_queues_without_deadlock(race):
    # A cancellation holds the booking's row and needs the place; a booking of the same day
    # holds the place and waits on the booking's unique index: taken in one order (the
    # child's row first), they queue instead of deadlocking.
    commune, enrolment_ids = race
    retries = REGISTRY.get_sample_value("marelle_booking_write_retries_total",
                                        {"tenant": commune.schema_name, "reason": "deadlock"}) or 0
    results = run_in_parallel(commune, BookAndCancelTheSameDay(enrolment_ids[0]), list(range(4)))
    total = sum(results, collections.Counter())
    assert total["book"] + total["cancel"] + total["refused"] == 4 * 2 * BookAndCancelTheSameDay.rounds
    assert total["book"] >= 1 and total["cancel"] >= 1
    assert (REGISTRY.get_sample_value("marelle_booking_write_retries_total",
                                      {"tenant": commune.schema_name, "reason": "deadlock"}) or 0) == retries

    def check():
        connection.set_tenant(commune)
        live = Booking.objects.filter(day=DAY, action="book", state__in=Booking.SEAT_STATES).count()
        assert live <= 1
        assert Occupancy.objects.get(day=DAY).taken == live

    in_own_connection(check)


def raw_connection():
    """A plain psycopg connection to the test database, outside Django."""
    settings = connection.settings_dict
    return psycopg.connect(dbname=settings["NAME"], host=settings["HOST"] or "127.0.0.1",
                           port=settings["PORT"] or 5432, user=settings["USER"] or "postgres",
                           password=settings["PASSWORD"] or None)


def waiting_on_a_lock(monitor, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if monitor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'").fetchone()[0]:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("action", ["book", "cancel"])
def test_a_change_waits_for_the_childs_row_before_touching_places_or_bookings(race, action):
    # The lock order of booking.services, checked where it matters: while another change of
    # the same child holds the child's row, a submission has locked neither the place nor
    # the booking it is about to change (so two changes of one child cannot deadlock).
    commune, enrolment_ids = race
    schema = commune.schema_name

    def setup():
        connection.set_tenant(commune)
        with time_machine.travel(MONDAY, tick=False):
            for pk in enrolment_ids[:2]:  # the place's row exists, and the child holds the day
                reservation_submit(actor=None, enrolment=BookLastPlaces.prepare(pk), changes=[Change(DAY, "repas")])
        if action == "book":
            reservation_submit(actor=None, enrolment=BookLastPlaces.prepare(enrolment_ids[0]),
                               changes=[Change(DAY, "repas", "cancel")])
        enrolment = BookLastPlaces.prepare(enrolment_ids[0])
        booking = Booking.objects.filter(child=enrolment.child, day=DAY, action="book").latest("pk")
        return enrolment.child_id, Occupancy.objects.get(day=DAY).pk, booking.pk

    child_id, occupancy_id, booking_id = in_own_connection(setup)
    with raw_connection() as holder, raw_connection() as monitor:
        monitor.autocommit = True
        holder.execute(f'SELECT 1 FROM "{schema}".families_child WHERE id = %s FOR NO KEY UPDATE', [child_id])
        outcome = {}

        def submit():
            connection.set_tenant(commune)
            with time_machine.travel(MONDAY, tick=False):
                reservation = reservation_submit(actor=None, enrolment=BookLastPlaces.prepare(enrolment_ids[0]),
                                                 changes=[Change(DAY, "repas", action)])
            outcome["state"] = reservation.lines.get().state

        thread = threading.Thread(target=lambda: in_own_connection(submit))
        thread.start()
        try:
            assert waiting_on_a_lock(monitor)
            monitor.execute(f'SELECT 1 FROM "{schema}".booking_occupancy WHERE id = %s FOR UPDATE NOWAIT',
                            [occupancy_id])
            monitor.execute(f'SELECT 1 FROM "{schema}".booking_booking WHERE id = %s FOR UPDATE NOWAIT',
                            [booking_id])
        finally:
            holder.rollback()
            thread.join(timeout=30)
    assert outcome["state"] == ("accepted" if action == "book" else "cancelled")
