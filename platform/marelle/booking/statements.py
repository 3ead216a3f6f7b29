"""The booking submission's SQL: a fixed number of statements, whatever the réservation.

Written by hand because a submission through the ORM was 14 statements and about 25 ms of
CPU, most of it building and compiling queries (and PostgreSQL parsing and planning them),
against 1.5 ms for a bare tenant-routed read (scripts/bench_booking.py,
scripts/measure_request_cost.py). What a submission of bookings sends, all prepared
(marelle.core.sql):

1. the enrolment with its child, service, period, establishment and bookable units,
   before any rule is evaluated: with the API token and its family when the request
   comes with one (:func:`token_and_enrolment_sql`), else on its own
   (:func:`enrolment_of_family`);
2. one statement that takes every place, numbers the réservation and writes it, its lines
   and its audit event (:func:`insert_reservation`): atomic by itself, so no BEGIN, no
   COMMIT, nothing to roll back when it fails;
3. only when it failed, one read saying why (:func:`obstacles`).

A réservation that cancels days runs in a transaction (the bookings it changes are read
and locked first); whatever the number of days, one statement then writes their new
states, gives their places back and says which of them someone waits for
(:func:`give_back_places`, which staff decisions and expired baskets use too).

The rules themselves are not here (marelle.booking.rules, pure), nor which line gets which
state (marelle.booking.services). Correctness rests on the database: a place exists only
while ``taken <= capacity`` (a CHECK), a child has at most one live line per unit and day
(partial unique index), an Idempotency-Key is used once per account (unique index), and
numbers come from a counter row locked until commit (no gap).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import NamedTuple

from marelle.api.authentication import token_tables
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
        cursor.execute(_enrolment_sql(cursor.db.schema_name), [enrolment_id, family.pk, Child.Status.ARCHIVED])
        rows = cursor.fetchall()
    return enrolment_from_rows(rows, 0, family)


def enrolment_from_rows(rows, offset: int, family) -> Enrolment | None:
    """The enrolment read by :func:`enrolment_of_family`'s columns (or the same columns
    joined to the API token's, see :func:`token_and_enrolment_sql`), from ``offset``."""
    if not rows:
        return None
    enrolment, at = _ENROLMENT.build(rows[0], offset)
    if enrolment is None:  # the token's family has no such enrolment (LEFT JOIN)
        return None
    child, at = _CHILD.build(rows[0], at)
    service, at = _SERVICE.build(rows[0], at)
    period, at = _PERIOD.build(rows[0], at)
    establishment, at = _ESTABLISHMENT.build(rows[0], at)
    units = sorted((unit for unit in (_UNIT.build(row, at)[0] for row in rows) if unit is not None),
                   key=lambda unit: (unit.position, unit.code))
    for unit in units:
        unit.service = service
    child.family = family
    service.active_units = units
    enrolment.child, enrolment.service, enrolment.period, enrolment.establishment = child, service, period, establishment
    return enrolment


def _enrolment_select(schema: str, family: str) -> str:
    return (f"SELECT {_ENROLMENT.sql}, {_CHILD.sql}, {_SERVICE.sql}, {_PERIOD.sql}, {_ESTABLISHMENT.sql}, {_UNIT.sql} "
            f"FROM {table(Enrolment, schema)} e "
            f"JOIN {table(Child, schema)} c ON c.id = e.child_id "
            f"JOIN {table(Service, schema)} s ON s.id = e.service_id "
            f"JOIN {table(Period, schema)} p ON p.id = e.period_id "
            f"JOIN {table(Establishment, schema)} est ON est.id = e.establishment_id "
            f"LEFT JOIN {table(Unit, schema)} u ON u.service_id = e.service_id AND u.archived_at IS NULL "
            f"WHERE e.id = %s AND c.family_id = {family} AND c.status <> %s")


@lru_cache(maxsize=4096)
def _enrolment_sql(schema: str) -> str:
    return _enrolment_select(schema, "%s")


