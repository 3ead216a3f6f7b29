"""Staff side of families: search, the family page, health data reads (traced), the desk."""


import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from marelle.catalog.models import AuthorisationType
from marelle.families.models import ChildAuthorisation, ChildContact, Family, HealthDataAccess

from tests.backoffice.conftest import HOST, client_for, patch_families_config
from tests.factories import make_family, make_staff

# django-tenants sends "SET search_path" before each query, so N SQL queries count as 2N.
# Measured: list/search 7 SQL (14), family page 15 SQL (30) whatever the number of rows;
# the bounds leave one query of room.
LIST_MAX_QUERIES = 16
FAMILY_PAGE_MAX_QUERIES = 32


def search(client, query, **params):
    response = client.get("/gestion/familles/", {"q": query, **params})
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def families(in_alpha):
    martin = make_family("claire.martin@example.fr", last_name="Martin", first_name="Claire", children=("Léa",))
    durand = make_family("paul.durand@exemple.fr", last_name="Durand", first_name="Paul", children=("Zoé", "Noah"))
    durand.guardians.filter(position=1).update(phone_mobile="07.11.22.33.44")
    return martin, durand


def test_search_finds_a_family_by_child_name(staff_client, families):
    client, _ = staff_client("agent")
    body = search(client, "zoé")
    assert "Famille Durand" in body and "Famille Martin" not in body
    assert "1 famille pour « zoé »" in body


def test_search_finds_a_family_by_email(staff_client, families):
    client, _ = staff_client("agent")
    body = search(client, "CLAIRE.MARTIN@example")
    assert "Famille Martin" in body and "Famille Durand" not in body


def test_search_by_guardian_name_phone_and_reference(staff_client, families):
    martin, durand = families
    client, _ = staff_client("agent")
    assert "Famille Durand" in search(client, "paul")
    # Every word must match somewhere in the family: guardian first name and a child's.
    body = search(client, "Durand Noah")
    assert "Famille Durand" in body
    assert "Aucune famille" in search(client, "Durand Léa")
    # Phone numbers match whatever their spacing, also in international form.
    for phone in ("0711223344", "07 11 22 33 44", "+33 7 11 22 33 44", "33 44"):
        body = search(client, phone)
        assert "Famille Durand" in body and "Famille Martin" not in body, phone
    body = search(client, martin.reference)
    assert "Famille Martin" in body and "Famille Durand" not in body


def test_search_with_no_match_says_so(staff_client, families):
    client, _ = staff_client("agent")
    assert "Aucune famille ne correspond à « Dupont »" in search(client, "Dupont")


def test_list_is_paginated_by_25_in_bounded_queries(staff_client, in_alpha, django_assert_max_num_queries):
    client, _ = staff_client("agent")
    for index in range(30):
        make_family(f"parent{index}@example.fr", last_name=f"Nom{index:02d}", children=("Un", "Deux"))
    with django_assert_max_num_queries(LIST_MAX_QUERIES):
        first = client.get("/gestion/familles/").content.decode()
    assert "30 familles" in first
    assert first.count('href="/gestion/familles/') - first.count('href="/gestion/familles/nouvelle/') == 25 + 1
    assert "Page 1 sur 2" in first and "Famille Nom00" in first and "Famille Nom29" not in first
    with django_assert_max_num_queries(LIST_MAX_QUERIES):
        second = client.get("/gestion/familles/", {"page": 2}).content.decode()
    assert "Famille Nom29" in second and "Famille Nom00" not in second
    with django_assert_max_num_queries(LIST_MAX_QUERIES):
        assert "Famille Nom07" in search(client, "nom07")


# --- Family page and health data ---------------------------------------------------------


def enrich(family):
    """Contacts and an authorisation answer for every child."""
    photo = AuthorisationType.objects.get(code="photo")
    for child in family.children.all():
        ChildContact.objects.create(child=child, last_name="Martin", first_name="Mamie", relationship="grand-mère",
                                    phone_1="06 00 00 00 01", can_pick_up=True)
        ChildAuthorisation.objects.create(child=child, authorisation_type=photo, answer="non")


