"""Booking rules: deadlines on both sides of each limit, DST nights, windows, outcomes.

The clock is frozen by passing ``now`` explicitly; nothing here reads the real time or
touches the database.
"""

from __future__ import annotations

import time as walltime
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from marelle.booking.calendar import ServiceCalendar
from marelle.booking.rules import (
    Decision,
    check_week_limits,
    deadline_instant,
    evaluate,
    format_cents,
    format_date,
    format_datetime,
    group_by_week,
    local_instant,
    week_start,
)

from tenants.commune_config.deadlines import parse_deadline
from tests.booking.test_calendar import make_commune, make_service

PARIS = ZoneInfo("Europe/Paris")
REPO = Path(__file__).resolve().parents[2]
LAST_US = 999_999


def paris(*args) -> datetime:
    """A Paris wall-clock time (not for the ambiguous/nonexistent hours: use utc())."""
    return datetime(*args, tzinfo=PARIS)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def instant(text: str, day: date, unit_start: time | None = None, calendar=None) -> datetime:
    return deadline_instant(parse_deadline(text), day, unit_start=unit_start, tz=PARIS, calendar=calendar)


def setup(zone="A", closures=None, **changes) -> tuple:
    service = make_service(**changes)
    return service, ServiceCalendar(service, make_commune(zone, closures))


def decide(service, calendar, day: date, now: datetime, *, action="book", unit=None, period=None) -> Decision:
    unit_conf = next(u for u in service.units if u.code == unit) if unit else service.units[0]
    return evaluate(action, now=now, day=day, unit=unit_conf, service=service,
                    period=period or service.periods[0], calendar=calendar, tz=PARIS)


def deadline_rules(text: str, **booking) -> dict:
    return {"booking": {"booking_deadline": text, "cancellation_deadline": text, **booking}}


# --- Formatting ---------------------------------------------------------------------------------


def test_french_formatting_without_locale():
    assert format_date(date(2026, 3, 16)) == "lundi 16 mars 2026"
    assert format_date(date(2026, 9, 1)) == "mardi 1er septembre 2026"
    assert format_date(date(2026, 8, 17), weekday=False) == "17 août 2026"
    assert format_date(date(2026, 12, 3), year=False) == "jeudi 3 décembre"
    assert format_datetime(paris(2026, 3, 12, 12, 0)) == "jeudi 12 mars 2026 à 12:00"
    assert format_datetime(utc(2026, 3, 12, 11, 0), tz=PARIS) == "jeudi 12 mars 2026 à 12:00"
    assert format_cents(250) == "2,50 €"
    assert format_cents(123456) == "1 234,56 €"
    assert format_cents(5) == "0,05 €"
    assert week_start(date(2026, 3, 22)) == date(2026, 3, 16)


# --- S-N weekday HH:MM ---------------------------------------------------------------------------


def test_weekday_of_previous_week_instant():
    assert instant("S-1 jeudi 12:00", date(2026, 3, 16)) == paris(2026, 3, 12, 12, 0)
    assert instant("S-1 jeudi 12:00", date(2026, 3, 22)) == paris(2026, 3, 12, 12, 0)  # Sunday: same week
    assert instant("S-1 jeudi 12:00", date(2026, 3, 12)) == paris(2026, 3, 5, 12, 0)  # a Thursday itself
    assert instant("S-2 vendredi 12:00", date(2026, 3, 16)) == paris(2026, 3, 6, 12, 0)
    assert instant("S-1 lundi 08:00", date(2026, 1, 5)) == paris(2025, 12, 29, 8, 0)


