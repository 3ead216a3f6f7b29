"""Staff side of booking (/gestion/reservations/): the queue of requests and its decisions,
enrolments and the adhesion paid at the desk, the list of children expected (page, print,
CSV), attendance taking, the simulation of a family's planning, roles, query counts.

The clock is frozen on Monday 7 September 2026, 10:00 in Paris (as in test_services):
alpha's cantine (immediate mode, unit repas, deadline "S-1 jeudi 12:00") and beta's ALSH
(request mode, waiting list, Wednesdays, unit journee, deadline "J-2 ouvrés 18:00",
cancellation "H-48").
"""

from datetime import date, datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test import Client
from marelle.audit.models import AuditEvent
from marelle.backoffice.access import login_url
from marelle.booking.attendance import AttendanceEntry, AttendanceRejected, attendance_record
from marelle.booking.models import Attendance, Booking, Enrolment, Occupancy, Reservation
from marelle.booking.services import Change, enrolment_create, reservation_submit
from marelle.catalog.models import Establishment, Service, Unit
from marelle.families.models import ChildContact, HealthDataAccess

from tests.factories import accept_document, enrol, make_family, make_staff

PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=PARIS)
WEDNESDAY = date(2026, 9, 16)  # beta's ALSH
NEXT_MONDAY = date(2026, 9, 14)  # alpha's cantine
ALPHA, BETA = "alpha.marelle.test", "beta.marelle.test"

QUEUE = "/gestion/reservations/demandes/"
ENROLMENTS = "/gestion/reservations/inscriptions/"
EXPECTED = "/gestion/reservations/presences/"
SIMULATION = "/gestion/reservations/simulation/"
PAGES = [QUEUE, ENROLMENTS, EXPECTED, SIMULATION]

# django-tenants sends "SET search_path" before each query, so N SQL queries count as 2N.
# Measured, the same with 1 or 25 lines: queue 7 SQL (14: host, session, user, services,
# establishments, count, lines joined with their child, unit, service, réservation); expected
# list 12 SQL (24: host, session, user, establishments, units, children, their bookings,
# attendances, guardians, emergency contacts, one insert recording the health-data reads,
# children enrolled without a booking). Bounds leave one query of room.
QUEUE_MAX_QUERIES = 16
EXPECTED_MAX_QUERIES = 26


@pytest.fixture
def clock():
    with time_machine.travel(MONDAY, tick=False) as traveller:
        yield traveller


def signed_in(user, host, tenant) -> Client:
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    connection.set_tenant(tenant)
    return client


@pytest.fixture
def in_beta(beta, clock):
    connection.set_tenant(beta)
    return beta


@pytest.fixture
def in_alpha(alpha, clock):
    connection.set_tenant(alpha)
    return alpha


@pytest.fixture
def beta_staff(in_beta):
    """beta_staff("directeur") -> (client, user) signed in to beta with that role."""
    made = {}

    def build(role="agent"):
        if role not in made:
            user = make_staff(f"{role}@beta.example", role=role)
            made[role] = (signed_in(user, BETA, in_beta), user)
        connection.set_tenant(in_beta)
        return made[role]

    return build


@pytest.fixture
def alpha_staff(in_alpha):
    made = {}

    def build(role="agent"):
        if role not in made:
            user = make_staff(f"{role}@alpha.example", role=role)
            made[role] = (signed_in(user, ALPHA, in_alpha), user)
        connection.set_tenant(in_alpha)
        return made[role]

    return build


def alsh(email, name, *, establishment=None):
    """An accepted ALSH enrolment (beta enrols automatically) of a new family's child."""
    child = make_family(email, last_name=name.upper(), children=(name,)).children.get()
    if establishment is None:
        return enrol(child, "alsh")
    service = Service.objects.get(code="alsh")
    return enrolment_create(actor=None, child=child, service=service, establishment=establishment,
                            period=service.periods.first())


def cantine(email, name):
    child = make_family(email, last_name=name.upper(), children=(name,)).children.get()
    accept_document(child)
    return enrol(child, "cantine")


def book(enrolment, day, unit, action="book"):
    return reservation_submit(actor=None, enrolment=enrolment, changes=[Change(day, unit, action)])


def line_of(reservation) -> Booking:
    return reservation.lines.get()


# --- Queue of requests: request mode end to end -----------------------------------------------