@lru_cache(maxsize=4096)
def token_and_enrolment_sql(schema: str) -> str:
    """The API token's statement (marelle.api.authentication) with, joined to it, the
    enrolment of the token's family named in the URL: one statement where a booking's
    request would send two. Parameters: the enrolment id, Child.Status.ARCHIVED, the key."""
    columns, tables = token_tables(schema)
    return (f"SELECT {columns}, x.* FROM {tables} "
            f"LEFT JOIN LATERAL ({_enrolment_select(schema, 'f.id')}) x ON true WHERE t.key = %s")


def insert_reservation(reservation: Reservation, lines: list[Booking], *, seated: list[Booking], year: int,
                       audit: AuditEvent) -> None:
    """One statement: a place for each line of ``seated``, then the réservation's number
    (``R<year>-000001``…), the réservation, its ``lines`` and the ``audit`` event (its
    target completed with the number). The instances get their primary keys and number.

    The places are taken without looking: a day that is full makes the CHECK ``taken <=
    capacity`` fail, and with it the whole statement, so nothing is written (IntegrityError
    naming CAPACITY_CONSTRAINT; :func:`obstacles` then tells which days). Outside a
    transaction the statement is its own: no BEGIN, no COMMIT, nothing to roll back.
    Rows are locked in the order of services' other writers: the child's row first, the
    places in (day, unit) order, then the counter row."""
    seated = sorted(seated, key=lambda line: (line.day, line.unit_id))
    params = [reservation.child_id,
              [line.unit_id for line in seated], [line.unit.code for line in seated], [line.day for line in seated],
              reservation.enrolment.establishment_id, year, f"R{year}-", _RESERVATION.json_one(reservation),
              _LINES.json(lines), _AUDIT.json_one(audit)]
    with prepared_cursor() as cursor:
        cursor.execute(_insert_sql(cursor.db.schema_name), params)
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


@lru_cache(maxsize=4096)
def _insert_sql(schema: str) -> str:
    return (
        f"WITH child AS ("  # the lock order of services: the child, the places, the rest
        f"  SELECT id FROM {table(Child, schema)} WHERE id = %s FOR NO KEY UPDATE"
        f"), seats AS ("
        f"  INSERT INTO {table(Occupancy, schema)} AS o (establishment_id, unit_id, day, capacity, taken) "
        f"  SELECT e.id, wanted.unit_id, wanted.day, COALESCE((e.unit_capacities ->> wanted.code)::int, e.capacity), 1"
        f"  FROM unnest(%s::bigint[], %s::text[], %s::date[]) WITH ORDINALITY AS wanted(unit_id, code, day, n) "
        f"  JOIN {table(Establishment, schema)} e ON e.id = %s WHERE EXISTS (SELECT FROM child) ORDER BY wanted.n "
        f"  ON CONFLICT (establishment_id, unit_id, day) DO UPDATE "
        f"  SET taken = o.taken + 1, capacity = EXCLUDED.capacity RETURNING 1"
        f"), counter AS ("  # reading seats (and the child) makes them locked first
        f"  INSERT INTO {table(ReservationCounter, schema)} AS c (year, last) "
        f"  SELECT %s, 1 FROM (SELECT count(*) FROM seats) AS taken, child "
        f"  ON CONFLICT (year) DO UPDATE SET last = c.last + 1 RETURNING last"
        f"), reservation AS ("
        f"  INSERT INTO {table(Reservation, schema)} (number, {_RESERVATION.columns}) "
        f"  SELECT %s || lpad(counter.last::text, greatest(6, length(counter.last::text)), '0'), v.* "
        f"  FROM counter, {_RESERVATION.row} RETURNING id, number"
        f"), lines AS ("
        f"  INSERT INTO {table(Booking, schema)} (reservation_id, {_LINES.columns}) "
        f"  SELECT reservation.id, v.* FROM reservation, {_LINES.rows} RETURNING id, unit_id, day"
        f"), audit AS ("
        f"  INSERT INTO {table(AuditEvent, schema)} ({_AUDIT.columns}) "
        f"  SELECT v.at, v.actor_id, v.action, v.family_id, v.target || reservation.number, v.details "
        f"  FROM reservation, {_AUDIT.row} "
        f"  RETURNING id"
        f") SELECT reservation.id, reservation.number, lines.id, lines.unit_id, lines.day, audit.id "
        f"FROM reservation, lines, audit")