def test_weekday_of_previous_week_both_sides():
    service, calendar = setup()
    day = date(2026, 3, 16)
    ok = decide(service, calendar, day, paris(2026, 3, 12, 12, 0, 59, LAST_US))
    assert (ok.allowed, ok.outcome, ok.late, ok.surcharge_cents) == (True, "accepted", False, 0)
    assert ok.deadline == paris(2026, 3, 12, 12, 0)
    assert ok.hint == "Réservable jusqu'au jeudi 12 mars 2026 à 12:00"
    assert ok.explain() == ok.hint
    late = decide(service, calendar, day, paris(2026, 3, 12, 12, 1))
    assert (late.allowed, late.outcome, late.refusal) == (False, "refused", "deadline")
    assert late.reason == ("Réservation impossible pour le lundi 16 mars 2026 : le délai "
                           "(jeudi 12 mars à 12:00, « S-1 jeudi 12:00 ») est dépassé.")
    assert late.deadline == paris(2026, 3, 12, 12, 0)


# --- J-N HH:MM -------------------------------------------------------------------------------------


def test_days_before_both_sides():
    service, calendar = setup(**deadline_rules("J-1 23:59"))
    day = date(2026, 3, 17)
    assert instant("J-1 23:59", day) == paris(2026, 3, 16, 23, 59)
    assert instant("J-0 08:00", day) == paris(2026, 3, 17, 8, 0)
    assert decide(service, calendar, day, paris(2026, 3, 16, 23, 59, 59, LAST_US)).outcome == "accepted"
    refused = decide(service, calendar, day, paris(2026, 3, 17, 0, 0))
    assert refused.refusal == "deadline"
    assert "(lundi 16 mars à 23:59, « J-1 23:59 »)" in refused.reason


# --- J-N ouvrés HH:MM -----------------------------------------------------------------------------


def test_working_days_skip_weekend():
    _, calendar = setup()
    assert instant("J-2 ouvrés 18:00", date(2026, 3, 16), calendar=calendar) == paris(2026, 3, 12, 18, 0)
    assert instant("J-1 ouvrés 18:00", date(2026, 3, 16), calendar=calendar) == paris(2026, 3, 13, 18, 0)
    assert instant("J-0 ouvrés 08:00", date(2026, 3, 16), calendar=calendar) == paris(2026, 3, 16, 8, 0)
    with pytest.raises(ValueError):
        instant("J-2 ouvrés 18:00", date(2026, 3, 16))


def test_working_days_skip_weekend_ascension_and_closure_both_sides():
    # Monday 18 May 2026 ← Sun 17, Sat 16, Fri 15 (commune closure), Thu 14 (Ascension)
    # are skipped: Wed 13 is the 1st working day before, Tue 12 the 2nd.
    service, calendar = setup(closures=[{"label": "Pont de l'Ascension", "start": "2026-05-15"}],
                              **deadline_rules("J-2 ouvrés 18:00"))
    day = date(2026, 5, 18)
    assert instant("J-2 ouvrés 18:00", day, calendar=calendar) == paris(2026, 5, 12, 18, 0)
    assert decide(service, calendar, day, paris(2026, 5, 12, 18, 0, 59, LAST_US)).allowed
    refused = decide(service, calendar, day, paris(2026, 5, 12, 18, 1))
    assert not refused.allowed
    assert "(mardi 12 mai à 18:00, « J-2 ouvrés 18:00 »)" in refused.reason


# --- H-N --------------------------------------------------------------------------------------------


def test_hours_before_both_sides():
    # Unit "Repas" starts at 11:30; day: a plain Wednesday (opened for this test).
    service, calendar = setup(**deadline_rules("H-48"), opening={"weekdays": ["mercredi"]})
    day = date(2026, 3, 18)
    assert instant("H-48", day, time(11, 30)) == paris(2026, 3, 16, 11, 30)
    assert decide(service, calendar, day, paris(2026, 3, 16, 11, 30, 59, LAST_US)).allowed
    assert not decide(service, calendar, day, paris(2026, 3, 16, 11, 31)).allowed


def test_hours_before_unit_without_start_counts_from_midnight():
    # 00:00 CEST Monday 30 March = 22:00 UTC Sunday; 24 real hours before = 23:00 CET Saturday.
    assert instant("H-24", date(2026, 3, 30), None) == utc(2026, 3, 28, 22, 0)
    assert instant("H-24", date(2026, 3, 30), None).hour == 23


