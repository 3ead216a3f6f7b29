"""Tokens: obtained with e-mail and password through authenticate() (django-axes
throttling), revoked by DELETE, valid only in their own commune."""

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.authtoken.models import Token

from tests.factories import PASSWORD, make_family, make_staff

from .conftest import ALPHA_HOST, BETA_HOST

URL = "/api/v1/token/"


@pytest.fixture
def anonymous(client_for):
    return client_for()


def test_obtain_token_and_use_it(family, anonymous):
    response = anonymous.post(URL, {"email": " Parent@Example.fr ", "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    token = response.json()["token"]
    user = family.guardians.get(position=1).user
    assert Token.objects.get(user=user).key == token
    user.refresh_from_db()
    assert user.last_login is not None

    anonymous.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert anonymous.get("/api/v1/famille/").status_code == 200
    # The same token again: one per account, shared by its apps.
    again = anonymous.post(URL, {"email": "parent@example.fr", "password": PASSWORD}, format="json")
    assert again.json()["token"] == token


def test_wrong_password_is_a_french_400(family, anonymous):
    response = anonymous.post(URL, {"email": "parent@example.fr", "password": "faux"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Adresse e-mail ou mot de passe incorrect."]}


def test_missing_fields(anonymous, alpha):
    response = anonymous.post(URL, {}, format="json")
    assert response.status_code == 400
    assert response.json() == {"email": ["Ce champ est obligatoire."], "password": ["Ce champ est obligatoire."]}


def test_inactive_account_is_refused(family, anonymous):
    user = family.guardians.get(position=1).user
    user.is_active = False
    user.save(update_fields=["is_active"])
    response = anonymous.post(URL, {"email": "parent@example.fr", "password": PASSWORD}, format="json")
    assert response.status_code == 400
    assert not Token.objects.filter(user=user).exists()


def test_staff_get_no_token(alpha, anonymous):
    connection.set_tenant(alpha)
    make_staff()
    response = anonymous.post(URL, {"email": "agent@example.fr", "password": PASSWORD}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "Cet espace est réservé aux familles."


def test_lockout_after_failure_limit(family, anonymous, client_for):
    limit = settings.AXES_FAILURE_LIMIT
    statuses = [anonymous.post(URL, {"email": "parent@example.fr", "password": f"faux-{i}"},
                               format="json").status_code for i in range(limit)]
    # The failure that reaches the limit is already answered as a lockout.
    assert statuses == [400] * (limit - 1) + [429]

    # Locked: even the right password gets no token, with a French message.
    response = anonymous.post(URL, {"email": "parent@example.fr", "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert "Trop de tentatives de connexion" in response.json()["detail"]
    assert "15 minutes" in response.json()["detail"]
    assert int(response["Retry-After"]) == 15 * 60
    assert not Token.objects.filter(user=family.guardians.get(position=1).user).exists()

    # From another address too: the account itself is locked.
    elsewhere = client_for()
    response = elsewhere.post(URL, {"email": "parent@example.fr", "password": PASSWORD}, format="json",
                              REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 429


def test_success_resets_the_failure_counter(family, anonymous):
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        anonymous.post(URL, {"email": "parent@example.fr", "password": f"faux-{i}"}, format="json")
    assert anonymous.post(URL, {"email": "parent@example.fr", "password": PASSWORD},
                          format="json").status_code == 200
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        response = anonymous.post(URL, {"email": "parent@example.fr", "password": f"faux-{i}"}, format="json")
        assert response.status_code == 400


def test_revoke(api, family):
    assert api.get("/api/v1/famille/").status_code == 200
    assert api.delete(URL).status_code == 204
    assert not Token.objects.filter(user=family.guardians.get(position=1).user).exists()
    response = api.get("/api/v1/famille/")
    assert response.status_code == 401
    assert response.json()["detail"] == "Token non valide."


def test_revoke_needs_authentication(anonymous, alpha):
    assert anonymous.delete(URL).status_code == 401


def test_password_change_revokes_the_token(api, family):
    user = family.guardians.get(position=1).user
    user.set_password("Un-autre-mot-de-passe-99")
    user.save()
    assert api.get("/api/v1/famille/").status_code == 401


def test_a_token_of_alpha_is_not_valid_on_beta(alpha, beta, client_for):
    connection.set_tenant(alpha)
    alpha_family = make_family()
    client = client_for(alpha_family.guardians.get().user)
    assert client.get("/api/v1/famille/").status_code == 200

    # The same e-mail has its own account in beta; alpha's token means nothing there.
    connection.set_tenant(beta)
    make_family()
    response = client.get("/api/v1/famille/", HTTP_HOST=BETA_HOST)
    assert response.status_code == 401
    assert response.json()["detail"] == "Token non valide."
    assert client.get("/api/v1/enfants/", HTTP_HOST=ALPHA_HOST).status_code == 200
