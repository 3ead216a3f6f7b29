"""Hand-written statements that still read and write model instances.

For the few hot paths where building and compiling ORM queries, and PostgreSQL parsing
and planning them, cost more than the work itself: a booking submission was 14 ORM
statements and about 25 ms of CPU, against 1.5 ms for a bare tenant-routed read
(scripts/bench_booking.py, scripts/measure_request_cost.py). The SQL is written next to
the code that uses it; column lists come from the models' ``_meta``, so a new field needs
no change here, and rows become ordinary instances (saved, compared, serialised like any
other).

    user, family = Columns(User, "u"), Columns(Family, "f")
    with prepared_cursor() as cursor:
        schema = cursor.db.schema_name
        cursor.execute(f"SELECT {user.sql}, {family.sql} FROM {table(User, schema)} u LEFT JOIN … WHERE …", params)
        row = cursor.fetchone()
    u, offset = user.build(row, 0)
    f, offset = family.build(row, offset)   # None when the LEFT JOIN found nothing
"""

from __future__ import annotations

import json
from datetime import date, time
from functools import cached_property

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.postgresql.base import ServerBindingCursor


class Columns:
    """The columns of ``model`` (all concrete fields, or ``fields`` only) under ``alias``."""

    def __init__(self, model, alias: str, fields: tuple[str, ...] | None = None):
        self.model, self.alias, self.fields = model, alias, fields

    @cached_property
    def _concrete(self) -> list:
        # Resolved on first use, not at import: models may be imported before apps are ready.
        fields = list(self.model._meta.concrete_fields)
        if self.fields is not None:
            chosen = [f for f in fields if f.name in self.fields or f.attname in self.fields]
            missing = set(self.fields) - {f.name for f in chosen} - {f.attname for f in chosen}
            if missing:
                raise LookupError(f"{self.model.__name__} has no field {', '.join(sorted(missing))}")
            if self.model._meta.pk not in chosen:
                chosen.insert(0, self.model._meta.pk)
            fields = chosen
        return fields

    @cached_property
    def sql(self) -> str:
        return ", ".join(f'"{self.alias}"."{f.column}"' for f in self._concrete)

    @cached_property
    def _attnames(self) -> list[str]:
        return [f.attname for f in self._concrete]

    @cached_property
    def _pk_index(self) -> int:
        return self._concrete.index(self.model._meta.pk)

    @cached_property
    def _converters(self) -> list:
        # The conversions the ORM applies to these columns (JSON text → objects…).
        db = connections[DEFAULT_DB_ALIAS]
        out = []
        for index, field in enumerate(self._concrete):
            steps = db.ops.get_db_converters(field) + field.get_db_converters(db)
            if steps:
                out.append((index, steps, field))
        return out

    def build(self, row, offset: int = 0):
        """(instance, next offset) from ``row`` read at ``offset``; the instance is None when
        its primary key is NULL (a LEFT JOIN that matched nothing)."""
        count = len(self._concrete)
        values = list(row[offset:offset + count])
        if values[self._pk_index] is None:
            return None, offset + count
        if self._converters:
            db = connections[DEFAULT_DB_ALIAS]
            for index, steps, field in self._converters:
                for convert in steps:
                    values[index] = convert(values[index], field, db)
        return self.model.from_db(DEFAULT_DB_ALIAS, self._attnames, values), offset + count