def test_family_page_shows_guardians_quotient_children_contacts_authorisations(staff_client, family):
    enrich(family)
    client, _ = staff_client("agent")
    body = client.get(f"/gestion/familles/{family.pk}/").content.decode()
    assert "Famille Martin" in body and family.reference in body
    assert "claire.martin@example.fr" in body and "06 12 34 56 78" in body and "1 place de la Mairie" in body
    assert "650" in body and "Jusqu&#x27;à 700" in body  # quotient and alpha's bracket
    assert "Léa" in body and "Hugo" in body and "01/03/2018" in body
    assert "Mamie Martin" in body and "grand-mère" in body
    assert "Droit à l&#x27;image" in body


def test_directeur_sees_the_health_block_and_each_read_is_recorded(staff_client, family):
    client, directeur = staff_client("directeur")
    response = client.get(f"/gestion/familles/{family.pk}/")
    body = response.content.decode()
    assert "arachide" in body and "votre consultation est enregistrée" in body
    accesses = list(HealthDataAccess.objects.order_by("child__first_name"))
    assert [(a.staff_id, a.child.first_name, a.context) for a in accesses] == [
        (directeur.pk, "Hugo", "fiche famille"), (directeur.pk, "Léa", "fiche famille")]
    client.get(f"/gestion/familles/{family.pk}/")
    assert HealthDataAccess.objects.count() == 4  # every display is one more read


@pytest.mark.parametrize("role", ["agent", "regisseur"])
def test_roles_not_in_config_do_not_see_health_data_and_nothing_is_recorded(staff_client, family, role):
    client, _ = staff_client(role)
    body = client.get(f"/gestion/familles/{family.pk}/").content.decode()
    assert "arachide" not in body and "Allergies" not in body
    assert "réservés aux rôles suivants : Directeur·rice de structure, Administrateur·rice" in body
    assert not HealthDataAccess.objects.exists()


def test_health_roles_come_from_the_communes_config(staff_client, family, monkeypatch):
    patch_families_config(monkeypatch, health_data_roles=["agent"])
    agent_client, agent = staff_client("agent")
    assert "arachide" in agent_client.get(f"/gestion/familles/{family.pk}/").content.decode()
    assert set(HealthDataAccess.objects.values_list("staff_id", flat=True)) == {agent.pk}
    directeur_client, _ = staff_client("directeur")
    assert "arachide" not in directeur_client.get(f"/gestion/familles/{family.pk}/").content.decode()
    assert HealthDataAccess.objects.count() == 2


def test_family_page_queries_do_not_grow_with_children(staff_client, in_alpha, django_assert_max_num_queries):
    client, _ = staff_client("directeur")
    small = make_family("petit@example.fr", last_name="Petit", children=("Un",))
    big = make_family("grand@example.fr", last_name="Grand", children=("Un", "Deux", "Trois", "Quatre", "Cinq"))
    enrich(small)
    enrich(big)
    with django_assert_max_num_queries(FAMILY_PAGE_MAX_QUERIES) as small_queries:
        assert client.get(f"/gestion/familles/{small.pk}/").status_code == 200
    with django_assert_max_num_queries(FAMILY_PAGE_MAX_QUERIES) as big_queries:
        assert client.get(f"/gestion/familles/{big.pk}/").status_code == 200
    assert len(big_queries) == len(small_queries)


def test_unknown_family_is_a_404(staff_client, in_alpha):
    client, _ = staff_client("agent")
    assert client.get("/gestion/familles/999999/").status_code == 404


def test_staff_opens_any_family_of_its_commune(staff_client, family, in_alpha):
    other = make_family("autre@example.fr", last_name="Durand", children=("Tom",))
    client, _ = staff_client("agent")
    assert "Famille Martin" in client.get(f"/gestion/familles/{family.pk}/").content.decode()
    assert "Famille Durand" in client.get(f"/gestion/familles/{other.pk}/").content.decode()


# --- Isolation between communes ----------------------------------------------------------


