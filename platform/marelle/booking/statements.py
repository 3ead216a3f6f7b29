"""The booking submission's SQL: a fixed number of statements, whatever the réservation.

Written by hand because a submission through the ORM was 14 statements and about 25 ms of
CPU, most of it building and compiling queries (and PostgreSQL parsing and planning them),
against 1.5 ms for a bare tenant-routed read (scripts/bench_booking.py,
scripts/measure_request_cost.py). What a submission of bookings sends, all prepared
(marelle.core.sql):

1. the enrolment with its child, service, period, establishment and bookable units
   (:func:`enrolment_of_family`), before any rule is evaluated;
2. one statement that takes every place, numbers the réservation and writes it, its lines
   and its audit event (:func:`insert_reservation`): atomic by itself, so no BEGIN, no
   COMMIT, nothing to roll back when it fails;
3. only when it failed, one read saying why (:func:`obstacles`).

The rules themselves are not here (marelle.booking.rules, pure), nor which line gets which
state (marelle.booking.services). Correctness rests on the database: a place exists only
while ``taken <= capacity`` (a CHECK), a child has at most one live line per unit and day
(partial unique index), an Idempotency-Key is used once per account (unique index), and
numbers come from a counter row locked until commit (no gap).
"""

from __future__ import annotations

from datetime import date

from marelle.audit.models import AuditEvent
from marelle.booking.models import Booking, Enrolment, Occupancy, Reservation, ReservationCounter
from marelle.catalog.models import Establishment, Period, Service, Unit
from marelle.core.sql import Columns, Insert, prepared_cursor, table
from marelle.families.models import Child

_ENROLMENT = Columns(Enrolment, "e")
_CHILD = Columns(Child, "c")
# Not the service's long texts (description, rules: the rules are read from the YAML).
_SERVICE = Columns(Service, "s", fields=("id", "archived_at", "code", "kind", "label", "regie", "min_age_months",
                                         "max_age_months", "position"))
_PERIOD = Columns(Period, "p")
_ESTABLISHMENT = Columns(Establishment, "est")
_UNIT = Columns(Unit, "u")

_RESERVATION = Insert(Reservation, skip=("id", "number"))
_LINES = Insert(Booking, skip=("id", "reservation"))
_AUDIT = Insert(AuditEvent)


def enrolment_of_family(family, enrolment_id: int) -> Enrolment | None:
    """The enrolment, only if its child belongs to ``family`` and is not archived, with
    ``child`` (its ``family`` set to ``family``), ``service`` (and ``service.active_units``
    in display order), ``period`` and ``establishment`` loaded: one statement."""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT {_ENROLMENT.sql}, {_CHILD.sql}, {_SERVICE.sql}, {_PERIOD.sql}, {_ESTABLISHMENT.sql}, {_UNIT.sql} "
            f"FROM {table(Enrolment)} e "
            f"JOIN {table(Child)} c ON c.id = e.child_id "
            f"JOIN {table(Service)} s ON s.id = e.service_id "
            f"JOIN {table(Period)} p ON p.id = e.period_id "
            f"JOIN {table(Establishment)} est ON est.id = e.establishment_id "
            f"LEFT JOIN {table(Unit)} u ON u.service_id = e.service_id AND u.archived_at IS NULL "
            f"WHERE e.id = %s AND c.family_id = %s AND c.status <> %s "
            f"ORDER BY u.position, u.code",
            [enrolment_id, family.pk, Child.Status.ARCHIVED])
        rows = cursor.fetchall()
    if not rows:
        return None
    enrolment, offset = _ENROLMENT.build(rows[0])
    child, offset = _CHILD.build(rows[0], offset)
    service, offset = _SERVICE.build(rows[0], offset)
    period, offset = _PERIOD.build(rows[0], offset)
    establishment, offset = _ESTABLISHMENT.build(rows[0], offset)
    units = [unit for unit in (_UNIT.build(row, offset)[0] for row in rows) if unit is not None]
    for unit in units:
        unit.service = service
    child.family = family
    service.active_units = units
    enrolment.child, enrolment.service, enrolment.period, enrolment.establishment = child, service, period, establishment
    return enrolment