class Insert:
    """Model instances as one JSON parameter that PostgreSQL reads back as typed rows
    (``jsonb_to_recordset``), for an INSERT written by hand, typically inside a
    data-modifying WITH that writes several tables in one statement.

    One parameter whatever the number of rows and columns: psycopg adapts parameters one by
    one in Python, which for a réservation's thirty-odd values cost more than the INSERT.
    Values go through each field's ``pre_save`` (auto_now…) as the ORM's own INSERT does;
    dates and times travel as ISO 8601 text, JSON fields as JSON.

        lines = Insert(Booking, skip=("id", "reservation"))
        sql = (f"INSERT INTO {table(Booking, schema)} (reservation_id, {lines.columns}) "
               f"SELECT r.id, v.* FROM r, {lines.rows} AS v")
        cursor.execute(sql, [lines.json(bookings)])
    """

    def __init__(self, model, skip: tuple[str, ...] = ("id",)):
        self.model, self.skip = model, skip

    @cached_property
    def fields(self) -> list:
        return [f for f in self.model._meta.concrete_fields if f.name not in self.skip and f.attname not in self.skip]

    @cached_property
    def columns(self) -> str:
        return ", ".join(f'"{f.column}"' for f in self.fields)

    @cached_property
    def rows(self) -> str:
        """``jsonb_to_recordset(%s::jsonb) AS v(…)``, its columns typed as the table's."""
        return f"jsonb_to_recordset(%s::jsonb) AS v({self._typed_columns})"

    @cached_property
    def row(self) -> str:
        """``jsonb_to_record(%s::jsonb) AS v(…)``: exactly one row, and PostgreSQL knows it.

        Use it for a single instance: PostgreSQL estimates any set-returning function at 100
        rows, and a statement joining three of them, 10¹⁰ rows, which is past
        ``jit_above_cost``: it then compiled the statement at every execution (300 ms of
        server CPU for a booking that takes one, tests/booking/test_statements.py)."""
        return f"jsonb_to_record(%s::jsonb) AS v({self._typed_columns})"

    @cached_property
    def _typed_columns(self) -> str:
        db = connections[DEFAULT_DB_ALIAS]
        return ", ".join(f'"{f.column}" {f.db_type(db)}' for f in self.fields)

    def json(self, instances) -> str:
        """The parameter of :attr:`rows` for ``instances``."""
        return json.dumps([self._values(instance) for instance in instances], default=_iso, ensure_ascii=False)

    def json_one(self, instance) -> str:
        """The parameter of :attr:`row` for ``instance``."""
        return json.dumps(self._values(instance), default=_iso, ensure_ascii=False)

    def _values(self, instance) -> dict:
        return {f.column: f.pre_save(instance, add=True) for f in self.fields}


def _iso(value):
    if isinstance(value, date | time):  # datetime is a date
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --- Prepared statements --------------------------------------------------------------------
#
# Parsing and planning a statement cost PostgreSQL more than running it: the booking's
# enrolment read (six tables, ninety columns) took 1.6 ms sent as text and 0.3 ms
# prepared. Django leaves psycopg's prepared statements off (prepare_threshold=None, for
# transaction poolers, which django-tenants cannot use anyway: the search_path is per
# session). The hot paths' hand-written statements are prepared explicitly instead:
#
# - PostgreSQL plans a prepared statement again whenever the search_path differs from
#   the one it was planned under, so each commune needs its own: the statements name
#   their tables with the schema (``table(Model, schema)``), which makes one text per
#   commune (build them once per schema: functools.lru_cache);
# - psycopg keeps at most PREPARED_MAX of them per connection (least recently used out);
# - a ROLLBACK makes psycopg drop every prepared statement of the connection, so the
#   expected refusals of a hot path are written not to roll back (see booking.services).

#: Prepared statements kept per database connection (psycopg's default is 100: a few
#: statements times the communes a worker serves).
PREPARED_MAX = 1000


def table(model, schema: str) -> str:
    """``"<schema>"."<table>"``: the model's table in one commune's schema (its statements
    are that commune's own prepared statements)."""
    return f'"{schema}"."{model._meta.db_table}"'


def prepared_cursor():
    """A Django cursor (query logging, execute wrappers, errors as django.db exceptions)
    whose statements psycopg prepares on the server and reuses on this connection. Its
    ``db.schema_name`` is the current commune's schema, for :func:`table`."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.connection is None or not db.health_check_done or not db.search_path_set_schemas:
        # Connects, checks a reused connection (CONN_HEALTH_CHECKS), and lets django-tenants
        # set the commune's search_path: what Django's first cursor of a request does.
        with db.cursor():
            pass
    raw_connection = db.connection
    if raw_connection.prepare_threshold is None:
        # None switches preparing off altogether, explicit requests included. A threshold
        # no statement reaches prepares only what asks for it (the ORM's cursors bind on
        # the client side and never prepare).
        raw_connection.prepare_threshold = 2**31
        raw_connection.prepared_max = PREPARED_MAX
    db.validate_thread_sharing()
    cursor = _PreparingCursor(raw_connection)
    return db.make_debug_cursor(cursor) if db.queries_logged else db.make_cursor(cursor)


class _PreparingCursor(ServerBindingCursor):
    """Server-side binding, and prepared from the first execution."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)

    def _maybe_prepare_gen(self, pgq, *, prepare=None, binary=None):
        # Django's query log (connection.queries, CaptureQueriesContext) reads _query, which
        # psycopg only sets for statements it does not prepare.
        self._query = pgq
        return super()._maybe_prepare_gen(pgq, prepare=prepare, binary=binary)