def test_hours_before_across_spring_change():
    unit = [{"code": "matin", "label": "Matin", "kind": "morning", "start": "07:30", "end": "08:30"}]
    service, calendar = setup(**deadline_rules("H-48"), units=unit,
                              pricing={"prices": [{"unit": "matin", "amount_cents": 100}]})
    day = date(2026, 3, 30)  # Monday 07:30 CEST = 05:30 UTC; 48 h before = Saturday 05:30 UTC = 06:30 CET
    at = instant("H-48", day, time(7, 30))
    assert at == utc(2026, 3, 28, 5, 30)
    assert (at.hour, at.minute) == (6, 30)  # not 07:30: the night of the 29th lasts 23 hours
    assert decide(service, calendar, day, utc(2026, 3, 28, 5, 30, 59, LAST_US)).allowed
    assert not decide(service, calendar, day, utc(2026, 3, 28, 5, 31)).allowed
    assert not decide(service, calendar, day, paris(2026, 3, 28, 7, 0)).allowed
    # Inside the night itself: 6 real hours before 07:30 CEST on Sunday 29 is 00:30 CET.
    assert instant("H-6", date(2026, 3, 29), time(7, 30)) == paris(2026, 3, 29, 0, 30)


def test_hours_before_across_autumn_change():
    unit = [{"code": "matin", "label": "Matin", "kind": "morning", "start": "07:30", "end": "08:30"}]
    service, calendar = setup(**deadline_rules("H-48"), units=unit,
                              pricing={"prices": [{"unit": "matin", "amount_cents": 100}]})
    day = date(2026, 10, 26)  # Monday 07:30 CET = 06:30 UTC; 48 h before = Saturday 06:30 UTC = 08:30 CEST
    at = instant("H-48", day, time(7, 30))
    assert at == utc(2026, 10, 24, 6, 30)
    assert (at.hour, at.minute) == (8, 30)  # the night of the 25th lasts 25 hours
    assert decide(service, calendar, day, utc(2026, 10, 24, 6, 30, 59, LAST_US)).allowed
    assert not decide(service, calendar, day, utc(2026, 10, 24, 6, 31)).allowed
    # 6 real hours before 07:30 CET on Sunday 25 is 00:30 UTC = the first 02:30 (CEST).
    six = instant("H-6", date(2026, 10, 25), time(7, 30))
    assert six.astimezone(UTC) == utc(2026, 10, 25, 0, 30)
    assert (six.hour, six.minute, six.utcoffset()) == (2, 30, timedelta(hours=2))


# --- M-1 le N HH:MM ---------------------------------------------------------------------------------


def test_day_of_previous_month_both_sides():
    service, calendar = setup(**deadline_rules("M-1 le 20 12:00"))
    assert instant("M-1 le 20 12:00", date(2026, 4, 10)) == paris(2026, 3, 20, 12, 0)
    assert instant("M-1 le 20 12:00", date(2026, 3, 31)) == paris(2026, 2, 20, 12, 0)
    day = date(2026, 4, 10)
    assert decide(service, calendar, day, paris(2026, 3, 20, 12, 0, 59, LAST_US)).allowed
    assert not decide(service, calendar, day, paris(2026, 3, 20, 12, 1)).allowed


def test_day_of_previous_month_across_the_year():
    service, calendar = setup(**deadline_rules("M-1 le 20 12:00"))
    day = date(2026, 1, 15)
    assert instant("M-1 le 20 12:00", day) == paris(2025, 12, 20, 12, 0)
    refused = decide(service, calendar, day, paris(2025, 12, 20, 12, 1))
    assert "(samedi 20 décembre 2025 à 12:00, « M-1 le 20 12:00 »)" in refused.reason


# --- A J-1 02:30 deadline on the nights the clocks change -------------------------------------------


