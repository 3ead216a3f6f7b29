"""Household and child records through the web client: bad input, validation mode, isolation."""

import json

import pytest
from django.test import Client
from marelle.catalog.models import AuthorisationType
from marelle.families.models import ChangeRequest, Child, ChildContact, Family, Guardian
from marelle.families.services import change_request_accept, change_request_refuse

from tests.factories import PASSWORD, make_family, make_staff
from tests.families.conftest import HOST


def page(response) -> str:
    return response.content.decode()


@pytest.fixture
def claire(in_alpha, client):
    family = make_family("claire@example.fr", children=("Léa",))
    client.post("/compte/connexion/", {"username": "claire@example.fr", "password": PASSWORD})
    return family


GUARDIAN = {"r1-civility": "mme", "r1-last_name": "Martin", "r1-first_name": "Claire", "r1-email": "c@example.fr",
            "r1-phone_mobile": "06.12.34.56.78", "r1-address_line": "2 rue des Écoles", "r1-postcode": "26300",
            "r1-city": "alixan", "foyer-situation": "maries", "foyer-allowance_scheme": "caf",
            "foyer-allowance_number": "1234567", "foyer-quotient": "720", "foyer-dependent_children": "2"}


def child_post(**overrides):
    authorisation = AuthorisationType.objects.get(code="photo")
    data = {"enfant-last_name": "Martin", "enfant-first_name": "Tom", "enfant-birth_date": "2019-05-04",
            "enfant-sex": "m", "enfant-school": "École d'Alpha", "enfant-school_level": "ms", "enfant-diet": "",
            "sante-pai": "non", f"autorisations-auth_{authorisation.pk}": "oui", "accord-consent": "on"}
    from marelle.families.models import ALLERGIES, ILLNESSES

    data.update({f"sante-illness_{code}": "non" for code, _ in ILLNESSES})
    data.update({f"sante-allergy_{code}": "non" for code, _ in ALLERGIES})
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_family_record_is_saved_with_normalised_phone_and_official_city(client, claire):
    response = client.post("/famille/informations/", GUARDIAN)
    assert response.status_code == 302
    guardian = Guardian.objects.get(family=claire, position=1)
    assert (guardian.phone_mobile, guardian.city, guardian.postcode) == ("06 12 34 56 78", "Alixan", "26300")
    claire.refresh_from_db()
    assert claire.quotient == 720 and claire.situation == "maries"


@pytest.mark.parametrize("field, value, message", [
    ("r1-phone_mobile", "12345", "Numéro de téléphone invalide"),
    ("r1-postcode", "2630", "Code postal invalide"),
    ("r1-postcode", "00000", "Le code postal 00000 n&#x27;existe pas"),
    ("r1-city", "Valence", "Cette ville ne correspond pas au code postal 26300 (Alixan, "),
    ("r1-last_name", "", "Ce champ est obligatoire"),
    ("foyer-allowance_number", "", "Indiquez votre numéro d&#x27;allocataire"),
])
def test_bad_family_input_is_explained_and_nothing_typed_is_lost(client, claire, field, value, message):
    response = client.post("/famille/informations/", {**GUARDIAN, field: value})
    body = page(response)
    assert response.status_code == 200 and message in body
    assert 'value="2 rue des Écoles"' in body  # what the family typed is still there
    assert Guardian.objects.get(family=claire, position=1).address_line == "1 place de la Mairie"


def test_second_guardian_can_be_added(client, claire):
    second = {"has_second": "1", "r2-civility": "m", "r2-last_name": "Martin", "r2-first_name": "Hugo",
              "r2-phone_mobile": "0698765432", "r2-address_line": "5 rue Haute", "r2-postcode": "75011",
              "r2-city": "Paris"}
    assert client.post("/famille/informations/", {**GUARDIAN, **second}).status_code == 302
    assert Guardian.objects.get(family=claire, position=2).first_name == "Hugo"


def test_child_is_created_with_health_and_authorisations(client, claire):
    response = client.post("/famille/enfants/nouveau/", child_post(**{
        "sante-pai": "oui", "sante-pai_details": "Allergie arachide, trousse d'urgence",
        "sante-allergy_alimentaire": "oui", "sante-allergy_alimentaire_details": "arachide",
        "sante-vaccine_dtp": "on", "sante-vaccine_dtp_last": "2024-02-10"}))
    child = Child.objects.get(family=claire, first_name="Tom")
    assert response["Location"] == f"/famille/enfants/{child.pk}/"
    assert child.status == Child.Status.ACTIVE and child.consent_at is not None
    assert child.health.pai and child.health.allergies == {"alimentaire": {"has": True, "details": "arachide"}}
    assert child.health.vaccinations == {"dtp": {"done": True, "last": "2024-02-10"}}
    assert child.authorisations.get().answer == "oui"


