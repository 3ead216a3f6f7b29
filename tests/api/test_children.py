"""Children: list, create, identity, health, contacts, authorisations."""

from datetime import date

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from marelle.audit.models import AuditEvent
from marelle.catalog.models import AuthorisationType
from marelle.families.models import (
    ChangeRequest,
    Child,
    ChildAuthorisation,
    ChildContact,
    ChildHealth,
)

from tests.factories import make_family

URL = "/api/v1/enfants/"
NEW_CHILD = {"last_name": "Martin", "first_name": "Hugo", "birth_date": "2019-05-04", "sex": "m",
             "school_level": "gs", "consent": True}


@pytest.fixture(autouse=True)
def _frozen_clock():
    with time_machine.travel(date(2026, 10, 1), tick=False):
        yield


def child_of(family, first_name="Léa"):
    return family.children.get(first_name=first_name)


# --- List and create -------------------------------------------------------------------


def test_list(api, family):
    response = api.get(URL)
    assert response.status_code == 200
    [child] = response.json()
    assert (child["first_name"], child["birth_date"], child["sex"], child["status"]) == ("Léa", "2018-03-01", "f",
                                                                                         "active")


def test_list_hides_archived_children(api, family):
    Child.objects.filter(pk=child_of(family).pk).update(status=Child.Status.ARCHIVED)
    assert api.get(URL).json() == []


def test_list_has_no_n_plus_one(alpha, client_for, django_assert_max_num_queries):
    connection.set_tenant(alpha)
    small = make_family("petit@example.fr", children=("Léa",))
    large = make_family("grand@example.fr", children=("Léa", "Hugo", "Inès", "Jade", "Noé", "Zoé"))
    counts = []
    for fam in (small, large):
        client = client_for(fam.guardians.get().user)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(URL)
        assert response.status_code == 200
        counts.append(len(queries))
    assert len(response.json()) == 6
    assert counts[0] == counts[1], counts
    # Domain, token + user, guardian, children (django-tenants adds a SET search_path to each).
    with django_assert_max_num_queries(10):
        client.get(URL)


def test_create(api, family):
    response = api.post(URL, NEW_CHILD, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["first_name"], body["status"]) == ("Hugo", "active")
    child = Child.objects.get(pk=body["id"])
    assert child.family_id == family.pk and child.consent_at is not None
    assert ChildHealth.objects.filter(child=child).exists()
    assert AuditEvent.objects.filter(action="child.created", family_id=family.pk).exists()


def test_create_bad_input(api, family):
    response = api.post(URL, {"first_name": "", "birth_date": "2030-01-01", "sex": "x", "diet": "medical"},
                        format="json")
    assert response.status_code == 400
    errors = response.json()
    assert errors["last_name"] == ["Ce champ est obligatoire."]
    assert errors["first_name"] == ["Ce champ ne peut être vide."]
    assert "n'est pas un choix valide" in errors["sex"][0]

    # Types right: the web form's rules answer, with the « J'accepte » rule.
    response = api.post(URL, {**NEW_CHILD, "birth_date": "2030-01-01", "diet": "medical", "consent": False},
                        format="json")
    assert response.status_code == 400
    errors = response.json()
    assert errors["birth_date"] == ["La date de naissance est dans le futur."]
    assert errors["diet_details"] == ["Précisez le régime alimentaire."]
    assert errors["consent"] == ["Cochez « J'accepte » pour enregistrer la fiche."]
    assert family.children.count() == 1


def test_create_with_health(api, family):
    response = api.post(URL, {**NEW_CHILD, "health": {"pai": True, "pai_details": "Asthme : ventoline",
                                                      "allergies": {"asthme": {"has": True, "details": "effort"}}}},
                        format="json")
    assert response.status_code == 201, response.json()
    health = ChildHealth.objects.get(child_id=response.json()["id"])
    assert health.pai is True and health.allergies == {"asthme": {"has": True, "details": "effort"}}

    response = api.post(URL, {**NEW_CHILD, "health": {"pai": True, "consent": True}}, format="json")
    assert response.status_code == 400
    assert response.json() == {"health": {"consent": ["Champ inconnu."]}}
    response = api.post(URL, {**NEW_CHILD, "health": {"pai": True}}, format="json")
    assert response.status_code == 400
    assert response.json() == {"health": {"pai_details": ["Précisez le PAI (allergie, traitement, conduite à tenir)."]}}
    assert family.children.count() == 2