def test_local_instant_dst_choices():
    # Nonexistent (spring gap): shifted forward by the gap, 02:30 → 03:30 CEST.
    spring = local_instant(date(2026, 3, 29), time(2, 30), PARIS)
    assert spring == utc(2026, 3, 29, 1, 30)
    assert (spring.hour, spring.minute, spring.utcoffset()) == (3, 30, timedelta(hours=2))
    # Ambiguous (autumn): the first occurrence, in summer time.
    autumn = local_instant(date(2026, 10, 25), time(2, 30), PARIS)
    assert autumn.astimezone(UTC) == utc(2026, 10, 25, 0, 30)  # == across zones is False in the fold (PEP 495)
    assert (autumn.hour, autumn.minute, autumn.fold) == (2, 30, 0)
    assert autumn.utcoffset() == timedelta(hours=2)


def test_j1_0230_on_the_spring_night():
    service, calendar = setup(**deadline_rules("J-1 02:30"))
    day = date(2026, 3, 30)
    ok = decide(service, calendar, day, utc(2026, 3, 29, 1, 30, 59, LAST_US))  # 03:30:59 CEST
    assert ok.allowed and ok.deadline == utc(2026, 3, 29, 1, 30)
    assert ok.hint == "Réservable jusqu'au dimanche 29 mars 2026 à 03:30"
    assert decide(service, calendar, day, paris(2026, 3, 29, 3, 15)).allowed
    assert not decide(service, calendar, day, utc(2026, 3, 29, 1, 31)).allowed


def test_j1_0230_on_the_autumn_night():
    service, calendar = setup(**deadline_rules("J-1 02:30"))
    day = date(2026, 10, 26)
    ok = decide(service, calendar, day, utc(2026, 10, 25, 0, 30, 59, LAST_US))  # first 02:30:59 (CEST)
    assert ok.allowed and ok.deadline.astimezone(UTC) == utc(2026, 10, 25, 0, 30)
    assert ok.hint == "Réservable jusqu'au dimanche 25 octobre 2026 à 02:30"
    assert not decide(service, calendar, day, utc(2026, 10, 25, 0, 31)).allowed
    assert not decide(service, calendar, day, utc(2026, 10, 25, 1, 30)).allowed  # the second 02:30 (CET)


# --- Outcomes ----------------------------------------------------------------------------------------


def test_request_mode_within_deadline():
    service, calendar = setup(booking={"mode": "request"})
    decision = decide(service, calendar, date(2026, 3, 16), paris(2026, 3, 10, 9, 0))
    assert (decision.allowed, decision.outcome, decision.late) == (True, "request", False)
    assert decision.hint == "Réservable jusqu'au jeudi 12 mars 2026 à 12:00 (sur demande)"
    assert decision.reason.endswith("demande à valider par le service.")


def test_late_booking_as_request_with_surcharge():
    service, calendar = setup(booking={"late_booking": {"allowed": True, "surcharge_cents": 200}})
    decision = decide(service, calendar, date(2026, 3, 16), paris(2026, 3, 13, 9, 0))
    assert (decision.allowed, decision.outcome, decision.late, decision.surcharge_cents) == (
        True, "request", True, 200)
    assert decision.deadline == paris(2026, 3, 12, 12, 0)
    assert decision.reason == ("Réservation tardive pour le lundi 16 mars 2026 : le délai (jeudi 12 mars à 12:00, "
                               "« S-1 jeudi 12:00 ») est dépassé ; la réservation est une demande à valider par le "
                               "service, avec un supplément de 2,00 €.")
    assert decision.hint == "Délai dépassé : réservation sur demande (+ 2,00 €)"
    # Late cancellation is never a request.
    assert not decide(service, calendar, date(2026, 3, 16), paris(2026, 3, 13, 9, 0), action="cancel").allowed