def insert_reservation(reservation: Reservation, lines: list[Booking], *, seated: list[Booking], year: int,
                       audit: AuditEvent) -> None:
    """One statement: a place for each line of ``seated``, then the réservation's number
    (``R<year>-000001``…), the réservation, its ``lines`` and the ``audit`` event (its
    target completed with the number). The instances get their primary keys and number.

    The places are taken without looking: a day that is full makes the CHECK ``taken <=
    capacity`` fail, and with it the whole statement, so nothing is written (IntegrityError
    naming CAPACITY_CONSTRAINT; :func:`obstacles` then tells which days). Outside a
    transaction the statement is its own: no BEGIN, no COMMIT, nothing to roll back.
    Places are taken in (day, unit) order, and before the counter row, so that two
    submissions lock rows in the same order."""
    seated = sorted(seated, key=lambda line: (line.day, line.unit_id))
    values, line_params = _LINES.values(lines)
    audit_values, audit_params = _AUDIT.values([audit])
    reservation_values, reservation_params = _RESERVATION.values([reservation])
    with prepared_cursor() as cursor:
        cursor.execute(
            f"WITH seats AS ("
            f"  INSERT INTO {table(Occupancy)} AS o (establishment_id, unit_id, day, capacity, taken) "
            f"  SELECT e.id, wanted.unit_id, wanted.day, COALESCE((e.unit_capacities ->> wanted.code)::int, e.capacity), 1"
            f"  FROM unnest(%s::bigint[], %s::text[], %s::date[]) WITH ORDINALITY AS wanted(unit_id, code, day, n) "
            f"  JOIN {table(Establishment)} e ON e.id = %s ORDER BY wanted.n "
            f"  ON CONFLICT (establishment_id, unit_id, day) DO UPDATE "
            f"  SET taken = o.taken + 1, capacity = EXCLUDED.capacity RETURNING 1"
            f"), counter AS ("  # reading seats makes them taken first
            f"  INSERT INTO {table(ReservationCounter)} AS c (year, last) "
            f"  SELECT %s, 1 FROM (SELECT count(*) FROM seats) AS taken "
            f"  ON CONFLICT (year) DO UPDATE SET last = c.last + 1 RETURNING last"
            f"), reservation AS ("
            f"  INSERT INTO {table(Reservation)} (number, {_RESERVATION.columns}) "
            f"  SELECT %s || lpad(counter.last::text, greatest(6, length(counter.last::text)), '0'), v.* "
            f"  FROM counter, (VALUES {reservation_values}) AS v RETURNING id, number"
            f"), lines AS ("
            f"  INSERT INTO {table(Booking)} (reservation_id, {_LINES.columns}) "
            f"  SELECT reservation.id, v.* FROM reservation, (VALUES {values}) AS v RETURNING id, unit_id, day"
            f"), audit AS ("
            f"  INSERT INTO {table(AuditEvent)} ({_AUDIT.columns}) "
            f"  SELECT v.at, v.actor_id, v.action, v.family_id, v.target || reservation.number, v.details "
            f"  FROM reservation, (VALUES {audit_values}) AS v(at, actor_id, action, family_id, target, details) "
            f"  RETURNING id"
            f") SELECT reservation.id, reservation.number, lines.id, lines.unit_id, lines.day, audit.id "
            f"FROM reservation, lines, audit",
            [[line.unit_id for line in seated], [line.unit.code for line in seated], [line.day for line in seated],
             reservation.enrolment.establishment_id, year, f"R{year}-", *reservation_params, *line_params,
             *audit_params])
        rows = cursor.fetchall()
    reservation.pk, reservation.number = rows[0][0], rows[0][1]
    reservation._state.adding, reservation._state.db = False, "default"
    audit.pk = rows[0][5]
    audit._state.adding, audit._state.db = False, "default"
    ids = {(unit_id, day): line_id for _, _, line_id, unit_id, day, _ in rows}
    for line in lines:
        line.reservation = reservation
        line.pk = ids[(line.unit_id, line.day)]
        line._state.adding, line._state.db = False, "default"


