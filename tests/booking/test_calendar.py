"""ServiceCalendar: public holidays, school holidays per zone, closures, weekdays, periods.

Pure tests: typed configs built in memory, no database.
"""

from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest
from marelle.booking.calendar import (
    Closed,
    ServiceCalendar,
    public_holidays,
    school_holiday_coverage,
    school_holidays,
)

from tenants.commune_config.schema import CommuneConfig, Service

# --- Builders (also used by test_rules) ---------------------------------------------------------

BASE_SERVICE = {
    "code": "cantine",
    "kind": "cantine",
    "label": "Cantine",
    "regie": "regie",
    "age_range": {"min_years": 3, "max_years": 11},
    "establishments": [{"code": "ecole", "label": "École", "capacity": 100}],
    "periods": [{"code": "2026", "label": "Année 2026", "kind": "custom",
                 "start": "2026-01-01", "end": "2026-12-31"}],
    "units": [{"code": "repas", "label": "Repas", "kind": "meal", "start": "11:30", "end": "13:20"}],
    "opening": {"weekdays": ["lundi", "mardi", "jeudi", "vendredi"], "school_holidays": "open"},
    "booking": {"booking_deadline": "S-1 jeudi 12:00", "cancellation_deadline": "S-1 jeudi 12:00"},
    "pricing": {"prices": [{"unit": "repas", "amount_cents": 500}]},
}