def test_cancellation_both_sides_and_billing_note():
    service, calendar = setup(booking={"cancellation_deadline": "J-1 18:00"})
    day = date(2026, 3, 17)
    ok = decide(service, calendar, day, paris(2026, 3, 16, 18, 0, 59, LAST_US), action="cancel")
    assert (ok.allowed, ok.outcome) == (True, "accepted")
    assert ok.hint == "Annulable jusqu'au lundi 16 mars 2026 à 18:00"
    refused = decide(service, calendar, day, paris(2026, 3, 16, 18, 1), action="cancel")
    assert refused.reason == ("Annulation impossible pour le mardi 17 mars 2026 : le délai (lundi 16 mars à 18:00, "
                              "« J-1 18:00 ») est dépassé ; la réservation est maintenue et l'absence sera "
                              "facturée (sauf absence justifiée par un document).")
    free, _ = setup(booking={"cancellation_deadline": "J-1 18:00"},
                    pricing={"absences": {"after_cancellation_deadline": "not_billed"}})
    assert "une absence ne sera pas facturée" in decide(
        free, calendar, day, paris(2026, 3, 16, 18, 1), action="cancel").reason


def test_cancellation_in_request_mode_is_a_request():
    service, calendar = setup(booking={"mode": "request"})
    assert decide(service, calendar, date(2026, 3, 16), paris(2026, 3, 10, 9, 0), action="cancel").outcome == "request"


# --- Refusals ------------------------------------------------------------------------------------------


def test_past_day_and_started_unit():
    service, calendar = setup(**deadline_rules("J-0 23:59"))
    past = decide(service, calendar, date(2026, 3, 16), paris(2026, 3, 17, 8, 0))
    assert (past.allowed, past.refusal) == (False, "past")
    assert past.reason == "Réservation impossible pour le lundi 16 mars 2026 : ce jour est passé."
    assert decide(service, calendar, date(2026, 3, 16), paris(2026, 3, 16, 11, 29, 59)).allowed
    started = decide(service, calendar, date(2026, 3, 16), paris(2026, 3, 16, 11, 30))
    assert started.refusal == "started" and "« Repas » a commencé à 11:30" in started.reason
    assert not decide(service, calendar, date(2026, 3, 16), paris(2026, 3, 17, 8, 0), action="cancel").allowed


def test_closed_day_refused_with_the_calendar_reason():
    service, calendar = setup()
    decision = decide(service, calendar, date(2026, 4, 6), paris(2026, 3, 1, 9, 0))
    assert (decision.allowed, decision.refusal) == (False, "closed")
    assert decision.reason == "Réservation impossible pour le lundi 6 avril 2026 — Jour férié : Lundi de Pâques."
    assert decision.hint == "Jour férié : Lundi de Pâques"
    assert decision.closed.kind == "public_holiday"
    wednesday = decide(service, calendar, date(2026, 3, 18), paris(2026, 3, 1, 9, 0))
    assert wednesday.hint == "Le service n'ouvre pas le mercredi"
    # A booking left on a day that closed since (config change) can always be cancelled.
    cancel = decide(service, calendar, date(2026, 4, 6), paris(2026, 4, 5, 9, 0), action="cancel")
    assert (cancel.allowed, cancel.outcome, cancel.deadline) == (True, "accepted", None)


def test_unit_not_available_that_weekday():
    units = [{"code": "matin", "label": "Matin", "kind": "morning", "start": "07:30", "end": "08:30"},
             {"code": "soir", "label": "Soir", "kind": "evening", "start": "16:30", "end": "18:30",
              "weekdays": ["lundi", "mardi", "jeudi", "vendredi"]}]
    service, calendar = setup(units=units, opening={"weekdays": ["lundi", "mardi", "mercredi", "jeudi", "vendredi"]},
                              pricing={"prices": [{"unit": "matin", "amount_cents": 1},
                                                  {"unit": "soir", "amount_cents": 1}]})
    now = paris(2026, 3, 1, 9, 0)
    assert decide(service, calendar, date(2026, 3, 18), now, unit="matin").allowed
    soir = decide(service, calendar, date(2026, 3, 18), now, unit="soir")
    assert soir.refusal == "closed"
    assert soir.reason == ("Réservation impossible pour le mercredi 18 mars 2026 — "
                           "L'unité « Soir » n'existe pas le mercredi.")