@pytest.mark.parametrize("overrides, message", [
    ({"accord-consent": None}, "Cochez « J&#x27;accepte » pour enregistrer la fiche"),
    ({"sante-pai": "oui"}, "Précisez le PAI"),
    ({"sante-allergy_autre": "oui"}, "Précisez l&#x27;allergie"),
    ({"enfant-birth_date": "2090-01-01"}, "La date de naissance est dans le futur"),
    ({"enfant-diet": "autre"}, "Précisez le régime alimentaire"),
    ({"enfant-first_name": ""}, "Ce champ est obligatoire"),
])
def test_bad_child_input_is_explained_and_kept(client, claire, overrides, message):
    response = client.post("/famille/enfants/nouveau/", child_post(**overrides))
    body = page(response)
    assert response.status_code == 200 and message in body
    assert 'value="École d&#x27;Alpha"' in body
    assert not Child.objects.filter(family=claire, first_name="Tom").exists() or overrides.get("enfant-first_name") == ""


def test_unanswered_authorisation_is_required(client, claire):
    authorisation = AuthorisationType.objects.get(code="photo")
    response = client.post("/famille/enfants/nouveau/", child_post(**{f"autorisations-auth_{authorisation.pk}": None}))
    assert "Ce champ est obligatoire" in page(response)


def test_changes_wait_for_staff_where_the_commune_says_so(client, claire, families_config):
    families_config(record_changes_need_validation=True)
    child = claire.children.get()
    response = client.post(f"/famille/enfants/{child.pk}/modifier/", child_post(**{
        "enfant-first_name": "Léa", "enfant-school": "École Jules Ferry", "enfant-birth_date": "2018-03-01",
        "enfant-sex": "f"}), follow=True)
    assert "sera appliquée après validation" in page(response)
    child.refresh_from_db()
    assert child.school == ""  # unchanged until staff accept
    request = ChangeRequest.objects.get(family=claire, target="child")
    assert request.data["school"] == "École Jules Ferry" and request.status == "pending"
    assert "En attente de validation" in page(client.get(f"/famille/enfants/{child.pk}/"))

    change_request_accept(staff=make_staff(), change_request_id=request.pk)
    child.refresh_from_db()
    assert child.school == "École Jules Ferry"


def test_refused_change_leaves_the_record_and_tells_why(client, claire, families_config,
                                                        django_capture_on_commit_callbacks):
    from django.core import mail

    families_config(record_changes_need_validation=True)
    client.post("/famille/informations/", {**GUARDIAN, "foyer-quotient": "300"})
    request = ChangeRequest.objects.get(family=claire, target="family")
    with pytest.raises(ValueError):
        change_request_refuse(staff=make_staff(), change_request_id=request.pk, reason=" ")
    with django_capture_on_commit_callbacks(execute=True):
        change_request_refuse(staff=make_staff("b@example.fr"), change_request_id=request.pk,
                              reason="Attestation CAF manquante")
    claire.refresh_from_db()
    assert claire.quotient == 650
    assert "Attestation CAF manquante" in mail.outbox[-1].body
    assert "Attestation CAF manquante" in page(client.get("/famille/demandes/"))


def test_new_child_in_validation_mode_is_pending(client, claire, families_config):
    families_config(record_changes_need_validation=True)
    client.post("/famille/enfants/nouveau/", child_post())
    child = Child.objects.get(family=claire, first_name="Tom")
    assert child.status == Child.Status.PENDING
    assert ChangeRequest.objects.get(target="child", action="create").object_id == child.pk


def test_contacts_add_edit_delete(client, claire):
    child = claire.children.get()
    bad = client.post(f"/famille/enfants/{child.pk}/contacts/nouveau/", {
        "last_name": "Roux", "first_name": "Anne", "relationship": "Grand-mère", "phone_1": "abc"})
    assert "Numéro de téléphone invalide" in page(bad) and "Cochez au moins un rôle" in page(bad)
    client.post(f"/famille/enfants/{child.pk}/contacts/nouveau/", {
        "last_name": "Roux", "first_name": "Anne", "relationship": "Grand-mère", "phone_1": "0475000000",
        "is_emergency_contact": "on", "can_pick_up": "on"})
    contact = ChildContact.objects.get(child=child)
    assert contact.phone_1 == "04 75 00 00 00" and contact.can_pick_up
    client.post(f"/famille/enfants/{child.pk}/contacts/{contact.pk}/", {
        "last_name": "Roux", "first_name": "Anne", "relationship": "Grand-mère", "phone_1": "0475000001",
        "is_emergency_contact": "on"})
    contact.refresh_from_db()
    assert contact.phone_1 == "04 75 00 00 01" and not contact.can_pick_up
    client.post(f"/famille/enfants/{child.pk}/contacts/{contact.pk}/supprimer/")
    assert not ChildContact.objects.filter(child=child).exists()


