"""The booking engine against the real database: enrolment, all-or-nothing réservations,
numbering, cancellations, request mode, waiting lists, idempotency."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from marelle.booking.models import Booking, Enrolment, Occupancy, Reservation
from marelle.booking.selectors import planning
from marelle.booking.services import (
    Change,
    EnrolmentRefused,
    ReservationRejected,
    booking_decide,
    enrolment_adhesion_paid,
    enrolment_obstacles,
    reservation_submit,
)
from marelle.catalog.models import Establishment, Service

from tests.factories import accept_document, enrol, make_family, make_staff

PARIS = ZoneInfo("Europe/Paris")
# The clock (conftest) is on Monday 7 September 2026: next week's cantine closes on Thursday 10 at 12:00.
NEXT_WEEK = [date(2026, 9, 14), date(2026, 9, 15), date(2026, 9, 17), date(2026, 9, 18)]  # no Wednesday


@pytest.fixture
def lea(in_alpha, clock):
    family = make_family("claire@example.fr", children=("Léa",))
    child = family.children.get()
    accept_document(child)
    return child


@pytest.fixture
def cantine(lea):
    return enrol(lea, "cantine")


def book(enrolment, days, unit="repas", action="book", **kwargs):
    return reservation_submit(actor=None, enrolment=enrolment,
                              changes=[Change(day, unit, action) for day in days], **kwargs)


def test_a_child_without_its_required_document_is_greyed_out_with_the_reason(in_alpha, clock):
    child = make_family("x@example.fr", children=("Tom",)).children.get()
    service = Service.objects.get(code="cantine")
    assert enrolment_obstacles(child, service, service.periods.first()) == [
        "Pièce manquante ou expirée : Attestation d'assurance – Tom"]
    with pytest.raises(EnrolmentRefused, match="Pièce manquante"):
        enrol(child, "cantine")
    accept_document(child)
    assert enrol(child, "cantine").status == Enrolment.Status.ACCEPTED  # alpha's cantine: automatic


def test_age_outside_the_range_and_incomplete_record(in_alpha, clock):
    family = make_family("y@example.fr", children=("Bébé",))
    baby = family.children.get()
    baby.birth_date, baby.consent_at = date(2025, 1, 1), None
    baby.save()
    reasons = enrolment_obstacles(baby, Service.objects.get(code="cantine"), Service.objects.get(code="cantine").periods.first())
    assert reasons[0].startswith("Âge hors de la tranche du service (de 3 ans à 11 ans")
    assert "Fiche enfant incomplète (à valider avec « J'accepte »)" in reasons


def test_booking_next_week_creates_one_numbered_reservation_priced_by_quotient(cantine):
    reservation = book(cantine, NEXT_WEEK)
    assert reservation.number == "R2026-000001" and reservation.state == Reservation.State.ACCEPTED
    # Quotient 650 not backed by a checked proof: the highest bracket (t2, 5,00 €) applies.
    assert reservation.total_cents == 4 * 500
    assert [b.state for b in reservation.lines.all()] == ["accepted"] * 4
    assert book(cantine, [date(2026, 9, 21)]).number == "R2026-000002"


def test_checked_quotient_gives_the_lower_price(cantine):
    family = cantine.child.family
    family.quotient_verified_until = date(2026, 12, 31)
    family.save()
    assert book(cantine, [NEXT_WEEK[0]]).total_cents == 300


def test_a_reservation_is_all_or_nothing_and_names_the_failed_lines(cantine):
    too_late = date(2026, 9, 8)  # this week: its deadline was Thursday 3 September 12:00
    with pytest.raises(ReservationRejected) as rejected:
        book(cantine, [NEXT_WEEK[0], too_late, date(2026, 9, 16)])
    reasons = [p.reason for p in rejected.value.problems]
    assert reasons[0] == ("Réservation impossible pour le mardi 8 septembre 2026 : le délai "
                          "(jeudi 3 septembre à 12:00, « S-1 jeudi 12:00 ») est dépassé.")
    assert "mercredi 16 septembre 2026" in reasons[1] and "n'ouvre pas le mercredi" in reasons[1]
    assert len(reasons) == 2
    assert not Booking.objects.exists() and not Reservation.objects.exists()


def test_a_refusal_by_the_rules_also_names_the_other_lines_the_database_would_refuse(cantine, lea):
    Establishment.objects.filter(service__code="cantine").update(capacity=1)
    book(cantine, [NEXT_WEEK[1]])
    other = make_family("z@example.fr", children=("Zoé",)).children.get()
    accept_document(other)
    book(enrol(other, "cantine"), [NEXT_WEEK[0]])
    with pytest.raises(ReservationRejected) as rejected:  # full, already booked, closed, free
        book(cantine, [NEXT_WEEK[0], NEXT_WEEK[1], date(2026, 9, 16), NEXT_WEEK[2]])
    assert [(p.change.day, p.rule) for p in rejected.value.problems] == [
        (NEXT_WEEK[0], "full"), (NEXT_WEEK[1], "other"), (date(2026, 9, 16), "closed")]
    assert rejected.value.problems[1].reason == "Repas le 15/09/2026 : déjà réservé ou demandé."
    # Cancellations too: a day not booked is named, a day booked is not.
    changes = [Change(NEXT_WEEK[1], "repas", "cancel"), Change(NEXT_WEEK[3], "repas", "cancel"),
               Change(date(2026, 9, 16), "repas")]
    with pytest.raises(ReservationRejected) as rejected:
        reservation_submit(actor=None, enrolment=cantine, changes=changes)
    assert [(p.change.day, p.reason) for p in rejected.value.problems][1:] == [
        (NEXT_WEEK[3], "Repas le 18/09/2026 : aucune réservation à annuler.")]
    assert rejected.value.problems[0].change.day == date(2026, 9, 16)
    assert Reservation.objects.count() == 2 and Booking.objects.count() == 2


def test_a_retry_refused_by_the_rules_now_still_returns_the_first_reservation(cantine, clock):
    first = book(cantine, NEXT_WEEK[:2], idempotency_key="k-1")
    clock.move_to(datetime(2026, 9, 10, 12, 30, tzinfo=PARIS))  # the deadline has passed since
    again = book(cantine, NEXT_WEEK[:2], idempotency_key="k-1")
    assert again.pk == first.pk and again.replayed
    assert Reservation.objects.count() == 1


def test_closed_days_school_holidays_and_unknown_unit_are_refused(cantine):
    with pytest.raises(ReservationRejected) as rejected:
        book(cantine, [date(2026, 10, 19)])  # Toussaint holidays, zone A
    assert "Vacances scolaires" in rejected.value.problems[0].reason
    with pytest.raises(ReservationRejected, match="Unité « goûter » inconnue"):
        book(cantine, [NEXT_WEEK[0]], unit="goûter")


def test_deadline_both_sides(cantine, clock):
    clock.move_to(datetime(2026, 9, 10, 12, 0, 59, tzinfo=PARIS))
    assert book(cantine, [NEXT_WEEK[0]]).state == "accepted"
    clock.move_to(datetime(2026, 9, 10, 12, 1, tzinfo=PARIS))
    with pytest.raises(ReservationRejected, match="est dépassé"):
        book(cantine, [NEXT_WEEK[1]])


def test_booking_the_same_day_twice_is_refused(cantine):
    book(cantine, [NEXT_WEEK[0]])
    with pytest.raises(ReservationRejected, match="déjà réservé"):
        book(cantine, [NEXT_WEEK[0]])
    assert Booking.objects.filter(state="accepted").count() == 1


def test_idempotent_resubmission_returns_the_first_reservation(cantine):
    first = book(cantine, NEXT_WEEK, idempotency_key="abc-123")
    again = book(cantine, NEXT_WEEK, idempotency_key="abc-123")
    assert again.pk == first.pk
    assert Booking.objects.count() == 4 and Reservation.objects.count() == 1


def test_cancellation_is_a_new_reservation_and_frees_the_place(cantine):
    book(cantine, NEXT_WEEK[:2])
    cancel = book(cantine, [NEXT_WEEK[0]], action="cancel")
    assert cancel.number == "R2026-000002" and cancel.total_cents == -500
    original = Booking.objects.get(day=NEXT_WEEK[0], action="book")
    assert original.state == Booking.State.CANCELLED
    occupancy = Occupancy.objects.get(day=NEXT_WEEK[0])
    assert occupancy.taken == 0 and occupancy.capacity == 50
    with pytest.raises(ReservationRejected, match="aucune réservation à annuler"):
        book(cantine, [NEXT_WEEK[0]], action="cancel")


def test_planning_cells_say_what_and_why(cantine):
    book(cantine, [NEXT_WEEK[0]])
    rows = {row.day: row.cells[0] for row in planning(cantine, date(2026, 9, 7), date(2026, 9, 20))}
    assert rows[NEXT_WEEK[0]].state == "reserve" and rows[NEXT_WEEK[0]].can_cancel
    assert rows[NEXT_WEEK[1]].state == "libre"
    assert rows[NEXT_WEEK[1]].hint == "Réservable jusqu'au jeudi 10 septembre 2026 à 12:00"
    assert rows[NEXT_WEEK[1]].price_cents == 500
    assert rows[date(2026, 9, 8)].state == "verrouille" and "Délai dépassé" in rows[date(2026, 9, 8)].hint
    assert rows[date(2026, 9, 16)].state == "ferme"


def test_planning_query_count_does_not_grow_with_the_days(cantine, django_assert_max_num_queries):
    with django_assert_max_num_queries(16):
        rows = planning(cantine, date(2026, 9, 1), date(2026, 9, 30))
    assert len(rows) == 30


@pytest.fixture
def in_beta(beta):
    connection.set_tenant(beta)
    yield beta


def alsh_child(email, name):
    child = make_family(email, children=(name,)).children.get()
    return enrol(child, "alsh")


def test_request_mode_then_staff_decision(in_beta, clock):
    enrolment = alsh_child("a@example.fr", "Ana")
    wednesday = date(2026, 9, 16)
    reservation = book(enrolment, [wednesday], unit="journee")
    assert reservation.state == Reservation.State.REQUESTED
    line = reservation.lines.get()
    assert line.state == Booking.State.REQUESTED
    staff = make_staff()
    with pytest.raises(Exception, match="motif du refus est obligatoire"):
        booking_decide(staff=staff, booking_ids=[line.pk], accept=False)
    booking_decide(staff=staff, booking_ids=[line.pk], accept=True)
    line.refresh_from_db()
    reservation.refresh_from_db()
    assert line.state == Booking.State.ACCEPTED and reservation.state == Reservation.State.ACCEPTED


def test_waiting_list_and_promotion_of_the_next_family(in_beta, clock, django_capture_on_commit_callbacks):
    from django.core import mail

    Establishment.objects.filter(code="centre").update(capacity=1)
    wednesday = date(2026, 9, 16)
    first = alsh_child("a@example.fr", "Ana")
    second = alsh_child("b@example.fr", "Bilal")
    third = alsh_child("c@example.fr", "Chloé")
    book(first, [wednesday], unit="journee")
    second_line = book(second, [wednesday], unit="journee").lines.get()
    third_line = book(third, [wednesday], unit="journee").lines.get()
    assert (second_line.state, third_line.state) == ("waiting", "waiting")
    assert Occupancy.objects.get(day=wednesday).taken == 1

    with django_capture_on_commit_callbacks(execute=True):
        book(first, [wednesday], unit="journee", action="cancel")  # withdrawing a pending request
    second_line.refresh_from_db()
    third_line.refresh_from_db()
    assert second_line.state == Booking.State.REQUESTED and third_line.state == Booking.State.WAITING
    assert Occupancy.objects.get(day=wednesday).taken == 1
    assert "Une place s'est libérée" in mail.outbox[-1].subject and mail.outbox[-1].to == ["b@example.fr"]


def test_a_waiting_list_takes_the_full_days_of_a_reservation_and_books_the_others(in_beta, clock):
    Establishment.objects.filter(code="centre").update(capacity=1)
    full_day, free_day = date(2026, 9, 16), date(2026, 9, 23)
    book(alsh_child("a@example.fr", "Ana"), [full_day], unit="journee")
    reservation = book(alsh_child("b@example.fr", "Bilal"), [full_day, free_day], unit="journee")
    assert {line.day: line.state for line in reservation.lines.all()} == {full_day: "waiting", free_day: "requested"}
    assert reservation.state == Reservation.State.REQUESTED
    assert [line.day for line in reservation.written_lines] == [full_day, free_day]
    assert {o.day: o.taken for o in Occupancy.objects.all()} == {full_day: 1, free_day: 1}


def test_a_full_day_refuses_the_whole_reservation_and_names_every_line_in_the_way(cantine, lea):
    Establishment.objects.filter(service__code="cantine").update(capacity=1)
    book(cantine, [NEXT_WEEK[1]])
    other = make_family("z@example.fr", children=("Zoé",)).children.get()
    accept_document(other)
    zoe = enrol(other, "cantine")
    book(zoe, [NEXT_WEEK[0]])
    before = {o.day: o.taken for o in Occupancy.objects.all()}
    with pytest.raises(ReservationRejected) as rejected:
        book(cantine, NEXT_WEEK[:3])  # full, already booked, free
    assert [(p.change.day, p.rule, p.reason) for p in rejected.value.problems] == [
        (NEXT_WEEK[0], "full", "Repas le 14/09/2026 : complet, plus de place."),
        (NEXT_WEEK[1], "other", "Repas le 15/09/2026 : déjà réservé ou demandé."),
    ]
    assert {o.day: o.taken for o in Occupancy.objects.all()} == before  # the free day took nothing
    assert Reservation.objects.count() == 2
    assert book(cantine, [NEXT_WEEK[2]]).number == "R2026-000003"  # and no number was spent


def test_full_without_waiting_list_is_refused(cantine, lea):
    Establishment.objects.filter(service__code="cantine").update(capacity=1)
    other = make_family("z@example.fr", children=("Zoé",)).children.get()
    accept_document(other)
    book(cantine, [NEXT_WEEK[0]])
    with pytest.raises(ReservationRejected, match="complet, plus de place"):
        book(enrol(other, "cantine"), [NEXT_WEEK[0]])


def test_adhesion_paid_immediately_gates_booking(cantine, monkeypatch):
    Enrolment.objects.filter(pk=cantine.pk).update(adhesion=Enrolment.Adhesion.AWAITING_PAYMENT,
                                                   adhesion_amount_cents=1700)
    cantine.refresh_from_db()
    with pytest.raises(ReservationRejected, match="l'adhésion doit d'abord être payée"):
        book(cantine, [NEXT_WEEK[0]])
    cell = planning(cantine, NEXT_WEEK[0], NEXT_WEEK[0])[0].cells[0]
    assert cell.state == "verrouille" and "adhésion" in cell.hint
    enrolment_adhesion_paid(actor=make_staff(), enrolment_id=cantine.pk)
    enrolment_adhesion_paid(actor=None, enrolment_id=cantine.pk)  # idempotent
    cantine.refresh_from_db()
    assert book(cantine, [NEXT_WEEK[0]]).state == "accepted"


def test_weekly_limits_from_the_yaml_are_enforced_on_the_planning_as_it_would_be(cantine, families_limits):
    families_limits(max_days_per_week=3)
    with pytest.raises(ReservationRejected) as rejected:
        book(cantine, NEXT_WEEK)  # 4 days
    assert rejected.value.problems[0].reason == ("Semaine du lundi 14 septembre 2026 : 4 jours réservés, "
                                                "le maximum est de 3 jours par semaine.")
    assert book(cantine, NEXT_WEEK[:3]).state == "accepted"
    with pytest.raises(ReservationRejected, match="le maximum est de 3 jours"):
        book(cantine, [NEXT_WEEK[3]])  # counts the days already booked


@pytest.fixture
def families_limits(in_alpha):
    """Change the booking limits of alpha's cantine for one test, as if its YAML said so."""
    from marelle.core import commune as commune_module
    from marelle.core.commune import current_config

    digest = in_alpha.config_digest
    original = current_config()

    def apply(**limits):
        services = [s.model_copy(update={"booking": s.booking.model_copy(update=limits)}) if s.code == "cantine" else s
                    for s in original.services]
        commune_module._by_digest[digest] = original.model_copy(update={"services": services})

    yield apply
    commune_module._by_digest[digest] = original