def test_outside_the_period():
    service, calendar = setup(periods=[{"code": "p", "label": "Année scolaire 2026/2027",
                                        "start": "2026-09-01", "end": "2027-07-03"}])
    decision = decide(service, calendar, date(2026, 8, 31), paris(2026, 8, 1, 9, 0))
    assert decision.refusal == "out_of_period"
    assert decision.reason == ("Réservation impossible pour le lundi 31 août 2026 : ce jour est hors de la période "
                               "« Année scolaire 2026/2027 » (du 1er septembre 2026 au 3 juillet 2027).")


def test_period_booking_window_both_sides():
    period = {"code": "toussaint", "label": "Toussaint 2026", "start": "2026-10-19", "end": "2026-10-30",
              "booking_opens": "2026-09-14 08:00", "booking_closes": "2026-10-09 12:00"}
    service, calendar = setup(periods=[period], **deadline_rules("J-2 ouvrés 12:00"))
    day = date(2026, 10, 20)
    early = decide(service, calendar, day, paris(2026, 9, 14, 7, 59, 59, LAST_US))
    assert early.refusal == "not_open_yet"
    assert early.hint == "Les réservations ouvrent le lundi 14 septembre 2026 à 08:00"
    assert early.reason == ("Réservation impossible pour le mardi 20 octobre 2026 : les réservations ouvrent "
                            "le lundi 14 septembre 2026 à 08:00.")
    assert decide(service, calendar, day, paris(2026, 9, 14, 8, 0)).allowed
    assert decide(service, calendar, day, paris(2026, 10, 9, 12, 0, 59, LAST_US)).allowed
    closed = decide(service, calendar, day, paris(2026, 10, 9, 12, 1))
    assert closed.refusal == "booking_closed"
    assert closed.hint == "Réservations closes depuis le vendredi 9 octobre 2026 à 12:00"
    # The window is for booking; cancelling follows its own deadline.
    assert decide(service, calendar, day, paris(2026, 10, 12, 9, 0), action="cancel").allowed


def test_naive_now_is_rejected():
    service, calendar = setup()
    with pytest.raises(ValueError):
        decide(service, calendar, date(2026, 3, 16), datetime(2026, 3, 10, 9, 0))
    with pytest.raises(ValueError):
        evaluate("reserve", now=paris(2026, 3, 10), day=date(2026, 3, 16), unit=None, service=service,
                 period=None, calendar=calendar, tz=PARIS)


# --- Alixan's real configuration ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def alixan():
    from tenants.commune_config.validation import validate_files

    report = validate_files([REPO / "config" / "communes" / "alixan.yaml"])
    assert report.ok, report.errors
    config = report.communes[0].config
    services = {s.code: s for s in config.services}
    return config, services


def alixan_decide(alixan, code, day, now, *, unit=None, action="book"):
    config, services = alixan
    service = services[code]
    return decide(service, ServiceCalendar(service, config), day, now, unit=unit, action=action)