def _merge(base: dict, changes: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_service(**changes) -> Service:
    """A valid Service; nested dicts are merged into the base, lists replace it."""
    return Service.model_validate(_merge(BASE_SERVICE, changes))


def make_commune(zone: str = "A", closures: list[dict] | None = None) -> CommuneConfig:
    return CommuneConfig.model_validate({
        "slug": "testville",
        "identity": {"name": "Testville", "kind": "commune", "siren": "212600043",
                     "contact": {"email": "mairie@testville.example"}, "school_holiday_zone": zone},
        "regies": [{"code": "regie", "label": "Régie", "invoice_prefix": "R"}],
        "closures": closures or [],
    })


def make_calendar(zone: str = "A", closures: list[dict] | None = None, **service_changes) -> ServiceCalendar:
    return ServiceCalendar(make_service(**service_changes), make_commune(zone, closures))


# --- Public holidays ----------------------------------------------------------------------------


def test_public_holiday_closes_with_its_french_name():
    calendar = make_calendar()
    closed = calendar.is_open(date(2026, 4, 6))
    assert closed == Closed("public_holiday", "Jour férié : Lundi de Pâques")
    assert str(closed) == "Jour férié : Lundi de Pâques"
    assert calendar.is_open(date(2026, 5, 14)).reason == "Jour férié : Ascension"
    assert calendar.is_open(date(2026, 5, 25)).reason == "Jour férié : Lundi de Pentecôte"
    assert calendar.is_open(date(2026, 4, 7)) is None


def test_service_open_on_public_holidays():
    calendar = make_calendar(opening={"open_on_public_holidays": True})
    assert calendar.is_open(date(2026, 4, 6)) is None


def test_metropolitan_holidays_without_alsace_moselle():
    days = public_holidays(2026)
    assert date(2026, 4, 3) not in days  # Vendredi saint: Alsace-Moselle only
    assert date(2026, 12, 26) not in days  # Saint-Étienne: Alsace-Moselle only
    assert len(days) == 11
    assert public_holidays(2026) is days  # cached per year


# --- School holidays ----------------------------------------------------------------------------


def test_school_holidays_zone_a_vs_zone_c():
    # Winter 2026: zone A from Saturday 7 to Sunday 22 February, zone C from 21 Feb to 8 March.
    monday = date(2026, 2, 9)
    zone_a = make_calendar("A", opening={"school_holidays": "closed"})
    zone_c = make_calendar("C", opening={"school_holidays": "closed"})
    assert zone_a.is_open(monday) == Closed("school_holidays", "Vacances scolaires (zone A) : vacances d'hiver")
    assert zone_c.is_open(monday) is None
    later = date(2026, 3, 2)
    assert zone_a.is_open(later) is None
    assert zone_c.is_open(later).reason == "Vacances scolaires (zone C) : vacances d'hiver"


def test_which_days_count_as_school_holidays():
    """We follow the package's data: the Saturday of the "fin des cours" counts, the Monday
    of the "reprise" does not."""
    holidays_a = school_holidays("A", 2026)
    assert date(2026, 2, 6) not in holidays_a  # Friday: last day of class
    assert holidays_a[date(2026, 2, 7)] == "Vacances d'hiver"  # Saturday
    assert holidays_a[date(2026, 2, 22)] == "Vacances d'hiver"  # Sunday
    assert date(2026, 2, 23) not in holidays_a  # Monday: reprise des cours
    # The summer: first holiday Saturday 4 July, school again Tuesday 1 September 2026.
    assert date(2026, 7, 3) not in holidays_a
    assert holidays_a[date(2026, 7, 4)] == "Vacances d'été"
    assert holidays_a[date(2026, 8, 31)] == "Vacances d'été"
    assert date(2026, 9, 1) not in holidays_a
    assert school_holidays("A", 2026) is holidays_a  # cached per (zone, year)


def test_cantine_closed_in_holidays_alsh_only_in_holidays():
    cantine = make_calendar("A", opening={"school_holidays": "closed"})
    alsh = make_calendar("A", code="alsh", kind="alsh", opening={
        "weekdays": ["lundi", "mardi", "mercredi", "jeudi", "vendredi"], "school_holidays": "only"})
    in_holidays, in_term = date(2026, 2, 10), date(2026, 3, 10)
    assert cantine.is_open(in_holidays).kind == "school_holidays"
    assert alsh.is_open(in_holidays) is None
    assert cantine.is_open(in_term) is None
    assert alsh.is_open(in_term) == Closed(
        "school_term", "Le service n'ouvre que pendant les vacances scolaires (zone A)")
    # A public holiday inside the holidays still closes the ALSH (zone A spring 2026: 4–19 April).
    assert alsh.is_open(date(2026, 4, 6)).reason == "Jour férié : Lundi de Pâques"
    assert alsh.open_days(date(2026, 4, 6), date(2026, 4, 12)) == [
        date(2026, 4, 7), date(2026, 4, 8), date(2026, 4, 9), date(2026, 4, 10)]


def test_school_holidays_open_policy_ignores_them():
    assert make_calendar("A", opening={"school_holidays": "open"}).is_open(date(2026, 2, 10)) is None


def test_no_school_holiday_data_is_not_guessed():
    first, last = school_holiday_coverage()
    assert last >= date(2027, 8, 31)
    beyond = date(last.year + 1, 3, 10)
    beyond -= timedelta(days=beyond.weekday())  # a Monday in term time, whatever the year
    period = [{"code": "far", "label": "Loin", "start": f"{beyond.year}-01-01", "end": f"{beyond.year}-12-31"}]
    depends = make_calendar(opening={"school_holidays": "closed"}, periods=period)
    assert depends.is_open(beyond).kind == "no_data"
    assert "non disponible" in depends.is_open(beyond).reason
    assert make_calendar(opening={"school_holidays": "open"}, periods=period).is_open(beyond) is None


# --- Closures, weekdays, periods, units --------------------------------------------------------


def test_commune_and_service_closures():
    calendar = make_calendar(
        closures=[{"label": "Pont de l'Ascension", "start": "2026-05-15"}],
        opening={"closures": [{"label": "Travaux du réfectoire", "start": "2026-06-01", "end": "2026-06-05"}]})
    assert calendar.is_open(date(2026, 5, 15)) == Closed("closure", "Fermeture : Pont de l'Ascension")
    for day in (date(2026, 6, 1), date(2026, 6, 5)):
        assert calendar.is_open(day).reason == "Fermeture : Travaux du réfectoire"
    assert calendar.is_open(date(2026, 6, 8)) is None


def test_closure_reason_wins_over_school_holidays():
    # 2027-05-07 is both the commune's "Pont de l'Ascension" and a school holiday in the data.
    calendar = make_calendar(closures=[{"label": "Pont de l'Ascension", "start": "2027-05-07"}],
                             opening={"school_holidays": "closed"},
                             periods=[{"code": "p", "label": "P", "start": "2027-01-01", "end": "2027-12-31"}])
    assert calendar.is_open(date(2027, 5, 7)).reason == "Fermeture : Pont de l'Ascension"


def test_weekday_of_the_service():
    calendar = make_calendar()
    assert calendar.is_open(date(2026, 3, 11)) == Closed("weekday", "Le service n'ouvre pas le mercredi")
    assert calendar.is_open(date(2026, 3, 15)).reason == "Le service n'ouvre pas le dimanche"
    # Weekday first: a public holiday on a Sunday reads as the weekday.
    assert calendar.is_open(date(2026, 11, 1)).kind == "weekday"


def test_out_of_period():
    calendar = make_calendar(periods=[{"code": "p", "label": "P", "start": "2026-09-01", "end": "2027-07-03"}])
    assert calendar.is_open(date(2026, 6, 29)) == Closed("out_of_period", "Hors période")
    assert calendar.is_open(date(2026, 9, 1)) is None
    assert calendar.is_open(date(2027, 7, 5)).kind == "out_of_period"


def test_unit_weekdays():
    calendar = make_calendar(
        opening={"weekdays": ["lundi", "mardi", "mercredi", "jeudi", "vendredi"]},
        units=[{"code": "matin", "label": "Matin", "kind": "morning", "start": "07:30", "end": "08:30"},
               {"code": "soir", "label": "Soir", "kind": "evening", "start": "16:30", "end": "18:30",
                "weekdays": ["lundi", "mardi", "jeudi", "vendredi"]}],
        pricing={"prices": [{"unit": "matin", "amount_cents": 100}, {"unit": "soir", "amount_cents": 100}]})
    wednesday = date(2026, 3, 11)
    soir = calendar.service.units[1]
    assert calendar.is_open(wednesday) is None
    assert calendar.is_open(wednesday, "matin") is None
    assert calendar.is_open(wednesday, soir) == Closed("unit_weekday", "L'unité « Soir » n'existe pas le mercredi")
    assert calendar.is_open(wednesday, "soir") == calendar.is_open(wednesday, soir)
    assert calendar.is_open(date(2026, 3, 12), soir) is None
    # A closed day keeps its own reason whatever the unit.
    assert calendar.is_open(date(2026, 3, 14), soir).kind == "weekday"
    assert calendar.open_days(date(2026, 3, 9), date(2026, 3, 15), soir) == [
        date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 12), date(2026, 3, 13)]
    with pytest.raises(KeyError):
        calendar.is_open(wednesday, "inconnue")


