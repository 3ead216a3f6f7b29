"""The booking rules of a service, evaluated in the commune's time zone. Pure: no database.

The booking engine (``marelle.booking.services``), the planning and the API all ask this
module, with an explicit ``now`` (an aware datetime: tests freeze the clock by passing it):

- :func:`deadline_instant` — the instant a deadline of the YAML falls on for a day;
- :func:`evaluate` — may this day/unit be booked or cancelled now, and how (accepted at
  once, request for staff, refused), with a French reason and a short hint for the cell;
- :func:`check_week_limits` — min/max days per week and max days per period.

Deadlines (grammar in :mod:`tenants.commune_config.deadlines`)
------------------------------------------------------------
``S-N <jour> HH:MM``      that weekday of the week N weeks before the week of the day
                          (weeks start on Monday): ``S-1 jeudi 12:00`` for Monday 16 March
                          2026 is Thursday 12 March 12:00, for Sunday 22 March too.
``J-N HH:MM``             the day minus N calendar days at HH:MM (``J-0`` the same day).
``J-N ouvrés HH:MM``      step back N working days, the booked day itself excluded, at
                          HH:MM; working day = Monday–Friday, not a public holiday, not a
                          closure of the commune or of the service
                          (:meth:`~marelle.booking.calendar.ServiceCalendar.is_working_day`).
                          ``J-0 ouvrés`` is the day itself.
``H-N``                   N real elapsed hours before the unit starts (00:00 when the unit
                          has no start time), computed in UTC: across a change of time the
                          wall-clock time moves (H-48 before Monday 30 March 2026 07:30 is
                          Saturday 28 March 06:30).
``M-1 le N HH:MM``        day N of the month before the month of the day, at HH:MM.

Which minute is in time
-----------------------
A deadline names a minute, and that whole minute is still in time: with ``12:00`` a
booking is accepted up to 12:00:59.999999 and refused from 12:01:00. Exactly: allowed iff
``now < deadline_instant(...) + 1 minute``. :func:`deadline_instant` returns the named
minute itself (HH:MM:00), which is what families read ("jusqu'au jeudi 12 mars 2026 à
12:00"). The same holds for ``H-N`` and for a period's ``booking_closes``;
``booking_opens`` is open from its first instant (HH:MM:00 included).

Local times on the nights the clocks change
-------------------------------------------
A local wall-clock time is made an instant by :func:`local_instant`, deterministically:

- a time that does not exist (02:30 on the last Sunday of March in Europe/Paris) is
  shifted forward by the length of the gap: 02:30 → 03:30 CEST (01:30 UTC), like
  ``java.time`` and ``dateutil.tz.resolve_imaginary`` — i.e. read with the offset in force
  before the change;
- a time that happens twice (02:30 on the last Sunday of October) is the first occurrence
  (``fold=0``, summer time): 02:30 CEST = 00:30 UTC.

Instants are returned in the commune's zone (for display) but every sum and comparison
here is done in UTC. Beware of PEP 495 when comparing them yourself: an aware datetime in
the repeated hour of October never compares *equal* (``==``) to one in another zone (its
ordering comparisons are right); compare ``.astimezone(timezone.utc)`` values.

What is refused, in this order
------------------------------
a past day (or today once the unit has started), a day outside the period, a closed day
(the calendar's reason: public holiday, closure, school holidays, weekday of the service
or of the unit), before the period's ``booking_opens`` or after its ``booking_closes``
(booking only), and after the deadline — where a booking may still be accepted as a late
request (``late_booking.allowed``, with its surcharge) and a cancellation is refused (the
booking stays and the absence is billed per ``pricing.absences``).

Cancelling a booking on a day the service no longer opens (closed, outside the period,
unit removed that weekday: the config changed after the booking) is always accepted, with
no deadline: there is nothing left to attend or to bill.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from marelle.booking.calendar import WEEKDAYS_FR, Closed, ServiceCalendar
from tenants.commune_config.deadlines import Deadline

if TYPE_CHECKING:
    from tenants.commune_config.schema import BookingRules, Period, Service, Unit

MONTHS_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
             "septembre", "octobre", "novembre", "décembre")

#: A deadline's minute is included: in time iff ``now < deadline + GRACE``.
GRACE = timedelta(minutes=1)

Action = Literal["book", "cancel"]
Outcome = Literal["accepted", "request", "refused"]
Refusal = Literal["past", "started", "out_of_period", "closed", "not_open_yet", "booking_closed",
                  "deadline"]

_MIDNIGHT = time(0, 0)
_MAX_STEPS = 3660  # J-N ouvrés: give up after ten years of closures rather than loop forever


# --- French formatting (no locale) ------------------------------------------------------------


def format_date(day: date, *, weekday: bool = True, year: bool = True) -> str:
    """``lundi 16 mars 2026``, ``1er septembre 2026`` (weekday=False), ``jeudi 12 mars`` (year=False)."""
    text = f"{'1er' if day.day == 1 else day.day} {MONTHS_FR[day.month - 1]}"
    if year:
        text += f" {day.year}"
    return f"{WEEKDAYS_FR[day.weekday()]} {text}" if weekday else text


def format_datetime(moment: datetime, *, weekday: bool = True, year: bool = True,
                    tz: ZoneInfo | None = None) -> str:
    """``jeudi 12 mars 2026 à 12:00`` (converted to ``tz`` first when given)."""
    if tz is not None:
        moment = moment.astimezone(tz)
    return f"{format_date(moment.date(), weekday=weekday, year=year)} à {moment:%H:%M}"


def format_cents(cents: int) -> str:
    """``250`` → ``2,50 €``; ``123456`` → ``1 234,56 €``."""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    return f"{sign}{euros:,}".replace(",", " ") + f",{rest:02d} €"


def _days(n: int) -> str:
    return f"{n} jour" if n <= 1 else f"{n} jours"


# --- Instants -----------------------------------------------------------------------------------


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The aware instant of wall-clock ``at`` on ``day`` in ``tz``.

    Nonexistent (spring gap) → shifted forward by the gap; ambiguous (autumn) → first
    occurrence (fold=0). The result is normalised (its offset is the real one).
    """
    return _resolve(datetime.combine(day, at), tz)