def test_a_family_never_reaches_another_familys_records(client, claire):
    other = make_family("autre@example.fr", last_name="Bernard", children=("Zoé",))
    zoe = other.children.get()
    contact = ChildContact.objects.create(child=zoe, last_name="X", first_name="Y", relationship="Tante",
                                          phone_1="0600000000")
    for path in (f"/famille/enfants/{zoe.pk}/", f"/famille/enfants/{zoe.pk}/modifier/",
                 f"/famille/enfants/{zoe.pk}/contacts/{contact.pk}/"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/famille/enfants/{zoe.pk}/contacts/{contact.pk}/supprimer/").status_code == 404
    mine = claire.children.get()
    assert client.get(f"/famille/enfants/{mine.pk}/contacts/{contact.pk}/").status_code == 404
    assert ChildContact.objects.filter(pk=contact.pk).exists()


def test_session_of_alpha_family_is_nothing_on_beta(client, claire):
    response = client.get("/famille/", HTTP_HOST="beta.marelle.test")
    assert response.status_code == 302


def test_staff_account_has_no_family_space(in_alpha):
    make_staff("agent@example.fr")
    staff = Client(HTTP_HOST=HOST)
    staff.post("/compte/connexion/", {"username": "agent@example.fr", "password": PASSWORD})
    assert staff.get("/famille/").status_code == 403


def test_export_and_closure(client, claire):
    export = client.get("/famille/mes-donnees.json")
    data = json.loads(export.content)
    assert export["Content-Disposition"].startswith("attachment")
    assert data["children"][0]["first_name"] == "Léa" and data["guardians"][0]["last_name"] == "Martin"
    assert data["children"][0]["health"]["allergies"]["alimentaire"]["details"] == "arachide"

    wrong = client.post("/famille/cloture/", {"password": "faux", "confirm": "on"})
    assert "Mot de passe incorrect" in page(wrong)
    done = client.post("/famille/cloture/", {"password": PASSWORD, "confirm": "on"})
    assert "Votre compte est clôturé" in page(done)
    claire.refresh_from_db()
    assert claire.status == Family.Status.CLOSED
    child = claire.children.get()
    assert (child.first_name, child.birth_date.month, child.birth_date.day) == ("Enfant", 1, 1)
    assert not hasattr(Child.objects.get(pk=child.pk), "health") or Child.objects.get(pk=child.pk).health is None
    again = Client(HTTP_HOST=HOST)
    again.post("/compte/connexion/", {"username": "claire@example.fr", "password": PASSWORD})
    assert again.get("/famille/").status_code == 302


def test_home_shows_what_needs_attention_in_a_bounded_number_of_queries(client, claire):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one_child:
        client.get("/famille/")
    for name in ("Tom", "Emma", "Jules"):
        Child.objects.create(family=claire, last_name="Martin", first_name=name, birth_date="2017-01-01", sex="m")
    with CaptureQueriesContext(connection) as four_children:
        response = client.get("/famille/")
    # django-tenants sends a SET search_path before each query: half of these are SETs.
    assert len(four_children) == len(one_child) <= 30
    body = page(response)
    assert "Aucune personne à contacter en cas d&#x27;urgence" in body and "Autorisations à renseigner" in body
    assert body.count("/famille/enfants/") >= 4


def test_child_form_query_count(client, claire, django_assert_max_num_queries):
    child = claire.children.get()
    with django_assert_max_num_queries(18):
        assert client.get(f"/famille/enfants/{child.pk}/modifier/").status_code == 200


def test_postcode_suggestions(client, in_alpha):
    assert client.get("/famille/communes?cp=26300").json() == {"communes": ["Alixan", "Bourg-de-Péage", "Charpey",
                                                                              "Châteauneuf-sur-Isère", "Eymeux",
                                                                              "Jaillans", "Marches", "Rochefort-Samson",
                                                                              "Saint-Vincent-la-Commanderie"]} or \
        "Alixan" in client.get("/famille/communes?cp=26300").json()["communes"]
    assert client.get("/famille/communes?cp=abc").json() == {"communes": []}
