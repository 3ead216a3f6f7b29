"""The staff queue of families' change requests: accept applies, refuse needs a reason."""

import pytest
from marelle.families.models import ChangeRequest, Child, HealthDataAccess
from marelle.families.services import child_create, record_change

pytestmark = pytest.mark.usefixtures("with_validation")


def guardian_of(family):
    return family.guardians.get(position=1)


@pytest.fixture
def phone_request(family):
    guardian = guardian_of(family)
    result = record_change(actor=guardian.user, family=family, target="guardian", instance=guardian,
                           data={"phone_mobile": "07 00 00 00 01", "city": "Valence"})
    assert result.outcome == "pending"
    return result.change_request


@pytest.fixture
def health_request(family):
    child = family.children.get(first_name="Léa")
    result = record_change(actor=guardian_of(family).user, family=family, target="health", instance=child.health,
                           data={"pai": True, "pai_details": "Asthme : ventoline dans le cartable"})
    assert result.outcome == "pending"
    return result.change_request


def test_queue_shows_each_field_with_its_french_name_previous_and_new_value(staff_client, phone_request):
    client, _ = staff_client("agent")
    body = client.get("/gestion/demandes/").content.decode()
    assert "1 demande en attente" in body
    assert "Modification d&#x27;un responsable (Claire Martin)" in body
    assert "Téléphone portable" in body and "06 12 34 56 78" in body and "07 00 00 00 01" in body
    assert "Ville" in body and "Alixan" in body and "Valence" in body
    assert "Famille Martin" in body and 'name="reason"' in body


def test_queue_is_oldest_first(staff_client, family, phone_request):
    later = record_change(actor=guardian_of(family).user, family=family, target="family", instance=family,
                          data={"quotient": 480}).change_request
    ChangeRequest.objects.filter(pk=phone_request.pk).update(requested_at=later.requested_at.replace(year=2020))
    client, _ = staff_client("agent")
    body = client.get("/gestion/demandes/").content.decode()
    assert body.index(f'id="demande-{phone_request.pk}"') < body.index(f'id="demande-{later.pk}"')
    assert "Quotient familial" in body and "650" in body and "480" in body


def test_accept_applies_the_change_and_records_who_decided(staff_client, family, phone_request):
    client, agent = staff_client("agent")
    response = client.post(f"/gestion/demandes/{phone_request.pk}/accepter/", follow=True)
    assert response.redirect_chain[-1][0] == "/gestion/demandes/"
    assert "Demande acceptée" in response.content.decode()
    guardian = guardian_of(family)
    assert (guardian.phone_mobile, guardian.city) == ("07 00 00 00 01", "Valence")
    phone_request.refresh_from_db()
    assert phone_request.status == "accepted" and phone_request.decided_by == agent
    assert "Aucune demande en attente" in client.get("/gestion/demandes/").content.decode()


def test_record_is_untouched_until_a_decision(staff_client, family, phone_request):
    guardian = guardian_of(family)
    assert (guardian.phone_mobile, guardian.city) == ("06 12 34 56 78", "Alixan")


def test_refuse_without_reason_shows_the_error_at_the_field_and_changes_nothing(staff_client, family,
                                                                              phone_request):
    client, _ = staff_client("agent")
    response = client.post(f"/gestion/demandes/{phone_request.pk}/refuser/", {"reason": "   "})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Indiquez le motif du refus" in body
    field_id = f"id_refus_{phone_request.pk}_reason"
    assert f'id="{field_id}_error"' in body and 'aria-invalid="true"' in body
    # The request is still there to decide, with what it changes.
    assert "07 00 00 00 01" in body and "Accepter" in body
    phone_request.refresh_from_db()
    assert phone_request.status == "pending" and phone_request.reason == ""
    guardian = guardian_of(family)
    assert (guardian.phone_mobile, guardian.city) == ("06 12 34 56 78", "Alixan")


def test_refuse_with_reason_keeps_the_record_and_stores_the_reason(staff_client, family, phone_request):
    client, agent = staff_client("agent")
    response = client.post(f"/gestion/demandes/{phone_request.pk}/refuser/",
                           {"reason": "Justificatif de domicile manquant"}, follow=True)
    assert "Demande refusée" in response.content.decode()
    phone_request.refresh_from_db()
    assert (phone_request.status, phone_request.reason, phone_request.decided_by) == (
        "refused", "Justificatif de domicile manquant", agent)
    guardian = guardian_of(family)
    assert (guardian.phone_mobile, guardian.city) == ("06 12 34 56 78", "Alixan")


def test_already_decided_request_gets_a_clear_message(staff_client, family, phone_request):
    client, _ = staff_client("agent")
    client.post(f"/gestion/demandes/{phone_request.pk}/refuser/", {"reason": "Non"})
    for action, data in (("accepter", {}), ("refuser", {"reason": "Encore"}), ("refuser", {})):
        response = client.post(f"/gestion/demandes/{phone_request.pk}/{action}/", data, follow=True)
        assert "Cette demande a déjà été traitée (refusée)" in response.content.decode()
    phone_request.refresh_from_db()
    assert (phone_request.status, phone_request.reason) == ("refused", "Non")
    assert guardian_of(family).city == "Alixan"