def _resolve(naive: datetime, tz: ZoneInfo) -> datetime:
    if naive.tzinfo is not None:
        return naive.astimezone(tz)
    # fold=0 reads a time in the gap with the offset before the change (→ shift forward)
    # and an ambiguous time as its first occurrence; the UTC round trip normalises.
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)


def week_start(day: date) -> date:
    """The Monday of the week of ``day``."""
    return day - timedelta(days=day.weekday())


def deadline_instant(deadline: Deadline, day: date, *, unit_start: time | None, tz: ZoneInfo,
                     calendar: ServiceCalendar | None) -> datetime:
    """The aware instant (in ``tz``) ``deadline`` falls on for booking/cancelling ``day``.

    The named minute itself (HH:MM:00); that minute is still in time (see module doc).
    ``calendar`` is needed by ``J-N ouvrés`` only.
    """
    kind = deadline.kind
    if kind == "weekday_of_previous_week":
        target = week_start(day) - timedelta(weeks=deadline.amount, days=-deadline.weekday)
        return local_instant(target, deadline.at, tz)
    if kind == "days_before":
        return local_instant(day - timedelta(days=deadline.amount), deadline.at, tz)
    if kind == "working_days_before":
        if calendar is None:
            raise ValueError(f"le délai « {deadline.text} » a besoin du calendrier du service")
        target, left, steps = day, deadline.amount, 0
        while left:
            target -= timedelta(days=1)
            steps += 1
            if steps > _MAX_STEPS:
                raise ValueError(f"délai « {deadline.text} » : aucun jour ouvré trouvé avant le {day}")
            if calendar.is_working_day(target):
                left -= 1
        return local_instant(target, deadline.at, tz)
    if kind == "hours_before":
        start = local_instant(day, unit_start or _MIDNIGHT, tz).astimezone(UTC)
        return (start - timedelta(hours=deadline.amount)).astimezone(tz)
    if kind == "day_of_previous_month":
        previous = day.replace(day=1) - timedelta(days=1)
        return local_instant(previous.replace(day=deadline.day_of_month), deadline.at, tz)
    raise ValueError(f"type de délai inconnu : {kind}")


def in_time(deadline_at: datetime, now: datetime) -> bool:
    """True while ``now`` is before the end of the deadline's minute (compared in UTC)."""
    return now.astimezone(UTC) < deadline_at.astimezone(UTC) + GRACE


