"""When a service is open: public holidays, school holidays, closures, weekdays, periods.

Pure module: no database, no Django. A :class:`ServiceCalendar` is built from the typed
YAML of one service (:class:`tenants.commune_config.schema.Service`) and of its commune
(:class:`tenants.commune_config.schema.CommuneConfig`), and answers, for a date:

- :meth:`ServiceCalendar.is_open` — ``None`` if the service (and the unit, when given)
  runs that day, else a :class:`Closed` carrying the reason in French;
- :meth:`ServiceCalendar.is_working_day` — Monday to Friday, not a public holiday, not a
  commune closure nor a closure of this service (the "ouvrés" of ``J-2 ouvrés 18:00``;
  school holidays do *not* make a day non-working: the town hall works then);
- :meth:`ServiceCalendar.open_days` — the open days of a span, both ends included.

Sources
-------
Public holidays: the PyPI package ``holidays`` (``holidays.France``, French names),
metropolitan France without a subdivision — so without the two extra days of
Alsace-Moselle (Vendredi saint, Saint-Étienne). Lundi de Pentecôte counts as a public
holiday (schools are closed that day).

School holidays: the PyPI package ``vacances-scolaires-france``, which ships the Ministry
of Education's calendar per zone (A, B, C) as data. We follow its data exactly: a date is
a school-holiday date of a zone when the package marks it so. In that data the holidays
start on the Saturday of the official "fin des cours : samedi …" (that Saturday counts as
a holiday: zone A winter 2026 runs from Saturday 7 to Sunday 22 February, school again on
Monday 23), or, for a mid-week break, on the day after the last day of class (pont de
l'Ascension 2027: Thursday 6 to Saturday 8 May), and they end the day before the "reprise
des cours". So for the usual breaks the first *weekday* of holidays is the Monday after
the last school week and the last one is the Friday before the reprise (a Sunday at the
very end is sometimes left unmarked by the data; it changes nothing for weekday services).
Dates the package has no data for (before its first year, or after
its last marked holiday — the summer holidays of 2028 in version 0.12.0) are not guessed:
a service whose opening depends on school holidays (``school_holidays: closed`` or
``only``) is closed then with a reason saying the calendar is missing — upgrade the
package to extend it.

Speed: the sources are turned once per process into ``{date: name}`` dicts per year (per
zone for school holidays), and each calendar memoises its answer per date, so a planning of
many children and months costs a dict lookup per cell.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # only types: the module works with any object of the same shape
    from tenants.commune_config.schema import CommuneConfig, Service, Unit

WEEKDAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")

ClosedKind = Literal[
    "weekday",          # the service does not run that weekday
    "public_holiday",   # jour férié
    "closure",          # commune or service closure from the YAML
    "school_holidays",  # closed during the school holidays of the zone
    "school_term",      # open only during school holidays, and this day is not one
    "no_data",          # the school-holiday calendar does not cover this date
    "out_of_period",    # outside every period of the service
    "unit_weekday",     # the unit does not exist that weekday
]


@dataclass(frozen=True, slots=True)
class Closed:
    """Why a day (or a unit on a day) is closed; ``reason`` is French, for families."""

    kind: ClosedKind
    reason: str

    def __str__(self) -> str:
        return self.reason


# --- Sources, cached per process -----------------------------------------------------------


@functools.lru_cache(maxsize=64)
def public_holidays(year: int) -> dict[date, str]:
    """French public holidays (metropolitan) of ``year``: ``{date: "Lundi de Pâques", ...}``."""
    import holidays

    return dict(holidays.France(years=year, language="fr"))


@functools.lru_cache(maxsize=1)
def _school_holiday_data():
    from vacances_scolaires_france import SchoolHolidayDates

    data = SchoolHolidayDates()
    marked = [d for d, row in data.data.items()
              if any(row[data.zone_key(z)] for z in data.SUPPORTED_ZONES)]
    first = date(data.min_year, 1, 1)
    last = max(marked) if marked else first - timedelta(days=1)
    return data, first, last


def school_holiday_coverage() -> tuple[date, date]:
    """First and last date the school-holiday data speaks for (both included)."""
    _, first, last = _school_holiday_data()
    return first, last


@functools.lru_cache(maxsize=64)
def school_holidays(zone: str, year: int) -> dict[date, str]:
    """School-holiday dates of ``zone`` in ``year``: ``{date: "Vacances d'hiver", ...}``.

    Empty for a year the package has no data for (see :func:`school_holiday_coverage`).
    """
    data, first, last = _school_holiday_data()
    key = data.zone_key(zone)  # raises for an unknown zone
    if not first.year <= year <= last.year:
        return {}
    return {day: row["nom_vacances"] for day, row in data.data.items()
            if day.year == year and row[key]}


def preload(years: Iterable[int] = (), zones: Iterable[str] = ("A", "B", "C")) -> None:
    """Load both sources now (≈150 ms once per process) rather than on the first planning:
    call it at start-up, before the web/worker processes fork."""
    _school_holiday_data()
    for year in years:
        public_holidays(year)
        for zone in zones:
            school_holidays(zone, year)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _expand(closures: Iterable, into: dict[date, str]) -> None:
    for closure in closures:
        day, end = closure.start, closure.end or closure.start
        while day <= end:
            into.setdefault(day, closure.label)
            day += timedelta(days=1)


# --- The calendar of one service ---------------------------------------------------------------


class ServiceCalendar:
    """Opening days of one service of one commune. Cheap to build; answers are memoised.

    Order of the checks, so the reason shown is the most telling one: the weekday of the
    service, a public holiday (unless ``open_on_public_holidays``), a commune or service
    closure, the school holidays (``closed`` / ``only``), outside every period of the
    service, and last the weekdays of the unit.
    """

    def __init__(self, service: Service, commune: CommuneConfig):
        self.service = service
        self.zone: str = commune.identity.school_holiday_zone
        self.tz = ZoneInfo(getattr(commune.identity, "timezone", None) or "Europe/Paris")
        opening = service.opening
        self._weekdays = frozenset(WEEKDAYS_FR.index(w) for w in opening.weekdays)
        self._school_policy = opening.school_holidays
        self._open_on_public_holidays = opening.open_on_public_holidays
        self._closures: dict[date, str] = {}
        _expand(opening.closures, self._closures)   # the service's own label wins
        _expand(commune.closures, self._closures)
        self._periods = tuple((p.start, p.end) for p in service.periods)
        self._units = {u.code: u for u in service.units}
        self._unit_weekdays = {
            u.code: frozenset(WEEKDAYS_FR.index(w) for w in u.weekdays)
            for u in service.units if u.weekdays is not None
        }
        self._days: dict[date, Closed | None] = {}
        self._working: dict[date, bool] = {}
        self._weekday_closed = {
            wd: Closed("weekday", f"Le service n'ouvre pas le {WEEKDAYS_FR[wd]}")
            for wd in range(7) if wd not in self._weekdays
        }
        self._out_of_period = Closed("out_of_period", "Hors période")
        self._school_term = Closed(
            "school_term", f"Le service n'ouvre que pendant les vacances scolaires (zone {self.zone})")
        self._no_data = Closed(
            "no_data", f"Calendrier des vacances scolaires (zone {self.zone}) non disponible pour cette date")
        self._reasons: dict[tuple[str, str], Closed] = {}

    # -- public API --

    def is_open(self, day: date, unit: Unit | str | None = None) -> Closed | None:
        """``None`` if the service runs on ``day`` (and the unit exists that weekday)."""
        closed = self._days.get(day, _MISSING)
        if closed is _MISSING:
            closed = self._days[day] = self._compute(day)
        if closed is not None or unit is None:
            return closed
        code = unit if isinstance(unit, str) else unit.code
        weekdays = self._unit_weekdays.get(code)
        if weekdays is None:
            if code not in self._units:
                raise KeyError(f"unité « {code} » inconnue pour le service « {self.service.code} »")
            return None
        weekday = day.weekday()
        if weekday in weekdays:
            return None
        label = self._units[code].label
        return self._reason("unit_weekday", f"L'unité « {label} » n'existe pas le {WEEKDAYS_FR[weekday]}")

    def is_working_day(self, day: date) -> bool:
        """Mon–Fri, not a public holiday, not a commune closure nor a closure of this service."""
        working = self._working.get(day)
        if working is None:
            working = self._working[day] = (
                day.weekday() < 5 and day not in public_holidays(day.year) and day not in self._closures)
        return working

    def open_days(self, start: date, end: date, unit: Unit | str | None = None) -> list[date]:
        """Days from ``start`` to ``end`` (both included) on which ``is_open`` is ``None``."""
        days, day = [], start
        while day <= end:
            if self.is_open(day, unit) is None:
                days.append(day)
            day += timedelta(days=1)
        return days

    def school_holiday_name(self, day: date) -> str | None:
        """Name of the school holidays of the commune's zone on ``day`` (data of the package)."""
        return school_holidays(self.zone, day.year).get(day)

    # -- internals --

    def _reason(self, kind: ClosedKind, text: str) -> Closed:
        key = (kind, text)
        closed = self._reasons.get(key)
        if closed is None:
            closed = self._reasons[key] = Closed(kind, text)
        return closed

    def _compute(self, day: date) -> Closed | None:
        weekday = day.weekday()
        if weekday not in self._weekdays:
            return self._weekday_closed[weekday]
        if not self._open_on_public_holidays:
            name = public_holidays(day.year).get(day)
            if name:
                return self._reason("public_holiday", f"Jour férié : {name}")
        label = self._closures.get(day)
        if label:
            return self._reason("closure", f"Fermeture : {label}")
        if self._school_policy != "open":
            first, last = school_holiday_coverage()
            if not first <= day <= last:
                return self._no_data
            name = school_holidays(self.zone, day.year).get(day)
            if name and self._school_policy == "closed":
                return self._reason(
                    "school_holidays", f"Vacances scolaires (zone {self.zone}) : {_lower_first(name)}")
            if not name and self._school_policy == "only":
                return self._school_term
        if not any(start <= day <= end for start, end in self._periods):
            return self._out_of_period
        return None


_MISSING = object()