def test_alixan_cantine_until_thursday_noon_for_the_following_week(alixan):
    for day in (date(2026, 9, 14), date(2026, 9, 15), date(2026, 9, 17), date(2026, 9, 18)):
        ok = alixan_decide(alixan, "cantine", day, paris(2026, 9, 10, 12, 0, 59, LAST_US))
        assert (ok.allowed, ok.outcome) == (True, "accepted"), ok.reason
        assert ok.hint == "Réservable jusqu'au jeudi 10 septembre 2026 à 12:00"
        assert not alixan_decide(alixan, "cantine", day, paris(2026, 9, 10, 12, 1)).allowed
        assert alixan_decide(alixan, "cantine", day, paris(2026, 9, 10, 12, 0), action="cancel").allowed
    refused = alixan_decide(alixan, "cantine", date(2026, 9, 14), paris(2026, 9, 10, 12, 1))
    assert refused.reason == ("Réservation impossible pour le lundi 14 septembre 2026 : le délai "
                              "(jeudi 10 septembre à 12:00, « S-1 jeudi 12:00 ») est dépassé.")
    late_cancel = alixan_decide(alixan, "cantine", date(2026, 9, 14), paris(2026, 9, 10, 12, 1), action="cancel")
    assert late_cancel.reason.endswith("l'absence sera facturée (sauf absence justifiée par un document).")
    # Same week as the Thursday: that week was locked on the Thursday before.
    assert alixan_decide(alixan, "cantine", date(2026, 9, 11), paris(2026, 9, 10, 9, 0)).refusal == "deadline"
    assert alixan_decide(alixan, "cantine", date(2026, 9, 16), paris(2026, 9, 1, 9, 0)).hint == \
        "Le service n'ouvre pas le mercredi"


def test_alixan_garderie_until_the_day_before_2359(alixan):
    for unit in ("matin", "soir"):
        day = date(2026, 9, 15)
        assert alixan_decide(alixan, "garderie", day, paris(2026, 9, 14, 23, 59, 59, LAST_US), unit=unit).allowed
        refused = alixan_decide(alixan, "garderie", day, paris(2026, 9, 15, 0, 0), unit=unit)
        assert refused.refusal == "deadline"
        assert "(lundi 14 septembre à 23:59, « J-1 23:59 »)" in refused.reason
    # Monday's garderie: until Sunday 23:59 (calendar days, not working days).
    assert alixan_decide(alixan, "garderie", date(2026, 9, 14), paris(2026, 9, 13, 23, 59)).allowed


def test_alixan_calendar(alixan):
    config, services = alixan
    calendar = ServiceCalendar(services["cantine"], config)
    assert calendar.is_open(date(2026, 10, 19)).reason == "Vacances scolaires (zone A) : vacances de la Toussaint"
    assert calendar.is_open(date(2027, 3, 29)).reason == "Jour férié : Lundi de Pâques"
    assert calendar.is_open(date(2026, 11, 11)).reason == "Le service n'ouvre pas le mercredi"  # Armistice
    assert calendar.is_open(date(2027, 5, 7)).reason == "Fermeture : Pont de l'Ascension"
    assert calendar.is_open(date(2026, 8, 31)).kind == "school_holidays"  # the reason that tells most
    assert calendar.is_open(date(2026, 9, 1)) is None  # rentrée
    assert calendar.is_open(date(2027, 7, 5)).kind == "school_holidays"
    # Booking for the year opens on 17 August 2026 at 08:00.
    early = alixan_decide(alixan, "cantine", date(2026, 9, 3), paris(2026, 8, 17, 7, 59))
    assert early.hint == "Les réservations ouvrent le lundi 17 août 2026 à 08:00"
    assert alixan_decide(alixan, "cantine", date(2026, 9, 3), paris(2026, 8, 17, 8, 0)).allowed


# --- Week and period limits ---------------------------------------------------------------------------


def test_week_limits():
    service = make_service(booking={"min_days_per_week": 2, "max_days_per_week": 3, "max_days_per_period": 5})
    rules = service.booking
    ok = group_by_week([date(2026, 3, 16), date(2026, 3, 17), date(2026, 3, 23), date(2026, 3, 24),
                        date(2026, 3, 24)])  # the same day twice (two units) counts once
    assert check_week_limits(ok, rules) == []
    too_many = group_by_week([date(2026, 3, 16), date(2026, 3, 17), date(2026, 3, 19), date(2026, 3, 20),
                              date(2026, 3, 23), date(2026, 3, 24)])
    assert check_week_limits(too_many, rules) == [
        "Semaine du lundi 16 mars 2026 : 4 jours réservés, le maximum est de 3 jours par semaine.",
        "6 jours réservés sur la période, le maximum est de 5 jours.",
    ]
    too_few = {"w1": [date(2026, 3, 17)], "w2": [], "w3": [date(2026, 3, 30), date(2026, 3, 31)]}
    assert check_week_limits(too_few, rules) == [
        "Semaine du lundi 16 mars 2026 : 1 jour réservé, le minimum est de 2 jours par semaine."]