# --- Decisions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    outcome: Outcome
    late: bool
    surcharge_cents: int
    deadline: datetime | None
    reason: str  # full sentence naming the day and the rule
    hint: str  # short text for a planning cell (tooltip)
    refusal: Refusal | None = None  # why it was refused, for the cell state (fermé / verrouillé)
    closed: Closed | None = None  # the calendar's answer when the day is closed

    def explain(self) -> str:
        """The cell text: until when it can be done, or why it cannot."""
        return self.hint or self.reason


def _refused(refusal: Refusal, reason: str, hint: str, *, deadline: datetime | None = None,
             closed: Closed | None = None) -> Decision:
    return Decision(allowed=False, outcome="refused", late=False, surcharge_cents=0, deadline=deadline,
                    reason=reason, hint=hint, refusal=refusal, closed=closed)


def _billing_note(service: Service) -> str:
    absences = getattr(getattr(service, "pricing", None), "absences", None)
    if absences is not None and absences.after_cancellation_deadline == "not_billed":
        return "la réservation est maintenue (une absence ne sera pas facturée)"
    note = "la réservation est maintenue et l'absence sera facturée"
    if absences is None or absences.excused_with_document == "not_billed":
        note += " (sauf absence justifiée par un document)"
    return note


def evaluate(action: Action, *, now: datetime, day: date, unit: Unit | None, service: Service,
             period: Period | None, calendar: ServiceCalendar, tz: ZoneInfo) -> Decision:
    """May ``unit`` on ``day`` be booked (``"book"``) or cancelled (``"cancel"``) at ``now``?"""
    if action not in ("book", "cancel"):
        raise ValueError(f"action inconnue : {action!r}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now doit être une date-heure avec fuseau (aware)")
    booking = action == "book"
    verb = "Réservation" if booking else "Annulation"
    day_text = format_date(day)
    local_now = now.astimezone(tz)
    today = local_now.date()

    # 1. The past.
    if day < today:
        return _refused("past", f"{verb} impossible pour le {day_text} : ce jour est passé.", "Jour passé")
    unit_start = unit.start if unit is not None else None
    if day == today and unit_start is not None and \
            now.astimezone(UTC) >= local_instant(day, unit_start, tz).astimezone(UTC):
        return _refused("started", f"{verb} impossible pour le {day_text} : « {unit.label} » a commencé "
                                   f"à {unit_start:%H:%M}.", "Créneau commencé")

    # 2. Days the service does not open (any more).
    not_open: tuple[Refusal, str, str, Closed | None] | None = None
    if period is not None and not period.start <= day <= period.end:
        span = (f"du {format_date(period.start, weekday=False)} "
                f"au {format_date(period.end, weekday=False)}")
        not_open = ("out_of_period", f"ce jour est hors de la période « {period.label} » ({span})",
                    f"Hors période « {period.label} »", None)
    else:
        closed = calendar.is_open(day, unit)
        if closed is not None:
            not_open = ("closed", closed.reason, closed.reason, closed)
    if not_open is not None:
        refusal, why, hint, closed = not_open
        if not booking:
            return Decision(allowed=True, outcome="accepted", late=False, surcharge_cents=0, deadline=None,
                            reason=f"Annulation du {day_text} acceptée : le service n'a pas lieu ce jour-là "
                                   f"({why[:1].lower() + why[1:]}).",
                            hint="Annulable (service fermé ce jour-là)", closed=closed)
        sep = " : " if refusal == "out_of_period" else " — "
        return _refused(refusal, f"Réservation impossible pour le {day_text}{sep}{why}.", hint, closed=closed)

    # 3. The booking window of the period.
    if booking and period is not None:
        if period.booking_opens is not None:
            opens = _resolve(period.booking_opens, tz)
            if now.astimezone(UTC) < opens.astimezone(UTC):
                when = format_datetime(opens)
                return _refused("not_open_yet", f"Réservation impossible pour le {day_text} : les réservations "
                                                f"ouvrent le {when}.", f"Les réservations ouvrent le {when}")
        if period.booking_closes is not None:
            closes = _resolve(period.booking_closes, tz)
            if not in_time(closes, now):
                when = format_datetime(closes)
                return _refused("booking_closed", f"Réservation impossible pour le {day_text} : les réservations "
                                                  f"pour « {period.label} » étaient ouvertes jusqu'au {when}.",
                                f"Réservations closes depuis le {when}")

    # 4. The deadline.
    rules = service.booking
    deadline = rules.booking_deadline if booking else rules.cancellation_deadline
    at = deadline_instant(deadline, day, unit_start=unit_start, tz=tz, calendar=calendar)
    until = format_datetime(at)
    rule = f"{format_datetime(at, year=at.year != day.year)}, « {deadline.text} »"
    request_mode = rules.mode == "request"
    if in_time(at, now):
        if booking:
            hint = f"Réservable jusqu'au {until}"
            reason = f"Réservation du {day_text} possible jusqu'au {until} (« {deadline.text} »)"
        else:
            hint = f"Annulable jusqu'au {until}"
            reason = f"Annulation du {day_text} possible jusqu'au {until} (« {deadline.text} »)"
        if request_mode:
            hint += " (sur demande)"
            reason += " : demande à valider par le service."
        else:
            reason += "."
        return Decision(allowed=True, outcome="request" if request_mode else "accepted", late=False,
                        surcharge_cents=0, deadline=at, reason=reason, hint=hint)
    if booking and rules.late_booking.allowed:
        surcharge = rules.late_booking.surcharge_cents
        extra = f", avec un supplément de {format_cents(surcharge)}" if surcharge else ""
        return Decision(
            allowed=True, outcome="request", late=True, surcharge_cents=surcharge, deadline=at,
            reason=(f"Réservation tardive pour le {day_text} : le délai ({rule}) est dépassé ; la réservation "
                    f"est une demande à valider par le service{extra}."),
            hint="Délai dépassé : réservation sur demande" + (f" (+ {format_cents(surcharge)})" if surcharge else ""))
    if booking:
        return _refused("deadline", f"Réservation impossible pour le {day_text} : le délai ({rule}) est dépassé.",
                        f"Délai dépassé (réservable jusqu'au {until})", deadline=at)
    return _refused("deadline", f"Annulation impossible pour le {day_text} : le délai ({rule}) est dépassé ; "
                                f"{_billing_note(service)}.",
                    f"Délai d'annulation dépassé (annulable jusqu'au {until})", deadline=at)