#: The CHECK that refuses a place over capacity (booking.models.Occupancy).
CAPACITY_CONSTRAINT = "never_over_capacity"


class Obstacles(NamedTuple):
    full: set           # (unit id, day) of the booked lines: no place left
    held: set           # (unit id, day) of the booked lines: the child holds it already
    first_id: int | None  # the réservation this account made with the Idempotency-Key
    cancellable: set | None  # (unit id, day) of ``cancels`` holding a booking to cancel (None: not asked)


def obstacles(enrolment: Enrolment, wanted: list[tuple[Unit, date]], *, actor_id: int | None,
              idempotency_key: str, cancels: list[tuple[Unit, date]] = ()) -> Obstacles:
    """Why a submission could not be written, in one statement: the (unit id, day) of
    ``wanted`` that are full, those the child already holds (a live booking), the id of the
    réservation this account made with ``idempotency_key`` (None if none), and which
    (unit, day) of ``cancels`` hold a booking that a cancellation can take back."""
    params = [[unit.pk for unit, _ in wanted], [unit.code for unit, _ in wanted], [day for _, day in wanted],
              enrolment.establishment_id, enrolment.child_id, list(Booking.LIVE_STATES)]
    if cancels:
        params += [[unit.pk for unit, _ in cancels], [day for _, day in cancels], enrolment.child_id,
                   [state for state in Booking.LIVE_STATES if state != Booking.State.CANCEL_REQUESTED]]
    if idempotency_key:
        params += [idempotency_key] if actor_id is None else [idempotency_key, actor_id]
    with prepared_cursor() as cursor:
        cursor.execute(_obstacles_sql(cursor.db.schema_name, bool(idempotency_key), actor_id is None, bool(cancels)),
                       params)
        rows = cursor.fetchall()
    found = {kind: {(unit_id, day) for row_kind, unit_id, day in rows if row_kind == kind}
             for kind in ("full", "held", "cancellable")}
    first_id = next((unit_id for kind, unit_id, _ in rows if kind == "first"), None)
    return Obstacles(found["full"], found["held"], first_id, found["cancellable"] if cancels else None)


@lru_cache(maxsize=4096)
def _obstacles_sql(schema: str, with_key: bool, anonymous: bool, with_cancels: bool) -> str:
    cancellable = first = ""
    if with_cancels:  # in the terms of the cancellation's own read (services._write_lines)
        cancellable = (f"UNION ALL SELECT 'cancellable', b.unit_id, b.day "
                       f"FROM unnest(%s::bigint[], %s::date[]) AS c(unit_id, day) "
                       f"JOIN {table(Booking, schema)} b ON b.child_id = %s AND b.unit_id = c.unit_id "
                       f"  AND b.day = c.day WHERE b.action = 'book' AND b.state = ANY(%s::text[]) ")
    if with_key:  # in the terms of the key's partial unique index, so that it is used
        who = "r.created_by_id IS NULL" if anonymous else "r.created_by_id = %s::bigint"
        first = (f"UNION ALL SELECT 'first', r.id, NULL FROM {table(Reservation, schema)} r "
                 f"WHERE r.idempotency_key = %s::text AND r.idempotency_key <> '' AND {who}")
    return (f"WITH wanted AS (SELECT * FROM unnest(%s::bigint[], %s::text[], %s::date[]) AS w(unit_id, code, day)) "
            f"SELECT 'full', wanted.unit_id, wanted.day FROM wanted "
            f"JOIN {table(Establishment, schema)} e ON e.id = %s "
            f"JOIN {table(Occupancy, schema)} o ON o.establishment_id = e.id AND o.unit_id = wanted.unit_id "
            f"  AND o.day = wanted.day "
            f"WHERE o.taken >= COALESCE((e.unit_capacities ->> wanted.code)::int, e.capacity) "
            f"UNION ALL SELECT 'held', b.unit_id, b.day FROM wanted "
            f"JOIN {table(Booking, schema)} b ON b.child_id = %s AND b.unit_id = wanted.unit_id "
            f"  AND b.day = wanted.day "
            f"WHERE b.action = 'book' AND b.state = ANY(%s::text[]) {cancellable}{first}")