def test_decision_from_the_family_page_returns_there(staff_client, family, phone_request):
    client, _ = staff_client("agent")
    page = client.get(f"/gestion/familles/{family.pk}/").content.decode()
    assert "Modification d&#x27;un responsable" in page and "Valence" in page
    response = client.post(f"/gestion/demandes/{phone_request.pk}/accepter/",
                           {"next": f"/gestion/familles/{family.pk}/"})
    assert response["Location"] == f"/gestion/familles/{family.pk}/"
    response = client.post(f"/gestion/demandes/{phone_request.pk}/accepter/", {"next": "https://evil.example/"})
    assert response["Location"] == "/gestion/demandes/"


def test_decisions_are_post_only(staff_client, phone_request):
    client, _ = staff_client("agent")
    assert client.get(f"/gestion/demandes/{phone_request.pk}/accepter/").status_code == 405
    assert client.get(f"/gestion/demandes/{phone_request.pk}/refuser/").status_code == 405
    assert client.post("/gestion/demandes/999999/accepter/").status_code == 404
    phone_request.refresh_from_db()
    assert phone_request.status == "pending"


def test_accepting_a_new_child_makes_it_active(staff_client, family):
    child, result = child_create(actor=guardian_of(family).user, family=family,
                                 data={"first_name": "Jules", "last_name": "Martin", "birth_date": "2021-05-04",
                                       "sex": "m"})
    assert child.status == Child.Status.PENDING
    client, _ = staff_client("agent")
    body = client.get("/gestion/demandes/").content.decode()
    assert "Ajout de l&#x27;enfant Jules Martin" in body and "Date de naissance" in body and "04/05/2021" in body
    client.post(f"/gestion/demandes/{result.change_request.pk}/accepter/")
    child.refresh_from_db()
    assert child.status == Child.Status.ACTIVE


# --- Health data in requests --------------------------------------------------------------


def test_agent_sees_that_a_health_request_exists_but_not_its_content(staff_client, family, health_request):
    client, _ = staff_client("agent")
    body = client.get("/gestion/demandes/").content.decode()
    assert "Modification des renseignements médicaux de Léa" in body
    assert "ventoline" not in body and "réservés aux rôles suivants" in body
    assert f"/gestion/demandes/{health_request.pk}/accepter/" not in body
    assert client.post(f"/gestion/demandes/{health_request.pk}/accepter/").status_code == 403
    assert client.post(f"/gestion/demandes/{health_request.pk}/refuser/", {"reason": "x"}).status_code == 403
    health_request.refresh_from_db()
    assert health_request.status == "pending"
    assert not HealthDataAccess.objects.exists()


def test_directeur_reads_and_decides_a_health_request_and_the_read_is_recorded(staff_client, family,
                                                                               health_request):
    client, directeur = staff_client("directeur")
    body = client.get("/gestion/demandes/").content.decode()
    assert "ventoline" in body and "PAI (projet d&#x27;accueil individualisé)" in body
    access = HealthDataAccess.objects.get()
    assert (access.staff, access.child.first_name, access.context) == (directeur, "Léa",
                                                                        "demande de modification")
    client.post(f"/gestion/demandes/{health_request.pk}/accepter/")
    health = family.children.get(first_name="Léa").health
    health.refresh_from_db()
    assert health.pai and health.pai_details.startswith("Asthme")


def test_family_page_records_one_read_per_child_even_with_a_health_request(staff_client, family,
                                                                           health_request):
    client, _ = staff_client("directeur")
    body = client.get(f"/gestion/familles/{family.pk}/").content.decode()
    assert "ventoline" in body
    assert sorted(HealthDataAccess.objects.values_list("child__first_name", "context")) == [
        ("Hugo", "fiche famille"), ("Léa", "fiche famille")]


def test_queue_queries_do_not_grow_with_requests(staff_client, family, django_assert_max_num_queries):
    from tests.factories import make_family

    client, _ = staff_client("directeur")
    families = [family] + [make_family(f"p{i}@example.fr", last_name=f"N{i}") for i in range(5)]

    def file_requests(targets):
        for fam in targets:
            guardian = guardian_of(fam)
            record_change(actor=guardian.user, family=fam, target="guardian", instance=guardian,
                          data={"city": "Romans"})
            health = fam.children.first().health
            record_change(actor=guardian.user, family=fam, target="health", instance=health,
                          data={"doctor_name": "Dr Roux"})

    file_requests(families[:1])
    with django_assert_max_num_queries(QUEUE_MAX_QUERIES) as few:
        client.get("/gestion/demandes/")
    file_requests(families[1:])
    with django_assert_max_num_queries(QUEUE_MAX_QUERIES) as many:
        body = client.get("/gestion/demandes/").content.decode()
    assert "12 demandes en attente" in body
    assert len(many) == len(few)


# Measured: 8 SQL queries (16 with django-tenants' SET search_path before each), health requests
# included; one query of room.
QUEUE_MAX_QUERIES = 18


def test_decided_request_page_shows_the_decision_without_forms(staff_client, phone_request):
    client, _ = staff_client("agent")
    client.post(f"/gestion/demandes/{phone_request.pk}/refuser/", {"reason": "Adresse hors commune"})
    body = client.get(f"/gestion/demandes/{phone_request.pk}/").content.decode()
    assert "Refusée" in body and "Adresse hors commune" in body and "Valence" in body
    assert "/accepter/" not in body and 'name="reason"' not in body