# --- Limits on a whole planning -----------------------------------------------------------------


def group_by_week(days: Iterable[date]) -> dict[date, set[date]]:
    """``{monday: {days of that week}}`` — the input of :func:`check_week_limits`."""
    weeks: dict[date, set[date]] = {}
    for day in days:
        weeks.setdefault(week_start(day), set()).add(day)
    return weeks


def check_week_limits(days_by_week: Mapping[Any, Iterable[date]], rules: BookingRules, *,
                      calendar: ServiceCalendar | None = None, unit: Unit | str | None = None) -> list[str]:
    """French problems with ``min/max_days_per_week`` and ``max_days_per_period``.

    ``days_by_week`` holds, per week (any key; see :func:`group_by_week`), the days the
    child would have booked in the period once the réservation is applied — existing
    bookings included. A day counts once whatever the number of units booked that day.
    Weeks with no day booked are not checked against the minimum; with ``calendar``, the
    minimum of a week is lowered to its number of open days (a week with a public holiday
    or the start of the holidays cannot require more).
    """
    problems: list[str] = []
    weeks = [set(days) for days in days_by_week.values()]
    weeks = sorted((w for w in weeks if w), key=min)
    total = 0
    for days in weeks:
        count = len(days)
        total += count
        monday = week_start(min(days))
        label = f"Semaine du {format_date(monday)}"
        if rules.max_days_per_week and count > rules.max_days_per_week:
            problems.append(f"{label} : {_days(count)} réservés, le maximum est de "
                            f"{_days(rules.max_days_per_week)} par semaine.")
        if rules.min_days_per_week and count < rules.min_days_per_week:
            minimum = rules.min_days_per_week
            if calendar is not None:
                minimum = min(minimum, len(calendar.open_days(monday, monday + timedelta(days=6), unit)))
            if count < minimum:
                scope = ("par semaine" if minimum == rules.min_days_per_week
                         else "cette semaine (jours d'ouverture du service)")
                problems.append(f"{label} : {_days(count)} réservé{'s' if count > 1 else ''}, le minimum est de "
                                f"{_days(minimum)} {scope}.")
    if rules.max_days_per_period and total > rules.max_days_per_period:
        problems.append(f"{_days(total)} réservés sur la période, le maximum est de "
                        f"{_days(rules.max_days_per_period)}.")
    return problems