def test_week_minimum_lowered_to_the_open_days_of_the_week():
    service = make_service(booking={"min_days_per_week": 3}, opening={"school_holidays": "closed"})
    calendar = ServiceCalendar(service, make_commune("A"))
    # Week of 11 May 2026: Mon 11, Tue 12 and Fri 15 open (Wed: not a day of the service, Thu 14:
    # Ascension); with the commune closing Fri 15 too, only 2 days are left.
    week = {date(2026, 5, 11): [date(2026, 5, 11), date(2026, 5, 12)]}
    assert check_week_limits(week, service.booking) == [
        "Semaine du lundi 11 mai 2026 : 2 jours réservés, le minimum est de 3 jours par semaine."]
    closure = ServiceCalendar(service, make_commune("A", [{"label": "Pont", "start": "2026-05-15"}]))
    assert check_week_limits(week, service.booking, calendar=closure) == []
    one = {date(2026, 5, 11): [date(2026, 5, 11)]}
    assert check_week_limits(one, service.booking, calendar=closure) == [
        "Semaine du lundi 11 mai 2026 : 1 jour réservé, le minimum est de 2 jours cette semaine "
        "(jours d'ouverture du service)."]
    assert check_week_limits(one, service.booking, calendar=calendar) == [
        "Semaine du lundi 11 mai 2026 : 1 jour réservé, le minimum est de 3 jours par semaine."]


# --- Speed (prints the figure; no timing assertion) ---------------------------------------------------


def test_month_of_cells_speed(capsys):
    units = [{"code": "matin", "label": "Matin", "kind": "morning", "start": "07:30", "end": "08:30"},
             {"code": "midi", "label": "Midi", "kind": "meal", "start": "11:30", "end": "13:20"},
             {"code": "soir", "label": "Soir", "kind": "evening", "start": "16:30", "end": "18:30",
              "weekdays": ["lundi", "mardi", "jeudi", "vendredi"]}]
    service = make_service(
        units=units, opening={"weekdays": ["lundi", "mardi", "mercredi", "jeudi", "vendredi"],
                              "school_holidays": "closed"},
        booking={"booking_deadline": "J-2 ouvrés 18:00", "cancellation_deadline": "J-1 23:59"},
        pricing={"prices": [{"unit": u["code"], "amount_cents": 100} for u in units]})
    commune = make_commune("A", [{"label": "Pont de l'Ascension", "start": "2026-05-15"}])
    now = paris(2026, 4, 20, 9, 0)
    days = [date(2026, 5, 1) + timedelta(days=i) for i in range(31)]

    def month(calendar):
        cells = []
        for day in days:
            for unit in service.units:
                cells.append(evaluate("book", now=now, day=day, unit=unit, service=service,
                                      period=service.periods[0], calendar=calendar, tz=PARIS))
        return cells

    started = walltime.perf_counter()
    cells = month(ServiceCalendar(service, commune))  # a fresh calendar (per-process caches may be warm)
    cold = walltime.perf_counter() - started
    calendar = ServiceCalendar(service, commune)
    month(calendar)
    runs = 50
    started = walltime.perf_counter()
    for _ in range(runs):
        month(calendar)
    warm = (walltime.perf_counter() - started) / runs
    assert len(cells) == 93 and sum(c.allowed for c in cells) > 0
    with capsys.disabled():
        print(f"\n[booking rules] month of cells, 3 units (93 evaluate calls): "
              f"fresh calendar {cold * 1000:.2f} ms, warm calendar {warm * 1000:.2f} ms")