def give_back_places(establishment_id: int, freed: list[Booking], *, changed: list[Booking] = (),
                     now) -> set[tuple[int, date]]:
    """Give back the place of each booking of ``freed`` and return the (unit id, day) of
    those places that someone waits for; in the same statement, write the new state (set on
    the instances) of each booking of ``changed``. One statement, whatever the number of days.

    Inside the caller's transaction, the bookings locked, and the places too when there are
    several (services._lock_places): the places' UPDATE then waits for no one."""
    for booking in changed:
        booking.updated_at = now
    with prepared_cursor() as cursor:
        cursor.execute(_give_back_sql(cursor.db.schema_name), [
            now, [b.pk for b in changed], [b.state for b in changed],
            [b.unit_id for b in freed], [b.day for b in freed], establishment_id, establishment_id,
            Booking.State.WAITING])
        return set(cursor.fetchall())


@lru_cache(maxsize=4096)
def _give_back_sql(schema: str) -> str:
    booking, occupancy = table(Booking, schema), table(Occupancy, schema)
    return (f"WITH changed AS (UPDATE {booking} b SET state = k.state, updated_at = %s "
            f"  FROM unnest(%s::bigint[], %s::text[]) AS k(id, state) WHERE b.id = k.id), "
            f"freed AS (SELECT * FROM unnest(%s::bigint[], %s::date[]) AS f(unit_id, day)), "
            f"given_back AS (UPDATE {occupancy} o SET taken = o.taken - 1 FROM freed "
            f"  WHERE o.establishment_id = %s AND o.unit_id = freed.unit_id AND o.day = freed.day AND o.taken > 0) "
            f"SELECT DISTINCT freed.unit_id, freed.day FROM freed WHERE EXISTS (SELECT 1 FROM {booking} w "
            f"  WHERE w.unit_id = freed.unit_id AND w.day = freed.day AND w.establishment_id = %s "
            f"  AND w.state = %s AND w.action = 'book')")


def take_seats(establishment_id: int, seats: list[tuple[Unit, date]]) -> set[tuple[int, date]]:
    """Take one place per (unit, day) where one is left; return the (unit id, day) taken
    (a place freed for the waiting list, see services._promote_waiting)."""
    if not seats:
        return set()
    seats = sorted(seats, key=lambda seat: (seat[1], seat[0].pk))
    with prepared_cursor() as cursor:
        cursor.execute(_take_seats_sql(cursor.db.schema_name),
                       [[unit.pk for unit, _ in seats], [unit.code for unit, _ in seats], [day for _, day in seats],
                        establishment_id])
        return set(cursor.fetchall())


@lru_cache(maxsize=4096)
def _take_seats_sql(schema: str) -> str:
    return (f"INSERT INTO {table(Occupancy, schema)} AS o (establishment_id, unit_id, day, capacity, taken) "
            f"SELECT e.id, wanted.unit_id, wanted.day, COALESCE((e.unit_capacities ->> wanted.code)::int, e.capacity), 1 "
            f"FROM unnest(%s::bigint[], %s::text[], %s::date[]) WITH ORDINALITY AS wanted(unit_id, code, day, n) "
            f"JOIN {table(Establishment, schema)} e ON e.id = %s ORDER BY wanted.n "
            f"ON CONFLICT (establishment_id, unit_id, day) DO UPDATE "
            f"SET taken = o.taken + 1, capacity = EXCLUDED.capacity WHERE o.taken < EXCLUDED.capacity "
            f"RETURNING o.unit_id, o.day")