#: The CHECK that refuses a place over capacity (booking.models.Occupancy).
CAPACITY_CONSTRAINT = "never_over_capacity"


def obstacles(enrolment: Enrolment, wanted: list[tuple[Unit, date]], *, actor_id: int | None,
              idempotency_key: str) -> tuple[set, set, int | None]:
    """Why a submission could not be written, in one statement: the (unit id, day) of
    ``wanted`` that are full, those the child already holds (a live booking), and the id
    of the réservation this account made with ``idempotency_key`` (None if none)."""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"WITH wanted AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::date[]) AS w(unit_id, code, day)) "
            f"SELECT 'full', wanted.unit_id, wanted.day FROM wanted "
            f"JOIN {table(Establishment)} e ON e.id = %s "
            f"JOIN {table(Occupancy)} o ON o.establishment_id = e.id AND o.unit_id = wanted.unit_id "
            f"  AND o.day = wanted.day "
            f"WHERE o.taken >= COALESCE((e.unit_capacities ->> wanted.code)::int, e.capacity) "
            f"UNION ALL SELECT 'held', b.unit_id, b.day FROM wanted "
            f"JOIN {table(Booking)} b ON b.child_id = %s AND b.unit_id = wanted.unit_id AND b.day = wanted.day "
            f"WHERE b.action = 'book' AND b.state = ANY(%s::text[]) "
            f"UNION ALL SELECT 'first', r.id, NULL FROM {table(Reservation)} r "
            f"WHERE %s::text <> '' AND r.idempotency_key = %s::text AND r.created_by_id IS NOT DISTINCT FROM %s::bigint",
            [[unit.pk for unit, _ in wanted], [unit.code for unit, _ in wanted], [day for _, day in wanted],
             enrolment.establishment_id, enrolment.child_id, list(Booking.LIVE_STATES), idempotency_key,
             idempotency_key, actor_id])
        rows = cursor.fetchall()
    full = {(unit_id, day) for kind, unit_id, day in rows if kind == "full"}
    held = {(unit_id, day) for kind, unit_id, day in rows if kind == "held"}
    first = next((unit_id for kind, unit_id, _ in rows if kind == "first"), None)
    return full, held, first


def take_seats(establishment_id: int, seats: list[tuple[Unit, date]]) -> set[tuple[int, date]]:
    """Take one place per (unit, day) where one is left; return the (unit id, day) taken
    (a place freed for the waiting list, see services._promote_waiting)."""
    if not seats:
        return set()
    seats = sorted(seats, key=lambda seat: (seat[1], seat[0].pk))
    with prepared_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table(Occupancy)} AS o (establishment_id, unit_id, day, capacity, taken) "
            f"SELECT e.id, wanted.unit_id, wanted.day, "
            f"       COALESCE((e.unit_capacities ->> wanted.code)::int, e.capacity), 1 "
            f"FROM unnest(%s::bigint[], %s::text[], %s::date[]) WITH ORDINALITY AS wanted(unit_id, code, day, n) "
            f"JOIN {table(Establishment)} e ON e.id = %s "
            f"ORDER BY wanted.n "
            f"ON CONFLICT (establishment_id, unit_id, day) DO UPDATE "
            f"SET taken = o.taken + 1, capacity = EXCLUDED.capacity WHERE o.taken < EXCLUDED.capacity "
            f"RETURNING o.unit_id, o.day",
            [[unit.pk for unit, _ in seats], [unit.code for unit, _ in seats], [day for _, day in seats],
             establishment_id])
        return set(cursor.fetchall())
