"""GET/PATCH /api/v1/famille/: the household and its guardians, through record_change."""

from django.db import connection
from marelle.audit.models import AuditEvent
from marelle.families.models import ChangeRequest, Family, Guardian

URL = "/api/v1/famille/"


def test_get_profile(api, family):
    response = api.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["reference"] == family.reference
    assert body["quotient"] == 650
    assert body["pending_changes"] == []
    [guardian] = body["guardians"]
    assert guardian["last_name"] == "Martin"
    assert guardian["phone_mobile"] == "06 12 34 56 78"
    assert guardian["has_account"] is True


def test_patch_applies_and_returns_the_profile(api, family):
    guardian = family.guardians.get()
    response = api.patch(URL, {"situation": "maries", "allowance_scheme": "caf", "allowance_number": "1234567",
                               "guardians": [{"id": guardian.pk, "phone_mobile": "+33 7 11 22 33 44",
                                              "city": "alixan"}]}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["situation"] == "maries"
    # The web's rules ran: phone normalised, city in its official spelling.
    assert body["guardians"][0]["phone_mobile"] == "07 11 22 33 44"
    assert body["guardians"][0]["city"] == "Alixan"
    family.refresh_from_db()
    guardian.refresh_from_db()
    assert (family.situation, family.allowance_number, guardian.phone_mobile) == ("maries", "1234567",
                                                                                   "07 11 22 33 44")
    assert AuditEvent.objects.filter(action="family.updated", family_id=family.pk).exists()
    assert AuditEvent.objects.filter(action="guardian.updated", family_id=family.pk).exists()


def test_patch_bad_input_gets_french_messages_per_field(api, family):
    guardian = family.guardians.get()
    response = api.patch(URL, {"allowance_scheme": "caf", "quotient": -3,
                               "guardians": [{"id": guardian.pk, "phone_mobile": "12", "postcode": "99999"}]},
                         format="json")
    assert response.status_code == 400
    errors = response.json()
    assert "quotient" in errors
    # Nothing saved when one part is wrong.
    family.refresh_from_db()
    assert family.allowance_scheme == ""


def test_patch_runs_the_form_rules(api, family):
    guardian = family.guardians.get()
    response = api.patch(URL, {"allowance_scheme": "caf",
                               "guardians": [{"id": guardian.pk, "phone_mobile": "12", "postcode": "99999"}]},
                         format="json")
    assert response.status_code == 400
    errors = response.json()
    assert errors["allowance_number"] == ["Indiquez votre numéro d'allocataire."]
    assert errors["guardians"][0]["phone_mobile"] == [
        "Numéro de téléphone invalide : 10 chiffres, par exemple 06 12 34 56 78."]
    assert errors["guardians"][0]["postcode"] == ["Le code postal 99999 n'existe pas."]
    family.refresh_from_db()
    assert family.allowance_scheme == ""


def test_patch_unknown_guardian_or_field(api, family, alpha):
    connection.set_tenant(alpha)
    other = Family.objects.create()
    stranger = Guardian.objects.create(family=other, last_name="Autre", first_name="Famille")
    response = api.patch(URL, {"guardians": [{"id": stranger.pk, "first_name": "Pirate"}]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"guardians": [{"id": ["Responsable introuvable dans ce foyer."]}]}
    stranger.refresh_from_db()
    assert stranger.first_name == "Famille"

    response = api.patch(URL, {"situaton": "maries"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"situaton": ["Champ inconnu."]}

    response = api.patch(URL, {"situation": "polygame"}, format="json")
    assert response.status_code == 400
    assert "n'est pas un choix valide" in response.json()["situation"][0]


def test_patch_pending_when_the_commune_validates(api, family, validation_required):
    validation_required()
    guardian = family.guardians.get()
    response = api.patch(URL, {"quotient": 420, "guardians": [{"id": guardian.pk, "profession": "Boulangère"}]},
                         format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert "validation" in body["detail"]
    assert {(c["target"], c["status"]) for c in body["change_requests"]} == {("family", "pending"),
                                                                           ("guardian", "pending")}
    family.refresh_from_db()
    assert family.quotient == 650  # unchanged until staff accept
    assert ChangeRequest.objects.filter(family=family, status="pending").count() == 2
    assert len(api.get(URL).json()["pending_changes"]) == 2


def test_patch_without_change(api, family):
    response = api.patch(URL, {"quotient": 650}, format="json")
    assert response.status_code == 200
    assert not AuditEvent.objects.filter(action="family.updated").exists()


SECOND = {"civility": "m", "last_name": "Martin", "first_name": "Paul", "phone_mobile": "0611223344",
          "address_line": "1 place de la Mairie", "postcode": "26300", "city": "Alixan"}


def test_add_second_guardian(api, family):
    response = api.post(f"{URL}responsables/", SECOND, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["position"], body["phone_mobile"], body["has_account"]) == (2, "06 11 22 33 44", False)
    assert [g["first_name"] for g in api.get(URL).json()["guardians"]] == ["Claire", "Paul"]

    response = api.post(f"{URL}responsables/", SECOND, format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Le foyer a déjà deux responsables légaux : modifiez le second."]}


def test_add_second_guardian_bad_input(api, family):
    response = api.post(f"{URL}responsables/", {**SECOND, "phone_mobile": "", "city": "Lyon"}, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert errors["phone_mobile"] == ["Indiquez au moins un numéro de téléphone."]
    assert errors["city"][0].startswith("Cette ville ne correspond pas au code postal 26300")
    assert family.guardians.count() == 1