def test_staff_of_alpha_never_sees_betas_families(alpha, beta):
    connection.set_tenant(beta)
    beta_family = make_family("famille@beta.example", last_name="Bêtafamille", children=("Bêtaenfant",))
    connection.set_tenant(alpha)
    staff = make_staff("directeur@mairie-alpha.fr", role="directeur")
    make_family("alpha@example.fr", last_name="Alphafamille", children=("Alphaenfant",))
    beta_id_free_in_alpha = not Family.objects.filter(pk=beta_family.pk).exists()
    client = client_for(staff)

    assert "Bêtafamille" not in search(client, "")
    assert "Aucune famille" in search(client, "Bêtaenfant")
    assert "Aucune famille" in search(client, "famille@beta.example")
    response = client.get(f"/gestion/familles/{beta_family.pk}/")
    assert "Bêtafamille" not in response.content.decode()
    if beta_id_free_in_alpha:
        assert response.status_code == 404
    # The alpha session cookie is worth nothing on beta's host: not signed in there.
    response = client.get("/gestion/familles/", HTTP_HOST="beta.marelle.test")
    assert response.status_code == 302 and "Bêtafamille" not in response.content.decode()
    connection.set_tenant(beta)
    assert not HealthDataAccess.objects.exists()


# --- Families created at the desk ----------------------------------------------------------


DESK_FORM = {"civility": "m", "last_name": "Benali", "first_name": "Karim", "email": "Karim.Benali@Example.fr",
             "phone_mobile": "06 98 76 54 32", "address_line": "3 rue des Écoles", "address_complement": "",
             "postcode": "26300", "city": "Alixan"}


@pytest.fixture
def invitations(monkeypatch):
    sent = []
    monkeypatch.setattr("marelle.accounts.services.send_invitation",
                        lambda user, *, base: sent.append((user.email, base.get_host())))
    return sent


def test_desk_creation_is_not_offered_where_families_sign_up_themselves(staff_client):
    client, _ = staff_client("agent")
    assert "Créer une famille au guichet" not in client.get("/gestion/familles/").content.decode()
    response = client.post("/gestion/familles/nouvelle/", DESK_FORM, follow=True)
    assert "créent elles-mêmes leur compte en ligne" in response.content.decode()
    assert not Family.objects.exists()


def test_desk_creates_the_family_with_an_inactive_invited_account(staff_client, monkeypatch, invitations):
    patch_families_config(monkeypatch, signup="invitation")
    client, agent = staff_client("agent")
    assert "Créer une famille au guichet" in client.get("/gestion/familles/").content.decode()
    assert client.get("/gestion/familles/nouvelle/").status_code == 200
    response = client.post("/gestion/familles/nouvelle/", DESK_FORM, follow=True)
    family = Family.objects.get()
    assert response.redirect_chain[-1][0] == f"/gestion/familles/{family.pk}/"
    assert "Une invitation a été envoyée à karim.benali@example.fr" in response.content.decode()
    guardian = family.guardians.get()
    assert (guardian.position, guardian.first_name, guardian.last_name, guardian.email, guardian.address_line,
            guardian.postcode, guardian.city) == (1, "Karim", "Benali", "karim.benali@example.fr",
                                                  "3 rue des Écoles", "26300", "Alixan")
    user = guardian.user
    assert not user.is_active and not user.has_usable_password() and not user.is_staff
    assert invitations == [("karim.benali@example.fr", HOST)]
    from marelle.audit.models import AuditEvent
    assert AuditEvent.objects.filter(action="family.created_at_desk", actor=agent, family_id=family.pk).exists()


def test_desk_form_errors_are_at_the_field_and_keep_what_was_typed(staff_client, monkeypatch, invitations):
    patch_families_config(monkeypatch, signup="invitation")
    make_family("karim.benali@example.fr", last_name="Benali")
    client, _ = staff_client("agent")
    response = client.post("/gestion/familles/nouvelle/", {**DESK_FORM, "postcode": "263"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "Un compte existe déjà avec cette adresse e-mail" in body
    assert "Le code postal compte 5 chiffres" in body
    assert 'value="3 rue des Écoles"' in body and 'value="Karim"' in body
    assert Family.objects.count() == 1 and invitations == []


def test_desk_family_without_the_invitation_hook_is_still_created(staff_client, monkeypatch):
    import marelle.accounts.services as accounts_services

    patch_families_config(monkeypatch, signup="invitation")
    monkeypatch.delattr(accounts_services, "send_invitation")
    client, _ = staff_client("agent")
    response = client.post("/gestion/familles/nouvelle/", DESK_FORM, follow=True)
    assert "L&#x27;envoi de l&#x27;invitation n&#x27;est pas encore disponible" in response.content.decode()
    assert get_user_model().objects.filter(email="karim.benali@example.fr", is_active=False).exists()