def test_create_pending_when_the_commune_validates(api, family, validation_required):
    validation_required()
    response = api.post(URL, NEW_CHILD, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["child"]["status"] == "pending"
    [request] = body["change_requests"]
    assert (request["target"], request["action"], request["object_id"]) == ("child", "create", body["child"]["id"])
    assert len(api.get(URL).json()) == 2


# --- Identity ---------------------------------------------------------------------------


def test_detail_and_update(api, family):
    child = child_of(family)
    assert api.get(f"{URL}{child.pk}/").json()["first_name"] == "Léa"
    response = api.patch(f"{URL}{child.pk}/", {"school": "École du Bourg", "consent": True}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["school"] == "École du Bourg"
    child.refresh_from_db()
    assert child.school == "École du Bourg" and child.consent_at is not None


def test_update_needs_consent_and_valid_values(api, family):
    child = child_of(family)
    response = api.patch(f"{URL}{child.pk}/", {"school": "École du Bourg"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"consent": ["Cochez « J'accepte » pour enregistrer la fiche."]}
    response = api.patch(f"{URL}{child.pk}/", {"birth_date": "1990-01-01", "consent": True}, format="json")
    assert response.status_code == 400
    assert response.json() == {"birth_date": ["La date de naissance semble erronée (plus de 25 ans)."]}
    response = api.patch(f"{URL}{child.pk}/", {"birth_date": "pas une date", "consent": True}, format="json")
    assert response.status_code == 400
    assert response.json()["birth_date"][0].startswith("La date n'a pas le bon format.")
    child.refresh_from_db()
    assert child.school == ""


def test_update_pending(api, family, validation_required):
    validation_required()
    child = child_of(family)
    response = api.patch(f"{URL}{child.pk}/", {"first_name": "Léana", "consent": True}, format="json")
    assert response.status_code == 202
    [request] = response.json()["change_requests"]
    assert request["data"] == {"first_name": "Léana"}
    child.refresh_from_db()
    assert child.first_name == "Léa"


# --- Health -----------------------------------------------------------------------------


def test_health_read(api, family):
    child = child_of(family)
    response = api.get(f"{URL}{child.pk}/sante/")
    assert response.status_code == 200
    body = response.json()
    assert body["allergies"]["alimentaire"] == {"has": True, "details": "arachide"}
    assert body["allergies"]["asthme"] == {"has": False, "details": ""}
    assert body["vaccinations"]["dtp"] == {"done": False, "last": None}
    assert body["illnesses"]["varicelle"] is False


def test_health_update(api, family):
    child = child_of(family)
    response = api.patch(f"{URL}{child.pk}/sante/", {
        "vaccinations": {"dtp": {"done": True, "last": "2025-03-01"}},
        "illnesses": {"varicelle": True},
        "doctor_name": "Dr Durand", "doctor_phone": "0475000000", "consent": True,
    }, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["vaccinations"]["dtp"] == {"done": True, "last": "2025-03-01"}
    assert body["doctor_phone"] == "04 75 00 00 00"
    health = ChildHealth.objects.get(child=child)
    assert health.illnesses == {"varicelle": True}
    # What was not sent is kept.
    assert health.allergies == {"alimentaire": {"has": True, "details": "arachide"}}


def test_health_bad_input(api, family):
    child = child_of(family)
    response = api.patch(f"{URL}{child.pk}/sante/", {
        "pai": True, "vaccinations": {"dtp": {"done": True, "last": "2027-01-01"}, "tetanos": {"done": True}},
        "consent": True}, format="json")
    assert response.status_code == 400
    assert response.json() == {"vaccinations": {"tetanos": ["Champ inconnu."]}}

    response = api.patch(f"{URL}{child.pk}/sante/", {
        "pai": True, "vaccinations": {"dtp": {"done": True, "last": "2027-01-01"}},
        "allergies": {"asthme": {"has": True}}, "consent": True}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "pai_details": ["Précisez le PAI (allergie, traitement, conduite à tenir)."],
        "vaccinations": {"dtp": {"last": ["La date est dans le futur."]}},
        "allergies": {"asthme": {"details": ["Précisez l'allergie."]}},
    }
    assert ChildHealth.objects.get(child=child).pai is False


def test_health_pending(api, family, validation_required):
    validation_required()
    child = child_of(family)
    response = api.patch(f"{URL}{child.pk}/sante/", {"observations": "Lunettes", "consent": True}, format="json")
    assert response.status_code == 202
    assert response.json()["change_requests"][0]["target"] == "health"
    assert ChildHealth.objects.get(child=child).observations == ""


# --- Contacts ---------------------------------------------------------------------------

CONTACT = {"last_name": "Durand", "first_name": "Anne", "relationship": "Grand-mère", "phone_1": "06 98 76 54 32",
           "is_emergency_contact": True, "can_pick_up": True}


def test_contacts_crud(api, family):
    child = child_of(family)
    url = f"{URL}{child.pk}/contacts/"
    assert api.get(url).json() == []
    response = api.post(url, CONTACT, format="json")
    assert response.status_code == 201, response.json()
    contact_id = response.json()["id"]
    assert [c["first_name"] for c in api.get(url).json()] == ["Anne"]

    response = api.patch(f"{url}{contact_id}/", {"phone_2": "0475123456", "postcode": "26300", "city": "ALIXAN"},
                         format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["phone_2"], response.json()["city"]) == ("04 75 12 34 56", "Alixan")

    assert api.delete(f"{url}{contact_id}/").status_code == 204
    assert not ChildContact.objects.filter(pk=contact_id).exists()
    assert AuditEvent.objects.filter(action="contact.deleted", family_id=family.pk).exists()


def test_contact_defaults(api, family):
    child = child_of(family)
    body = {k: v for k, v in CONTACT.items() if k not in ("is_emergency_contact", "can_pick_up")}
    response = api.post(f"{URL}{child.pk}/contacts/", body, format="json")
    assert response.status_code == 201, response.json()
    assert (response.json()["is_emergency_contact"], response.json()["can_pick_up"]) == (True, False)


def test_contact_bad_input(api, family):
    child = child_of(family)
    url = f"{URL}{child.pk}/contacts/"
    response = api.post(url, {**CONTACT, "phone_1": "123", "is_emergency_contact": False, "can_pick_up": False,
                              "postcode": "26300", "city": "Lyon"}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "phone_1": ["Numéro de téléphone invalide : 10 chiffres, par exemple 06 12 34 56 78."],
        "is_emergency_contact": ["Cochez au moins un rôle : urgence ou venir chercher l'enfant."],
        "city": [response.json()["city"][0]],
    }
    assert response.json()["city"][0].startswith("Cette ville ne correspond pas au code postal 26300")
    response = api.post(url, {"first_name": "Anne"}, format="json")
    assert set(response.json()) == {"last_name", "relationship", "phone_1"}
    assert not ChildContact.objects.exists()


def test_contact_of_another_child_is_404(api, family, alpha):
    connection.set_tenant(alpha)
    other = make_family("autre@example.fr")
    theirs = ChildContact.objects.create(child=other.children.get(), last_name="X", first_name="Y",
                                         relationship="Oncle", phone_1="06 00 00 00 00")
    mine = child_of(family)
    assert api.patch(f"{URL}{mine.pk}/contacts/{theirs.pk}/", {"first_name": "Z"},
                     format="json").status_code == 404
    assert api.delete(f"{URL}{mine.pk}/contacts/{theirs.pk}/").status_code == 404
    assert ChildContact.objects.filter(pk=theirs.pk).exists()


# --- Authorisations ---------------------------------------------------------------------


def test_authorisations(api, family, alpha):
    connection.set_tenant(alpha)
    photo = AuthorisationType.objects.get(code="photo")
    outing = AuthorisationType.objects.create(code="sortie", label="Sorties", position=2)
    AuthorisationType.objects.create(code="ancienne", label="Archivée", archived_at="2026-01-01T00:00:00Z")
    child = child_of(family)
    url = f"{URL}{child.pk}/autorisations/"

    rows = api.get(url).json()
    assert [(r["code"], r["answer"]) for r in rows] == [("photo", None), ("sortie", None)]

    response = api.put(url, {"answers": {"photo": "oui", "sortie": "non_concerne"}}, format="json")
    assert response.status_code == 200, response.json()
    assert [(r["code"], r["answer"]) for r in response.json()] == [("photo", "oui"), ("sortie", "non_concerne")]
    assert ChildAuthorisation.objects.get(child=child, authorisation_type=photo).answer == "oui"
    assert ChildAuthorisation.objects.get(child=child, authorisation_type=outing).answered_by is not None


def test_authorisations_bad_input(api, family, alpha):
    connection.set_tenant(alpha)
    AuthorisationType.objects.create(code="sortie", label="Sorties", position=2)
    AuthorisationType.objects.create(code="ancienne", label="Archivée", archived_at="2026-01-01T00:00:00Z")
    url = f"{URL}{child_of(family).pk}/autorisations/"
    response = api.put(url, {"answers": {"photo": "peut-etre"}}, format="json")
    assert response.status_code == 400
    assert "n'est pas un choix valide" in response.json()["answers"]["photo"][0]
    response = api.put(url, {"answers": {"photo": "oui", "ancienne": "oui"}}, format="json")
    assert response.status_code == 400
    assert response.json() == {"answers": {"sortie": ["Ce champ est obligatoire."],
                                           "ancienne": ["Autorisation inconnue dans cette commune."]}}
    assert not ChildAuthorisation.objects.exists()


# --- Whose child ------------------------------------------------------------------------


def test_another_familys_child_is_404_everywhere(api, family, alpha):
    connection.set_tenant(alpha)
    other = make_family("autre@example.fr", last_name="Autre")
    theirs = other.children.get()
    for method, path, body in [
        ("get", "", None), ("patch", "", {"first_name": "X", "consent": True}),
        ("get", "sante/", None), ("patch", "sante/", {"observations": "X", "consent": True}),
        ("get", "contacts/", None), ("post", "contacts/", CONTACT),
        ("get", "autorisations/", None), ("put", "autorisations/", {"answers": {"photo": "oui"}}),
    ]:
        response = getattr(api, method)(f"{URL}{theirs.pk}/{path}", body, format="json")
        assert response.status_code == 404, (method, path, response.status_code)
    connection.set_tenant(alpha)
    theirs.refresh_from_db()
    assert theirs.first_name == "Léa" and not theirs.contacts.exists()
    assert not ChangeRequest.objects.exists()
