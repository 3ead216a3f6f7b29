"""The booking API (/api/v1/ on a commune's host): enrolments, planning, réservations with
Idempotency-Key, French refusals naming the day and the rule, permissions, OpenAPI.

The clock is frozen on Monday 7 September 2026, 10:00 in Paris (as in test_services):
alpha's cantine (unit « repas », Monday, Tuesday, Thursday, Friday) takes next week's
bookings until Thursday 10 September 12:00.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest
import time_machine
import yaml
from django.core.management import call_command
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from marelle.api.services import token_obtain
from marelle.booking.api import REJECTED, rejection, reservations_with_lines
from marelle.booking.models import Booking, Occupancy, Reservation
from marelle.booking.serializers import (
    ReservationInputSerializer,
    ReservationRejectedSerializer,
    ReservationSerializer,
    plain_changes,
    reservation_data,
)
from marelle.booking.services import Change, LineProblem, ReservationRejected
from rest_framework.test import APIClient

from tests.factories import accept_document, enrol, make_family, make_staff
from tests.support import create_committed_commune, drop_committed_commune, in_own_connection

PARIS = ZoneInfo("Europe/Paris")
MONDAY = datetime(2026, 9, 7, 10, 0, tzinfo=PARIS)
NEXT_WEEK = ["2026-09-14", "2026-09-15", "2026-09-17", "2026-09-18"]  # no Wednesday
ALPHA_HOST = "alpha.marelle.test"
BETA_HOST = "beta.marelle.test"


@pytest.fixture
def clock():
    with time_machine.travel(MONDAY, tick=False) as traveller:
        yield traveller


@pytest.fixture
def in_alpha(alpha, clock):
    connection.set_tenant(alpha)
    return alpha


def token_client(user, host=ALPHA_HOST) -> APIClient:
    client = APIClient(HTTP_HOST=host)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_obtain(user=user).key}")
    return client


@pytest.fixture
def lea(in_alpha):
    child = make_family("claire@example.fr", children=("Léa",)).children.get()
    accept_document(child)
    return child


@pytest.fixture
def cantine(lea):
    return enrol(lea, "cantine")


@pytest.fixture
def api(lea):
    return token_client(lea.family.guardians.get().user)


@pytest.fixture
def other(in_alpha):
    """Another family of the same commune, with its own enrolment and réservation."""
    tom = make_family("autre@example.fr", last_name="Durand", children=("Tom",)).children.get()
    accept_document(tom)
    enrolment = enrol(tom, "cantine")
    client = token_client(tom.family.guardians.get().user)
    response = client.post(reservations_url(enrolment), lines(NEXT_WEEK[:1]), format="json")
    assert response.status_code == 201, response.content
    return {"child": tom, "enrolment": enrolment, "number": response.json()["number"], "client": client}


def reservations_url(enrolment):
    return f"/api/v1/inscriptions/{enrolment.pk}/reservations/"


def planning_url(enrolment, **query):
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/api/v1/inscriptions/{enrolment.pk}/planning/" + (f"?{suffix}" if suffix else "")


def lines(days, unit="repas", action="reserver"):
    return {"lignes": [{"jour": day, "unite": unit, "action": action} for day in days]}


# --- Enrolments ----------------------------------------------------------------------------------


def test_enrolments_of_a_child_with_their_bookable_units(api, lea, cantine):
    response = api.get(f"/api/v1/enfants/{lea.pk}/inscriptions/")
    assert response.status_code == 200
    [enrolment] = response.json()
    assert enrolment["id"] == cantine.pk and enrolment["child"] == lea.pk
    assert enrolment["service"] == {"code": "cantine", "label": "Cantine d'Alpha", "kind": "cantine"}
    assert enrolment["establishment"] == {"code": "ecole", "label": "École d'Alpha"}
    assert enrolment["period"] == {"code": "annee", "label": "Année scolaire", "start": "2026-09-01",
                                   "end": "2027-07-03"}
    assert (enrolment["status"], enrolment["status_label"], enrolment["booking_open"]) == (
        "accepted", "Acceptée", True)
    assert [(u["code"], u["label"]) for u in enrolment["units"]] == [("repas", "Repas")]


def test_a_child_without_enrolment_has_an_empty_list(api, lea):
    response = api.get(f"/api/v1/enfants/{lea.pk}/inscriptions/")
    assert response.status_code == 200 and response.json() == []


# --- Planning ------------------------------------------------------------------------------------


def test_planning_cells_say_what_why_and_how_much(api, cantine):
    api.post(reservations_url(cantine), lines(NEXT_WEEK[:1]), format="json")
    response = api.get(planning_url(cantine, du="2026-09-07", au="2026-09-20"))
    assert response.status_code == 200
    body = response.json()
    assert (body["enrolment"], body["du"], body["au"]) == (cantine.pk, "2026-09-07", "2026-09-20")
    cells = {cell["day"]: cell for cell in body["cells"]}
    assert len(body["cells"]) == 14 and {c["unit"] for c in body["cells"]} == {"repas"}
    assert cells["2026-09-15"] == {
        "day": "2026-09-15", "unit": "repas", "unit_label": "Repas", "state": "libre", "label": "Libre",
        "hint": "Réservable jusqu'au jeudi 10 septembre 2026 à 12:00", "can_book": True, "can_cancel": False,
        "price_cents": 500, "start": None, "end": None}
    booked = cells["2026-09-14"]
    assert (booked["state"], booked["label"], booked["can_cancel"], booked["can_book"]) == (
        "reserve", "Réservé", True, False)
    assert booked["hint"] == "Annulable jusqu'au jeudi 10 septembre 2026 à 12:00"
    late = cells["2026-09-08"]
    assert (late["state"], late["label"], late["can_book"]) == ("verrouille", "Verrouillé", False)
    assert late["hint"].startswith("Délai dépassé")
    assert cells["2026-09-16"]["state"] == "ferme" and cells["2026-09-16"]["label"] == "Fermé"


def test_planning_defaults_to_four_weeks_from_today(api, cantine):
    body = api.get(planning_url(cantine)).json()
    assert (body["du"], body["au"]) == ("2026-09-07", "2026-10-04")
    assert len(body["cells"]) == 28


def test_planning_range_is_at_most_62_days(api, cantine):
    assert api.get(planning_url(cantine, du="2026-09-01", au="2026-11-01")).status_code == 200  # 62 days
    response = api.get(planning_url(cantine, du="2026-09-01", au="2026-11-02"))
    assert response.status_code == 400
    assert response.json() == {"au": ["Du 01/09/2026 au 02/11/2026 : 63 jours demandés, 62 au plus par appel."]}


@pytest.mark.parametrize(("query", "errors"), [
    ({"du": "2026-09-20", "au": "2026-09-07"},
     {"au": ["Le dernier jour (07/09/2026) précède le premier (20/09/2026)."]}),
    ({"du": "07/09/2026"},
     {"du": ["« 07/09/2026 » n'est pas une date valide : format attendu AAAA-MM-JJ (par exemple 2026-09-14)."]}),
    ({"du": "2026-09-07", "au": "2026-02-30"},
     {"au": ["« 2026-02-30 » n'est pas une date valide : format attendu AAAA-MM-JJ (par exemple 2026-09-14)."]}),
])
def test_planning_bad_range_is_a_french_400(api, cantine, query, errors):
    response = api.get(planning_url(cantine, **query))
    assert response.status_code == 400
    assert response.json() == errors


# --- Submitting a réservation ---------------------------------------------------------------------


def test_booking_a_week_creates_one_numbered_reservation(api, cantine, lea):
    response = api.post(reservations_url(cantine), lines(NEXT_WEEK), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["number"] == "R2026-000001"
    assert response["Location"] == "/api/v1/reservations/R2026-000001/"
    assert (body["state"], body["state_label"], body["total_cents"]) == ("accepted", "Acceptée", 2000)
    assert (body["child"], body["enrolment"], body["service"], body["period"]) == (
        lea.pk, cantine.pk, "Cantine d'Alpha", "Année scolaire")
    assert [(line["day"], line["unit"], line["action"], line["state"], line["unit_price_cents"])
            for line in body["lines"]] == [(day, "repas", "book", "accepted", 500) for day in NEXT_WEEK]
    assert body["lines"][0]["state_label"] == "Réservé"
    assert Booking.objects.filter(child=lea, state="accepted").count() == 4
    assert Occupancy.objects.get(day=date(2026, 9, 14)).taken == 1


def test_cancelling_is_a_new_reservation(api, cantine):
    api.post(reservations_url(cantine), lines(NEXT_WEEK[:2]), format="json")
    response = api.post(reservations_url(cantine), lines(NEXT_WEEK[:1], action="annuler"), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["number"], body["total_cents"]) == ("R2026-000002", -500)
    assert [(line["action"], line["state"]) for line in body["lines"]] == [("cancel", "cancelled")]
    assert Occupancy.objects.get(day=date(2026, 9, 14)).taken == 0


def test_the_hand_built_answers_are_the_serializers(api, cantine, lea):
    # reservation_data() is what the endpoints answer; ReservationSerializer is what the
    # OpenAPI schema describes: they must never drift apart.
    created = api.post(reservations_url(cantine), lines(NEXT_WEEK), format="json", HTTP_IDEMPOTENCY_KEY="k")
    replayed = api.post(reservations_url(cantine), lines(NEXT_WEEK), format="json", HTTP_IDEMPOTENCY_KEY="k")
    stored = reservations_with_lines().get(number=created.json()["number"])
    assert created.json() == replayed.json() == ReservationSerializer(stored).data
    api.post(reservations_url(cantine), lines(NEXT_WEEK[:1], action="annuler"), format="json")
    stored = list(reservations_with_lines().filter(child=lea).order_by("pk"))
    assert len(stored) == 2
    for reservation in stored:
        assert reservation_data(reservation) == ReservationSerializer(reservation).data

    # Crèche times, a late surcharge, a refusal reason, a payment due, an instant in UTC.
    reservation = Reservation(number="R2026-000009", child_id=lea.pk, enrolment_id=cantine.pk, state="partial",
                              total_cents=-150, created_at=datetime(2026, 3, 29, 0, 30, tzinfo=ZoneInfo("UTC")))
    reservation.service_label, reservation.period_label = "Multi-accueil", "Année 2026"
    line = Booking(pk=7, day=date(2026, 3, 30), action="book", state="cancel_requested", start_time=time(8, 30),
                   end_time=time(17, 0), unit_price_cents=1234, surcharge_cents=100, late=True, reason="Complet")
    line.unit_code, line.unit_label = "accueil", "Accueil"
    unknown = Booking(pk=8, day=date(2026, 3, 31), action="book", state="archived")
    unknown.unit_code, unknown.unit_label = "accueil", "Accueil"
    reservation.line_list = [line, unknown]
    reservation.payment_due = {"amount_cents": 600, "pay_before": datetime(2026, 3, 29, 10, 0, tzinfo=ZoneInfo("UTC")),
                               "url": "http://alpha.marelle.test/factures/a-payer/"}
    assert reservation_data(reservation) == ReservationSerializer(reservation).data
    assert reservation_data(reservation)["created_at"] == "2026-03-29T01:30:00+01:00"

    refused = ReservationRejected([LineProblem(Change(date(2026, 9, 14), "repas"), "complet", "full"),
                                   LineProblem(Change(date(2026, 9, 15), "repas", "cancel"), "rien à annuler")])
    lines_sent = [{"jour": date(2026, 9, 14), "unite": "repas", "action": "reserver", "motif": "complet"},
                  {"jour": date(2026, 9, 15), "unite": "repas", "action": "annuler", "motif": "rien à annuler"}]
    assert rejection(refused).data == ReservationRejectedSerializer({"detail": REJECTED, "lignes": lines_sent}).data


PLAIN_BODIES = [
    lines(NEXT_WEEK),
    lines(NEXT_WEEK[:1], action="annuler"),
    {"lignes": [{"jour": "2026-09-14", "unite": "repas"}]},  # « reserver » by default
    {"lignes": [{"jour": "2026-09-14", "unite": "repas", "debut": None, "fin": None}]},
]
OTHER_BODIES = [  # read or refused by the serializer itself
    {"lignes": [{"jour": "2026-9-14", "unite": "repas"}]},
    {"lignes": [{"jour": "2026-02-30", "unite": "repas"}]},
    {"lignes": [{"jour": "2026-09-14", "unite": " repas "}]},
    {"lignes": [{"jour": "2026-09-14", "unite": ""}]},
    {"lignes": [{"jour": "2026-09-14", "unite": "x" * 41}]},
    {"lignes": [{"jour": "2026-09-14", "unite": "accueil", "debut": "08:30", "fin": "17:00"}]},
    {"lignes": [{"jour": "2026-09-14", "unite": "repas", "action": "supprimer"}]},
    {"lignes": [{"jour": "2026-09-14", "unite": "repas", "action": ["reserver"]}]},
    {"lignes": [{"jour": 20260914, "unite": "repas"}]},
    {"lignes": [{"jour": "2026-09-14", "unite": 7}]},
    {"lignes": [{"jour": "2026-09-14", "unite": "repas", "couleur": "bleu"}]},
    {"lignes": [{"unite": "repas"}]},
    {"lignes": []}, {"lignes": "2026-09-14"}, {"lignes": ["2026-09-14"]}, {"lignes": [], "autre": 1}, {}, [],
    {"lignes": [{"jour": "2026-09-14", "unite": "repas"}] * 401},
]


@pytest.mark.parametrize("body", PLAIN_BODIES)
def test_plain_submissions_are_read_directly_as_the_serializer_reads_them(body):
    serializer = ReservationInputSerializer(data=body)
    assert serializer.is_valid(), serializer.errors
    assert plain_changes(body) == serializer.changes()


@pytest.mark.parametrize("body", OTHER_BODIES)
def test_anything_else_is_left_to_the_serializer(body):
    assert plain_changes(body) is None


def test_reservation_history_and_detail(api, cantine, lea, clock):
    api.post(reservations_url(cantine), lines(NEXT_WEEK[:2]), format="json")
    clock.shift(60)
    api.post(reservations_url(cantine), lines(NEXT_WEEK[2:]), format="json")
    history = api.get(f"/api/v1/enfants/{lea.pk}/reservations/")
    assert history.status_code == 200
    assert [r["number"] for r in history.json()] == ["R2026-000002", "R2026-000001"]
    assert [line["day"] for line in history.json()[1]["lines"]] == NEXT_WEEK[:2]
    detail = api.get("/api/v1/reservations/R2026-000002/")
    assert detail.status_code == 200
    assert detail.json() == history.json()[0]
    missing = api.get("/api/v1/reservations/R2026-999999/")
    assert missing.status_code == 404 and missing.json() == {"detail": "Réservation introuvable"}


def test_submission_statement_count_is_bounded(api, cantine):
    # Token with its family and the enrolment with its units, then one statement taking
    # every place and writing the number, réservation, lines and audit event (on its own:
    # no BEGIN or COMMIT in production): two, whatever the lines, families or communes.
    # (Not counted: the host's commune, cached in production; django-tenants' "SET
    # search_path"; the savepoints the test's own transaction turns BEGIN/COMMIT into.)
    not_counted = ("SET search_path", "SAVEPOINT", "RELEASE SAVEPOINT", 'SELECT "tenants_domain"')
    for days in (NEXT_WEEK[:1], NEXT_WEEK[1:]):
        with CaptureQueriesContext(connection) as queries:
            response = api.post(reservations_url(cantine), lines(days), format="json")
        assert response.status_code == 201
        statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(not_counted)]
        assert len(statements) == 2, "\n".join(statements)


# --- Idempotency ------------------------------------------------------------------------------------


def test_same_idempotency_key_twice_returns_the_first_reservation(api, cantine):
    first = api.post(reservations_url(cantine), lines(NEXT_WEEK), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = api.post(reservations_url(cantine), lines(NEXT_WEEK), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201 and again.status_code == 200
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert again.json() == first.json()
    assert Reservation.objects.count() == 1 and Booking.objects.count() == 4


def test_a_new_key_for_the_same_days_is_refused_as_already_booked(api, cantine):
    api.post(reservations_url(cantine), lines(NEXT_WEEK[:2]), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = api.post(reservations_url(cantine), lines(NEXT_WEEK[:2]), format="json",
                        HTTP_IDEMPOTENCY_KEY="k-2")
    assert response.status_code == 422
    assert response.json()["lignes"] == [
        {"jour": "2026-09-14", "unite": "repas", "action": "reserver",
         "motif": "Repas le 14/09/2026 : déjà réservé ou demandé."},
        {"jour": "2026-09-15", "unite": "repas", "action": "reserver",
         "motif": "Repas le 15/09/2026 : déjà réservé ou demandé."}]
    assert Reservation.objects.count() == 1 and Booking.objects.count() == 2


def test_a_key_reused_for_another_request_is_a_409(api, cantine):
    api.post(reservations_url(cantine), lines(NEXT_WEEK[:1]), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    response = api.post(reservations_url(cantine), lines(NEXT_WEEK[1:2]), format="json",
                        HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 409
    assert "déjà servi pour une autre demande (réservation R2026-000001)" in response.json()["detail"]
    assert Booking.objects.count() == 1


def test_a_refused_submission_keeps_its_key_free_for_the_retry(api, cantine, clock):
    # Rejected: nothing is stored, so the same key may carry the corrected request.
    late = api.post(reservations_url(cantine), lines(["2026-09-08"]), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert late.status_code == 422
    retry = api.post(reservations_url(cantine), lines(NEXT_WEEK[:1]), format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert retry.status_code == 201


def test_keys_belong_to_their_account(api, cantine, other):
    # The other family used no key; the same key string from two accounts is two requests.
    mine = api.post(reservations_url(cantine), lines(NEXT_WEEK[1:2]), format="json", HTTP_IDEMPOTENCY_KEY="k")
    theirs = other["client"].post(reservations_url(other["enrolment"]), lines(NEXT_WEEK[1:2]), format="json",
                                  HTTP_IDEMPOTENCY_KEY="k")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["number"] != theirs.json()["number"]


def test_a_key_longer_than_80_characters_is_refused(api, cantine):
    response = api.post(reservations_url(cantine), lines(NEXT_WEEK[:1]), format="json",
                        HTTP_IDEMPOTENCY_KEY="x" * 81)
    assert response.status_code == 400
    assert response.json() == {"Idempotency-Key": ["La clé ne doit pas dépasser 80 caractères (81 reçus)."]}
    assert not Reservation.objects.exists()


# --- Refusals: the day and the rule, nothing saved ---------------------------------------------------


@pytest.mark.parametrize(("line", "motif"), [
    ({"jour": "2026-09-14", "unite": "goûter"}, "Unité « goûter » inconnue pour ce service."),
    ({"jour": "2026-09-16", "unite": "repas"},
     "Réservation impossible pour le mercredi 16 septembre 2026 — Le service n'ouvre pas le mercredi."),
    ({"jour": "2026-10-19", "unite": "repas"},
     "Réservation impossible pour le lundi 19 octobre 2026 — Vacances scolaires (zone A) : vacances de la "
     "Toussaint."),
    ({"jour": "2026-09-08", "unite": "repas"},
     "Réservation impossible pour le mardi 8 septembre 2026 : le délai (jeudi 3 septembre à 12:00, "
     "« S-1 jeudi 12:00 ») est dépassé."),
    ({"jour": "2027-07-05", "unite": "repas"},
     "Réservation impossible pour le lundi 5 juillet 2027 : ce jour est hors de la période « Année scolaire » "
     "(du 1er septembre 2026 au 3 juillet 2027)."),
    ({"jour": "2026-09-04", "unite": "repas"}, "Réservation impossible pour le vendredi 4 septembre 2026 : ce jour "
                                               "est passé."),
    ({"jour": "2026-09-14", "unite": "repas", "action": "annuler"},
     "Repas le 14/09/2026 : aucune réservation à annuler."),
])
def test_each_refused_line_names_its_day_and_rule(api, cantine, line, motif):
    response = api.post(reservations_url(cantine), {"lignes": [line]}, format="json")
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["detail"].startswith("Réservation refusée : aucune ligne n'a été enregistrée.")
    assert body["lignes"] == [{"jour": line["jour"], "unite": line["unite"],
                               "action": line.get("action", "reserver"), "motif": motif}]
    assert not Reservation.objects.exists() and not Booking.objects.exists()


def test_one_bad_line_refuses_the_whole_reservation_and_only_it_is_named(api, cantine):
    body = {"lignes": [{"jour": "2026-09-14", "unite": "repas"}, {"jour": "2026-09-08", "unite": "repas"},
                       {"jour": "2026-09-15", "unite": "repas"}, {"jour": "2026-09-16", "unite": "repas"}]}
    response = api.post(reservations_url(cantine), body, format="json")
    assert response.status_code == 422
    refused = response.json()["lignes"]
    assert [line["jour"] for line in refused] == ["2026-09-08", "2026-09-16"]
    assert "mardi 8 septembre 2026" in refused[0]["motif"] and "délai" in refused[0]["motif"]
    assert "mercredi 16 septembre 2026" in refused[1]["motif"]
    assert not Booking.objects.exists()
    # Correcting the request (without the refused days) books the rest.
    fixed = {"lignes": [body["lignes"][0], body["lignes"][2]]}
    assert api.post(reservations_url(cantine), fixed, format="json").status_code == 201


def test_a_full_day_is_refused_by_name(api, cantine, other):
    from marelle.catalog.models import Establishment

    Establishment.objects.filter(code="ecole").update(capacity=1)  # Tom took the place on the 14th
    response = api.post(reservations_url(cantine), lines(NEXT_WEEK[:1]), format="json")
    assert response.status_code == 422
    assert response.json()["lignes"][0]["motif"] == "Repas le 14/09/2026 : complet, plus de place."


def test_booking_closed_until_the_adhesion_is_paid(api, cantine):
    from marelle.booking.models import Enrolment

    Enrolment.objects.filter(pk=cantine.pk).update(adhesion=Enrolment.Adhesion.AWAITING_PAYMENT)
    response = api.post(reservations_url(cantine), lines(NEXT_WEEK[:2]), format="json")
    assert response.status_code == 422
    assert {line["motif"] for line in response.json()["lignes"]} == {
        "Réservations fermées : l'adhésion doit d'abord être payée."}


@pytest.mark.parametrize(("body", "errors"), [
    ({"lignes": [{"jour": "2026-02-30", "unite": "repas"}]},
     {"lignes": {"0": {"jour": ["« 2026-02-30 » n'est pas une date valide : format attendu AAAA-MM-JJ "
                                 "(par exemple 2026-09-14)."]}}}),
    ({"lignes": [{"jour": "2026-09-14", "unite": "repas"}, {"jour": "14/09/2026", "unite": "repas"}]},
     {"lignes": {"1": {"jour": ["« 14/09/2026 » n'est pas une date valide : format attendu AAAA-MM-JJ "
                                "(par exemple 2026-09-14)."]}}}),
    ({"lignes": [{"jour": "2026-09-14", "unite": "repas", "action": "supprimer"}]},
     {"lignes": {"0": {"action": ["Action « supprimer » inconnue : « reserver » ou « annuler »."]}}}),
    ({"lignes": [{"jour": "2026-09-14", "unite": "repas", "debut": "8h30"}]},
     {"lignes": {"0": {"debut": ["« 8h30 » n'est pas une heure valide : format attendu HH:MM "
                                 "(par exemple 08:30)."]}}}),
    ({"lignes": [{"day": "2026-09-14", "unite": "repas"}]},
     {"lignes": {"0": {"day": ["Champ inconnu (champs attendus : jour, unite, action, debut, fin)."]}}}),
    ({"lignes": [{"unite": "repas"}]}, {"lignes": {"0": {"jour": ["Ce champ est obligatoire."]}}}),
    ({"lignes": "2026-09-14"}, {"lignes": ["Attendait une liste d'éléments mais a reçu «\xa0str\xa0»."]}),
    ({"lignes": []}, {"lignes": ["Cette liste ne peut pas être vide."]}),
    ({}, {"lignes": ["Ce champ est obligatoire."]}),
])
def test_malformed_input_is_a_french_400_at_the_field(api, cantine, body, errors):
    response = api.post(reservations_url(cantine), body, format="json")
    assert response.status_code == 400
    assert response.json() == errors
    assert not Reservation.objects.exists()


# --- Permissions -----------------------------------------------------------------------------------------


def test_another_familys_child_enrolment_and_reservation_are_404(api, cantine, other):
    tom, enrolment = other["child"], other["enrolment"]
    for path in (f"/api/v1/enfants/{tom.pk}/inscriptions/", f"/api/v1/enfants/{tom.pk}/reservations/"):
        response = api.get(path)
        assert response.status_code == 404 and response.json() == {"detail": "Enfant introuvable"}
    assert api.get(planning_url(enrolment)).json() == {"detail": "Inscription introuvable"}
    response = api.post(reservations_url(enrolment), lines(NEXT_WEEK[1:2]), format="json")
    assert response.status_code == 404 and response.json() == {"detail": "Inscription introuvable"}
    response = api.get(f"/api/v1/reservations/{other['number']}/")
    assert response.status_code == 404 and response.json() == {"detail": "Réservation introuvable"}
    assert Booking.objects.filter(child=tom).count() == 1  # only Tom's own booking


def endpoints(child, enrolment):
    return [("get", f"/api/v1/enfants/{child.pk}/inscriptions/"),
            ("get", f"/api/v1/enfants/{child.pk}/reservations/"),
            ("get", planning_url(enrolment)),
            ("post", reservations_url(enrolment)),
            ("get", "/api/v1/reservations/R2026-000001/")]


def test_anonymous_gets_401(cantine, lea):
    client = APIClient(HTTP_HOST=ALPHA_HOST)
    for method, path in endpoints(lea, cantine):
        response = getattr(client, method)(path, lines(NEXT_WEEK[:1]) if method == "post" else None,
                                           format="json")
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"] == "Token"
    assert not Booking.objects.exists()


def test_staff_get_403(cantine, lea):
    client = token_client(make_staff(role="administrateur"))
    for method, path in endpoints(lea, cantine):
        response = getattr(client, method)(path, lines(NEXT_WEEK[:1]) if method == "post" else None,
                                           format="json")
        assert response.status_code == 403, path
        assert response.json() == {"detail": "Cet espace est réservé aux familles."}
    assert not Booking.objects.exists()


def test_a_token_of_one_commune_means_nothing_in_another(api, cantine, beta):
    response = api.get(f"/api/v1/enfants/{cantine.child_id}/inscriptions/", HTTP_HOST=BETA_HOST)
    assert response.status_code == 401


def test_session_authentication_needs_the_csrf_token_to_book(cantine, lea):
    client = APIClient(HTTP_HOST=ALPHA_HOST, enforce_csrf_checks=True)
    client.force_login(lea.family.guardians.get().user)
    assert client.get(f"/api/v1/enfants/{lea.pk}/inscriptions/").status_code == 200
    response = client.post(reservations_url(cantine), lines(NEXT_WEEK[:1]), format="json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert not Booking.objects.exists()


# --- A retry racing its first attempt, on real parallel connections ----------------------------------------


@pytest.fixture
def committed_family(db):
    with time_machine.travel(MONDAY, tick=False):
        commune = create_committed_commune("courseapi")

        def populate():
            connection.set_tenant(commune)
            child = make_family("course@example.fr", children=("Rita",)).children.get()
            accept_document(child)
            enrolment = enrol(child, "cantine")
            return enrolment.pk, token_obtain(user=child.family.guardians.get().user).key

        enrolment_id, token = in_own_connection(populate)
        try:
            yield commune, enrolment_id, token
        finally:
            drop_committed_commune(commune)


def test_the_same_key_sent_six_times_at_once_books_once(committed_family):
    commune, enrolment_id, token = committed_family
    attempts = 6
    barrier = threading.Barrier(attempts)

    def send(_):
        try:
            client = APIClient(HTTP_HOST="courseapi.marelle.test")
            client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
            barrier.wait(timeout=30)
            response = client.post(f"/api/v1/inscriptions/{enrolment_id}/reservations/", lines(NEXT_WEEK),
                                   format="json", HTTP_IDEMPOTENCY_KEY="retry-42")
            return response.status_code, response.json().get("number")
        finally:
            connections.close_all()

    with time_machine.travel(MONDAY, tick=False), ThreadPoolExecutor(attempts) as pool:
        results = list(pool.map(send, range(attempts)))
    assert sorted(code for code, _ in results) == [200] * (attempts - 1) + [201]
    assert len({number for _, number in results}) == 1

    def check():
        connection.set_tenant(commune)
        assert Reservation.objects.count() == 1
        assert Booking.objects.filter(state="accepted").count() == 4
        assert Occupancy.objects.get(day=date(2026, 9, 14)).taken == 1

    in_own_connection(check)


# --- OpenAPI -------------------------------------------------------------------------------------------------

PATHS = {
    "/api/v1/enfants/{child_id}/inscriptions/": {"get": {"200", "401", "403", "404"}},
    "/api/v1/enfants/{child_id}/reservations/": {"get": {"200", "401", "403", "404"}},
    "/api/v1/inscriptions/{enrolment_id}/planning/": {"get": {"200", "400", "401", "403", "404"}},
    "/api/v1/inscriptions/{enrolment_id}/reservations/": {
        "post": {"200", "201", "400", "401", "403", "404", "409", "422"}},
    "/api/v1/reservations/{number}/": {"get": {"200", "401", "403", "404"}},
}


def test_openapi_schema_validates_and_describes_the_booking_api(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--urlconf", "marelle.urls_tenant",
                 "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    for path, methods in PATHS.items():
        assert set(schema["paths"][path]) == set(methods), path
        for method, responses in methods.items():
            operation = schema["paths"][path][method]
            assert operation["tags"][0] in {"Inscriptions", "Planning", "Réservations"}
            assert operation["summary"] and operation["operationId"]
            assert set(operation["responses"]) == responses
            assert {"tokenAuth": []} in operation["security"]
    submit = schema["paths"]["/api/v1/inscriptions/{enrolment_id}/reservations/"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReservationInput"}
    assert {"in": "header", "name": "Idempotency-Key"}.items() <= next(
        p for p in submit["parameters"] if p["name"] == "Idempotency-Key").items()
    line = schema["components"]["schemas"]["ReservationLineInput"]
    assert set(line["properties"]) == {"jour", "unite", "action", "debut", "fin"}
    assert set(line["required"]) == {"jour", "unite"}
    rejected = submit["responses"]["422"]["content"]["application/json"]["schema"]
    assert rejected == {"$ref": "#/components/schemas/ReservationRejected"}
    planning_params = {p["name"] for p in schema["paths"]["/api/v1/inscriptions/{enrolment_id}/planning/"]["get"][
        "parameters"]}
    assert planning_params == {"enrolment_id", "du", "au"}
    cell = schema["components"]["schemas"]["PlanningCell"]["properties"]
    assert {"day", "unit", "state", "label", "hint", "can_book", "can_cancel", "price_cents"} <= set(cell)