def test_requests_appear_in_the_queue_and_are_accepted_in_bulk(beta_staff):
    ana = book(alsh("a@example.fr", "Ana"), WEDNESDAY, "journee")
    bilal = book(alsh("b@example.fr", "Bilal"), WEDNESDAY, "journee")
    later = book(alsh("c@example.fr", "Chloé"), date(2026, 9, 23), "journee")
    assert {ana.state, bilal.state, later.state} == {Reservation.State.REQUESTED}
    client, staff = beta_staff("agent")

    body = client.get(QUEUE).content.decode()
    assert "3 demandes en attente" in body
    assert "Mercredi 16 septembre 2026" in body and "Mercredi 23 septembre 2026" in body
    assert body.index("Mercredi 16 septembre") < body.index("Mercredi 23 septembre")
    assert body.index("Ana") < body.index("Bilal") < body.index("Chloé")  # by day, then child
    for reservation in (ana, bilal, later):
        assert reservation.number in body
    assert "Accueil de loisirs de Bêta" in body and "Journée" in body and "Dans les délais" in body

    lines = [line_of(ana).pk, line_of(bilal).pk]
    response = client.post(QUEUE, {"decision": "accepter", "lignes": lines})
    assert response.status_code == 302 and response["Location"] == QUEUE
    assert set(Booking.objects.filter(pk__in=lines).values_list("state", flat=True)) == {"accepted"}
    ana.refresh_from_db()
    assert ana.state == Reservation.State.ACCEPTED
    assert Booking.objects.get(pk=lines[0]).decided_by == staff
    assert AuditEvent.objects.filter(action="booking.accepted").count() == 2
    body = client.get(QUEUE).content.decode()
    assert "2 demandes de réservation acceptées." in body
    assert "1 demande en attente" in body and ana.number not in body and later.number in body


def test_a_line_can_be_decided_on_its_own(beta_staff):
    first = book(alsh("a@example.fr", "Ana"), WEDNESDAY, "journee")
    second = book(alsh("b@example.fr", "Bilal"), WEDNESDAY, "journee")
    client, _ = beta_staff("directeur")
    response = client.post(QUEUE, {"accepter_ligne": line_of(first).pk, "lignes": [line_of(second).pk]})
    assert response.status_code == 302
    assert line_of(first).state == "accepted" and line_of(second).state == "requested"


def test_refusal_needs_a_reason_loses_nothing_and_frees_the_place_for_the_waiting_list(
        beta_staff, django_capture_on_commit_callbacks):
    from django.core import mail

    Establishment.objects.filter(code="centre").update(capacity=1)
    first = book(alsh("a@example.fr", "Ana"), WEDNESDAY, "journee")
    waiting = line_of(book(alsh("b@example.fr", "Bilal"), WEDNESDAY, "journee"))
    assert waiting.state == Booking.State.WAITING
    line = line_of(first)
    client, _ = beta_staff("agent")

    response = client.post(f"{QUEUE}?service=alsh", {"decision": "refuser", "lignes": [line.pk], "motif": "  "})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Indiquez le motif du refus : il est communiqué à la famille." in body
    assert 'aria-invalid="true"' in body
    assert f'value="{line.pk}" id="choix-{line.pk}" checked' in body  # the selection is kept
    line.refresh_from_db()
    assert line.state == Booking.State.REQUESTED

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{QUEUE}?service=alsh", {"decision": "refuser", "lignes": [line.pk],
                                                         "motif": "Groupe complet ce jour-là"})
    assert response.status_code == 302 and response["Location"] == f"{QUEUE}?service=alsh"
    line.refresh_from_db()
    waiting.refresh_from_db()
    assert line.state == Booking.State.REFUSED and line.reason == "Groupe complet ce jour-là"
    first.refresh_from_db()
    assert first.state == Reservation.State.REFUSED
    # The place went to the next family on the waiting list: its line is now a request.
    assert waiting.state == Booking.State.REQUESTED
    assert Occupancy.objects.get(day=WEDNESDAY).taken == 1
    by_recipient = {m.to[0]: m for m in mail.outbox}
    assert "Une place s'est libérée" in by_recipient["b@example.fr"].subject
    refusal = by_recipient["a@example.fr"]
    assert refusal.subject.startswith("Demandes refusées") and "Groupe complet ce jour-là" in refusal.body
    body = client.get(QUEUE).content.decode()
    assert "1 demande de réservation refusée." in body and "Bilal" in body