# --- Working days ---------------------------------------------------------------------------------


def test_working_days():
    calendar = make_calendar(closures=[{"label": "Pont de l'Ascension", "start": "2026-05-15"}],
                             opening={"closures": [{"label": "Inventaire", "start": "2026-05-20"}]})
    assert calendar.is_working_day(date(2026, 5, 13))  # Wednesday: the cantine is closed, the mairie works
    assert not calendar.is_working_day(date(2026, 5, 14))  # Ascension
    assert not calendar.is_working_day(date(2026, 5, 15))  # commune closure
    assert not calendar.is_working_day(date(2026, 5, 16))  # Saturday
    assert not calendar.is_working_day(date(2026, 5, 17))  # Sunday
    assert not calendar.is_working_day(date(2026, 5, 20))  # closure of the service
    assert calendar.is_working_day(date(2026, 2, 10))  # school holidays are working days


def test_open_days_across_holidays_and_closures():
    calendar = make_calendar(closures=[{"label": "Pont de l'Ascension", "start": "2026-05-15"}],
                             opening={"school_holidays": "closed"})
    # Zone A spring holidays 2026 end on Sunday 19 April.
    assert calendar.open_days(date(2026, 4, 13), date(2026, 4, 24)) == [
        date(2026, 4, 20), date(2026, 4, 21), date(2026, 4, 23), date(2026, 4, 24)]
    assert calendar.open_days(date(2026, 5, 11), date(2026, 5, 17)) == [date(2026, 5, 11), date(2026, 5, 12)]
    assert calendar.open_days(date(2026, 5, 12), date(2026, 5, 11)) == []