def test_nothing_selected_is_said_at_the_buttons(beta_staff):
    book(alsh("a@example.fr", "Ana"), WEDNESDAY, "journee")
    client, _ = beta_staff("agent")
    response = client.post(QUEUE, {"decision": "accepter", "motif": "gardé"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Cochez au moins une demande." in body and ">gardé</textarea>" in body


def accepted_booking(client, enrolment, day=WEDNESDAY) -> Booking:
    line = line_of(book(enrolment, day, "journee"))
    client.post(QUEUE, {"accepter_ligne": line.pk})
    line.refresh_from_db()
    assert line.state == Booking.State.ACCEPTED
    return line


def test_cancellation_request_is_accepted_and_releases_the_place(beta_staff):
    client, _ = beta_staff("agent")
    booked = accepted_booking(client, alsh("a@example.fr", "Ana"))
    # The state services.reservation_submit leaves a cancellation request in (see the
    # end-to-end test below, blocked by the booking constraint).
    Booking.objects.filter(pk=booked.pk).update(state=Booking.State.CANCEL_REQUESTED)

    body = client.get(QUEUE).content.decode()
    assert "Annulation" in body and booked.reservation.number in body
    response = client.post(QUEUE, {"decision": "accepter", "lignes": [booked.pk]})
    assert response.status_code == 302
    booked.refresh_from_db()
    assert booked.state == Booking.State.CANCELLED
    assert Occupancy.objects.get(day=WEDNESDAY).taken == 0
    assert "1 demande d&#x27;annulation acceptée." in client.get(QUEUE).content.decode()


def test_cancellation_request_refused_keeps_the_booking(beta_staff):
    client, _ = beta_staff("agent")
    booked = accepted_booking(client, alsh("a@example.fr", "Ana"))
    Booking.objects.filter(pk=booked.pk).update(state=Booking.State.CANCEL_REQUESTED)
    client.post(QUEUE, {"refuser_ligne": booked.pk, "motif": "Délai de prévenance"})
    booked.refresh_from_db()
    assert booked.state == Booking.State.ACCEPTED and booked.reason == "Délai de prévenance"
    assert Occupancy.objects.get(day=WEDNESDAY).taken == 1
    assert "1 demande d&#x27;annulation refusée." in client.get(QUEUE).content.decode()


def test_cancellation_request_end_to_end(beta_staff):
    client, _ = beta_staff("agent")
    enrolment = alsh("a@example.fr", "Ana")
    booked = accepted_booking(client, enrolment)
    cancel = book(enrolment, WEDNESDAY, "journee", action="cancel")  # H-48: in time, a request
    booked.refresh_from_db()
    assert booked.state == Booking.State.CANCEL_REQUESTED
    body = client.get(QUEUE).content.decode()
    assert cancel.number in body and f"réservée par {booked.reservation.number}" in body
    client.post(QUEUE, {"decision": "accepter", "lignes": [booked.pk]})
    booked.refresh_from_db()
    assert booked.state == Booking.State.CANCELLED
    assert cancel.lines.get().state == Booking.State.CANCELLED
    assert Occupancy.objects.get(day=WEDNESDAY).taken == 0


def test_queue_filters_by_service_and_establishment(beta_staff):
    alsh_service = Service.objects.get(code="alsh")
    annexe = Establishment.objects.create(service=alsh_service, code="annexe", label="Annexe du Haut", capacity=5)
    centre = Establishment.objects.get(code="centre")
    in_centre = book(alsh("a@example.fr", "Ana", establishment=centre), WEDNESDAY, "journee")
    in_annexe = book(alsh("b@example.fr", "Bilal", establishment=annexe), WEDNESDAY, "journee")
    client, _ = beta_staff("agent")
    body = client.get(QUEUE, {"etablissement": annexe.pk}).content.decode()
    assert in_annexe.number in body and in_centre.number not in body
    body = client.get(QUEUE, {"etablissement": centre.pk, "service": "alsh"}).content.decode()
    assert in_centre.number in body and in_annexe.number not in body
    body = client.get(QUEUE, {"service": "inconnu"}).content.decode()  # an unknown filter is ignored
    assert in_centre.number in body and in_annexe.number in body


def test_late_request_is_flagged(beta_staff):
    # The fixtures' communes take no late booking: the line gets the flags the engine sets.
    line = line_of(book(alsh("a@example.fr", "Ana"), WEDNESDAY, "journee"))
    Booking.objects.filter(pk=line.pk).update(late=True, surcharge_cents=250)
    client, _ = beta_staff("agent")
    body = client.get(QUEUE).content.decode()
    assert "Hors délai" in body and "Supplément 2,50 €" in body


def test_queue_query_count_does_not_grow_with_the_lines(beta_staff, django_assert_max_num_queries):
    client, _ = beta_staff("agent")
    book(alsh("a@example.fr", "Ana"), WEDNESDAY, "journee")
    with django_assert_max_num_queries(QUEUE_MAX_QUERIES):
        assert client.get(QUEUE).status_code == 200
    for index in range(12):
        enrolment = alsh(f"p{index}@example.fr", f"Enfant{index:02d}")
        book(enrolment, WEDNESDAY, "journee")
        book(enrolment, date(2026, 9, 23), "journee")
    with django_assert_max_num_queries(QUEUE_MAX_QUERIES):
        body = client.get(QUEUE).content.decode()
    assert "25 demandes en attente" in body


# --- Enrolments ---------------------------------------------------------------------------------


def pending_enrolment(email, name) -> Enrolment:
    enrolment = alsh(email, name)
    Enrolment.objects.filter(pk=enrolment.pk).update(status=Enrolment.Status.PENDING)
    enrolment.refresh_from_db()
    return enrolment


def test_enrolments_are_accepted_or_refused_with_a_reason(beta_staff):
    accepted = pending_enrolment("a@example.fr", "Ana")
    refused = pending_enrolment("b@example.fr", "Bilal")
    client, staff = beta_staff("directeur")
    body = client.get(ENROLMENTS).content.decode()
    assert "En attente de validation" in body and "Ana ANA" in body and "Bilal BILAL" in body

    assert client.post(f"{ENROLMENTS}{accepted.pk}/accepter/").status_code == 302
    accepted.refresh_from_db()
    assert accepted.status == Enrolment.Status.ACCEPTED and accepted.decided_by == staff

    response = client.post(f"{ENROLMENTS}{refused.pk}/refuser/", {"reason": ""})
    assert response.status_code == 200
    assert "Indiquez le motif du refus" in response.content.decode()
    refused.refresh_from_db()
    assert refused.status == Enrolment.Status.PENDING
    client.post(f"{ENROLMENTS}{refused.pk}/refuser/", {"reason": "Dossier incomplet"})
    refused.refresh_from_db()
    assert refused.status == Enrolment.Status.REFUSED and refused.reason == "Dossier incomplet"
    body = client.get(ENROLMENTS).content.decode()
    assert "Inscription refusée : Bilal BILAL" in body and "Aucune inscription en attente" in body
    # Deciding twice records nothing new.
    client.post(f"{ENROLMENTS}{accepted.pk}/accepter/")
    assert "Inscription déjà traitée." in client.get(ENROLMENTS).content.decode()


def test_adhesion_paid_at_the_desk_opens_booking(alpha_staff):
    from marelle.booking.services import ReservationRejected

    enrolment = cantine("a@example.fr", "Ana")
    Enrolment.objects.filter(pk=enrolment.pk).update(adhesion=Enrolment.Adhesion.AWAITING_PAYMENT,
                                                     adhesion_amount_cents=1700)
    enrolment.refresh_from_db()
    with pytest.raises(ReservationRejected, match="adhésion"):
        book(enrolment, NEXT_MONDAY, "repas")
    agent, _ = alpha_staff("agent")
    body = agent.get(ENROLMENTS).content.decode()
    assert "17,00 €" in body and "Marquer l'adhésion payée (guichet)" not in body
    assert agent.post(f"{ENROLMENTS}{enrolment.pk}/adhesion-payee/").status_code == 403

    regisseur, user = alpha_staff("regisseur")
    body = regisseur.get(ENROLMENTS).content.decode()
    assert "Marquer l'adhésion payée (guichet)" in body
    assert regisseur.post(f"{ENROLMENTS}{enrolment.pk}/adhesion-payee/").status_code == 302
    enrolment.refresh_from_db()
    assert enrolment.adhesion == Enrolment.Adhesion.PAID and enrolment.booking_open
    event = AuditEvent.objects.get(action="enrolment.adhesion_paid")
    assert event.actor == user and event.details["source"] == "guichet"
    assert "Les réservations sont ouvertes" in regisseur.get(ENROLMENTS).content.decode()
    assert book(enrolment, NEXT_MONDAY, "repas").state == Reservation.State.ACCEPTED


# --- Children expected ---------------------------------------------------------------------------


@pytest.fixture
def monday_meals(in_alpha):
    """Two children booked for the cantine on Monday 14, one enrolled without a booking."""
    lea = cantine("lea@example.fr", "Léa")
    tom = cantine("tom@example.fr", "Tom")
    zoe = cantine("zoe@example.fr", "Zoé")
    book(lea, NEXT_MONDAY, "repas")
    book(tom, NEXT_MONDAY, "repas")
    lea.child.diet, lea.child.school_level = "sans_porc", "ce1"
    lea.child.save()
    lea.child.health.pai = True
    lea.child.health.save()
    ChildContact.objects.create(child=tom.child, last_name="Petit", first_name="Jean", relationship="grand-père",
                                phone_1="07 00 00 00 01", is_emergency_contact=True)
    establishment = Establishment.objects.get(code="ecole")
    unit = Unit.objects.get(code="repas")
    return {"lea": lea, "tom": tom, "zoe": zoe, "establishment": establishment, "unit": unit,
            "query": {"etablissement": establishment.pk, "unite": unit.pk, "jour": "2026-09-14"}}


def test_expected_list_shows_the_children_with_diet_pai_and_phones(alpha_staff, monday_meals):
    client, staff = alpha_staff("directeur")  # may read health data (alpha's default roles)
    body = client.get(EXPECTED, monday_meals["query"]).content.decode()
    assert "2 enfants attendus" in body
    assert body.index("LÉA Léa") < body.index("TOM Tom") and "ZOÉ Zoé" not in body.split("<select")[-2]
    assert "Sans porc" in body and "CE1" in body
    assert ">PAI</span>" in body
    assert "Claire LÉA (responsable légal) : 06 12 34 56 78" in body
    assert "Jean Petit (grand-père) : 07 00 00 00 01" in body
    accesses = HealthDataAccess.objects.filter(staff=staff)
    assert sorted(a.child_id for a in accesses) == sorted([monday_meals["lea"].child_id, monday_meals["tom"].child_id])
    assert {a.context for a in accesses} == {"liste des enfants attendus"}


def test_expected_list_hides_pai_from_roles_without_health_access(alpha_staff, monday_meals):
    client, staff = alpha_staff("agent")
    body = client.get(EXPECTED, monday_meals["query"]).content.decode()
    assert "PAI : voir la fiche" in body and ">PAI</span>" not in body
    assert not HealthDataAccess.objects.filter(staff=staff).exists()


def test_requests_and_cancellation_requests_are_flagged_on_the_list(beta_staff):
    requested = book(alsh("a@example.fr", "Ana"), WEDNESDAY, "journee")
    enrolment = alsh("b@example.fr", "Bilal")
    booked = line_of(book(enrolment, WEDNESDAY, "journee"))
    client, _ = beta_staff("agent")
    client.post(QUEUE, {"accepter_ligne": booked.pk})
    Booking.objects.filter(pk=booked.pk).update(state=Booking.State.CANCEL_REQUESTED)
    centre, unit = Establishment.objects.get(code="centre"), Unit.objects.get(code="journee")
    body = client.get(EXPECTED, {"etablissement": centre.pk, "unite": unit.pk, "jour": "2026-09-16"}).content.decode()
    assert "2 enfants attendus, dont 2 demandes non tranchées" in body
    assert "Demande en attente" in body and "Annulation demandée" in body and requested.number in body


def test_expected_list_as_csv_for_french_excel(alpha_staff, monday_meals):
    client, _ = alpha_staff("directeur")
    response = client.get(EXPECTED, {**monday_meals["query"], "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="presences-ecole-repas-2026-09-14.csv"'
    raw = response.content
    assert raw.startswith("\ufeff".encode())
    lines = raw.decode("utf-8-sig").split("\r\n")
    assert lines[0] == ("Nom;Prénom;Date de naissance;Classe;Famille;Réservation;N° de réservation;"
                        "Régime alimentaire;PAI;Téléphones d'urgence;Présence;Motif")
    lea = lines[1].split(";")
    assert lea[:4] == ["LÉA", "Léa", "01/03/2018", "CE1"]
    assert lea[5:10] == ["Réservé", "R2026-000001", "Sans porc", "Oui",
                         "Claire LÉA (responsable légal) : 06 12 34 56 78"]
    tom = lines[2].split(";")
    assert tom[:2] == ["TOM", "Tom"] and tom[8] == "Non" and tom[4] == monday_meals["tom"].child.family.reference
    assert lines[3:] == [""]
    agent, _ = alpha_staff("agent")
    row = agent.get(EXPECTED, {**monday_meals["query"], "format": "csv"}).content.decode("utf-8-sig").split("\r\n")[1]
    assert row.split(";")[8] == "voir la fiche"


def test_printable_version(alpha_staff, monday_meals):
    client, _ = alpha_staff("agent")
    body = client.get(EXPECTED, {**monday_meals["query"], "format": "impression"}).content.decode()
    assert "École d&#x27;Alpha" in body and "lundi 14 septembre 2026" in body
    assert "LÉA Léa" in body and "☐ présent ☐ absent" in body and "<form" not in body.split("<main")[1]


def test_expected_list_query_count_does_not_grow(alpha_staff, monday_meals, django_assert_max_num_queries):
    client, _ = alpha_staff("directeur")
    with django_assert_max_num_queries(EXPECTED_MAX_QUERIES):
        assert client.get(EXPECTED, monday_meals["query"]).status_code == 200
    for index in range(10):
        enrolment = cantine(f"p{index}@example.fr", f"Enfant{index:02d}")
        book(enrolment, NEXT_MONDAY, "repas")
        ChildContact.objects.create(child=enrolment.child, last_name="X", first_name="Y", relationship="tante",
                                    phone_1="0600000000", is_emergency_contact=True)
    with django_assert_max_num_queries(EXPECTED_MAX_QUERIES):
        body = client.get(EXPECTED, monday_meals["query"]).content.decode()
    assert "12 enfants attendus" in body
    with django_assert_max_num_queries(EXPECTED_MAX_QUERIES):
        assert client.get(EXPECTED, {**monday_meals["query"], "format": "csv"}).status_code == 200


def test_unknown_establishment_or_bad_date_is_said_at_the_field(alpha_staff, monday_meals):
    client, _ = alpha_staff("agent")
    body = client.get(EXPECTED, {**monday_meals["query"], "jour": "14/09/2026"}).content.decode()
    assert "Date invalide" in body and 'value="14/09/2026"' in body
    body = client.get(EXPECTED, {**monday_meals["query"], "etablissement": "999999"}).content.decode()
    assert "Établissement inconnu" in body


# --- Attendance ------------------------------------------------------------------------------------


def test_attendance_is_recorded_then_updated_idempotently(alpha_staff, monday_meals, clock):
    clock.move_to(datetime(2026, 9, 14, 13, 30, tzinfo=PARIS))
    client, staff = alpha_staff("agent")
    lea, tom, zoe = (monday_meals[k].child for k in ("lea", "tom", "zoe"))
    form = {**monday_meals["query"], "action": "enregistrer", "enfants": [lea.pk, tom.pk],
            f"statut_{lea.pk}": "present", f"statut_{tom.pk}": "excused", f"motif_{tom.pk}": ""}

    response = client.post(EXPECTED, form)
    assert response.status_code == 200
    body = response.content.decode()
    assert "Tom TOM : indiquez le motif de l&#x27;absence excusée." in body
    assert f'name="statut_{lea.pk}" value="present" checked' in body  # nothing typed is lost
    assert not Attendance.objects.exists()

    form[f"motif_{tom.pk}"] = "Malade (certificat)"
    response = client.post(EXPECTED, form)
    assert response.status_code == 302
    assert {(a.child_id, a.status, a.reason) for a in Attendance.objects.all()} == {
        (lea.pk, "present", ""), (tom.pk, "excused", "Malade (certificat)")}
    assert Attendance.objects.get(child=lea).recorded_by == staff
    assert AuditEvent.objects.filter(action="attendance.recorded").count() == 2

    client.post(EXPECTED, form)  # the same sheet again: nothing changes, nothing is recorded twice
    assert Attendance.objects.count() == 2
    assert AuditEvent.objects.filter(action="attendance.recorded").count() == 2
    assert "Présences déjà à jour" in client.get(EXPECTED, monday_meals["query"]).content.decode()

    form[f"statut_{lea.pk}"] = "absent"
    client.post(EXPECTED, form)
    assert Attendance.objects.get(child=lea).status == "absent" and Attendance.objects.count() == 2
    event = AuditEvent.objects.filter(action="attendance.recorded").latest("pk")
    assert event.details["previous"] == "present" and event.details["status"] == "absent"

    # Zoé is enrolled but has no booking: added as present without one.
    response = client.post(EXPECTED, {**monday_meals["query"], "action": "ajouter", "enfant_sans_reservation": zoe.pk})
    assert response.status_code == 302
    assert Attendance.objects.get(child=zoe).status == Attendance.Status.UNBOOKED
    body = client.get(EXPECTED, monday_meals["query"]).content.decode()
    assert "1 présent sans réservation" in body and "Enfant ajouté comme présent sans réservation" in body


def test_attendance_service_rules(in_alpha, monday_meals, clock):
    staff = make_staff()
    where = {"staff": staff, "establishment": monday_meals["establishment"], "unit": monday_meals["unit"],
             "day": NEXT_MONDAY}
    lea, zoe = monday_meals["lea"].child, monday_meals["zoe"].child
    with pytest.raises(AttendanceRejected, match="jour à venir"):
        attendance_record(**where, entries=[AttendanceEntry(lea.pk, "present")])
    clock.move_to(datetime(2026, 9, 14, 18, 0, tzinfo=PARIS))
    with pytest.raises(AttendanceRejected) as rejected:
        attendance_record(**where, entries=[AttendanceEntry(lea.pk, "unbooked"), AttendanceEntry(zoe.pk, "present")])
    assert rejected.value.errors == {
        lea.pk: "Léa LÉA a une réservation ce jour-là : choisissez « présent ».",
        zoe.pk: "Zoé ZOÉ n'a pas de réservation ce jour-là : choisissez « présent sans réservation ».",
    }
    outsider = make_family("x@example.fr", children=("Noé",)).children.get()
    with pytest.raises(AttendanceRejected, match="n'est pas inscrit"):
        attendance_record(**where, entries=[{"child": outsider.pk, "status": "unbooked"}])
    first = attendance_record(**where, entries=[{"child": lea.pk, "status": "absent", "reason": "Rhume"}])
    again = attendance_record(**where, entries=[{"child": lea.pk, "status": "absent", "reason": "Rhume"}])
    assert (first.created, again.unchanged, again.changed) == (1, 1, 0)
    cleared = attendance_record(**where, entries=[{"child": lea.pk, "status": ""}])
    assert cleared.cleared == 1 and not Attendance.objects.exists()
    assert AuditEvent.objects.filter(action="attendance.cleared").count() == 1


def test_attendance_taking_is_not_for_the_regisseur(alpha_staff, monday_meals, clock):
    clock.move_to(datetime(2026, 9, 14, 13, 30, tzinfo=PARIS))
    client, _ = alpha_staff("regisseur")
    lea = monday_meals["lea"].child
    body = client.get(EXPECTED, monday_meals["query"]).content.decode()
    assert "Le pointage est réservé aux rôles suivants" in body and f'name="statut_{lea.pk}"' not in body
    response = client.post(EXPECTED, {**monday_meals["query"], "enfants": [lea.pk], f"statut_{lea.pk}": "present"})
    assert response.status_code == 403 and not Attendance.objects.exists()


# --- Simulation ------------------------------------------------------------------------------------


def simulate(client, enrolment, when, **params):
    return client.get(SIMULATION, {"famille": enrolment.child.family.reference, "enfant": enrolment.child_id,
                                   "inscription": enrolment.pk, "quand": when, **params}).content.decode()


def cell_of(body, day_label):
    """The text of the row of ``day_label`` ("Lundi 14 septembre")."""
    start = body.index(f"<th scope=\"row\">{day_label}</th>")
    return body[start:body.index("</tr>", start)]


def test_simulation_shows_the_planning_the_family_sees_at_that_instant(alpha_staff):
    enrolment = cantine("a@example.fr", "Ana")
    book(enrolment, date(2026, 9, 15), "repas")
    client, _ = alpha_staff("agent")
    body = simulate(client, enrolment, "2026-09-07T10:00", jour="2026-09-07", vue="quinzaine")
    assert "Planning vu par la famille le <strong>lundi 7 septembre 2026 à 10:00</strong>" in body
    assert "Réservable jusqu&#x27;au jeudi 10 septembre 2026 à 12:00" in cell_of(body, "Lundi 14 septembre")
    assert "Délai dépassé" in cell_of(body, "Mardi 8 septembre")
    assert "Réservé" in cell_of(body, "Mardi 15 septembre")
    assert "Fermé" in cell_of(body, "Mercredi 16 septembre")
    assert "<button" not in body.split('id="grille-titre"')[1]  # read-only

    # "Why can't I book Monday?" — asked on Thursday 10 at 12:05, the deadline has passed.
    body = simulate(client, enrolment, "2026-09-10T12:05", jour="2026-09-14", vue="semaine")
    monday = cell_of(body, "Lundi 14 septembre")
    assert "Verrouillé" in monday
    assert "Délai dépassé (réservable jusqu&#x27;au jeudi 10 septembre 2026 à 12:00)" in monday
    # One minute earlier it still could.
    body = simulate(client, enrolment, "2026-09-10T12:00", jour="2026-09-14", vue="semaine")
    assert "Réservable jusqu&#x27;au jeudi 10 septembre 2026 à 12:00" in cell_of(body, "Lundi 14 septembre")


def test_simulation_picks_the_only_enrolment_and_checks_the_family(alpha_staff):
    enrolment = cantine("a@example.fr", "Ana")
    other = cantine("b@example.fr", "Bob")
    client, _ = alpha_staff("agent")
    body = client.get(SIMULATION, {"famille": enrolment.child.family.reference}).content.decode()
    assert "Ana ANA – Cantine d&#x27;Alpha" in body
    body = client.get(SIMULATION, {"famille": enrolment.child.family_id, "inscription": other.pk}).content.decode()
    assert "Cette inscription n&#x27;est pas celle d&#x27;un enfant de la famille choisie." in body
    body = client.get(SIMULATION, {"famille": "F999999"}).content.decode()
    assert "Famille introuvable." in body
    body = client.get(SIMULATION, {"inscription": enrolment.pk, "quand": "demain"}).content.decode()
    assert "Date et heure invalides" in body


# --- Access --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitor_is_sent_to_login(in_alpha, path):
    response = Client(HTTP_HOST=ALPHA).get(path)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == login_url() and parse_qs(location.query)["next"] == [path]


@pytest.mark.parametrize("path", PAGES)
def test_family_gets_a_403(in_alpha, path):
    family = make_family("claire@example.fr")
    client = signed_in(family.guardians.get().user, ALPHA, in_alpha)
    assert client.get(path).status_code == 403


def test_family_cannot_decide_its_own_request(beta_staff, in_beta):
    enrolment = alsh("a@example.fr", "Ana")
    line = line_of(book(enrolment, WEDNESDAY, "journee"))
    client = signed_in(enrolment.child.family.guardians.get().user, BETA, in_beta)
    assert client.post(QUEUE, {"accepter_ligne": line.pk}).status_code == 403
    assert client.post(f"{ENROLMENTS}{enrolment.pk}/accepter/").status_code == 403
    line.refresh_from_db()
    assert line.state == Booking.State.REQUESTED


def test_regisseur_sees_the_queue_but_does_not_decide(beta_staff):
    line = line_of(book(alsh("a@example.fr", "Ana"), WEDNESDAY, "journee"))
    client, _ = beta_staff("regisseur")
    body = client.get(QUEUE).content.decode()
    assert "Ana" in body and "Accepter la sélection" not in body
    assert "Les décisions sont réservées aux rôles suivants" in body
    assert client.post(QUEUE, {"accepter_ligne": line.pk}).status_code == 403
    enrolment = pending_enrolment("b@example.fr", "Bilal")
    assert client.post(f"{ENROLMENTS}{enrolment.pk}/accepter/").status_code == 403
    line.refresh_from_db()
    assert line.state == Booking.State.REQUESTED
