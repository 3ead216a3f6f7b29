"""Who may call the families' API: their own family only, never staff, never anonymous."""

import pytest
from django.db import connection
from marelle.families.models import Family
from rest_framework.test import APIClient

from tests.factories import make_staff

from .conftest import ALPHA_HOST

FAMILY_ENDPOINTS = ["/api/v1/famille/", "/api/v1/enfants/", "/api/v1/documents/", "/api/v1/documents/a-fournir/"]


@pytest.mark.parametrize("path", FAMILY_ENDPOINTS)
def test_anonymous_gets_401(alpha, path):
    response = APIClient(HTTP_HOST=ALPHA_HOST).get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["detail"] == "Informations d'authentification non fournies."


def test_anonymous_cannot_write(family, alpha):
    child = family.children.get()
    client = APIClient(HTTP_HOST=ALPHA_HOST)
    assert client.patch(f"/api/v1/enfants/{child.pk}/", {"first_name": "X", "consent": True},
                        format="json").status_code == 401
    assert client.post("/api/v1/enfants/", {}, format="json").status_code == 401


@pytest.mark.parametrize("path", [*FAMILY_ENDPOINTS, "child/", "child/sante/", "child/contacts/"])
def test_staff_get_403(alpha, family, client_for, path):
    connection.set_tenant(alpha)
    staff = make_staff(role="administrateur")  # even one allowed to read health data on the back office
    child = family.children.get()
    client = client_for(staff)
    response = client.get(path.replace("child", f"/api/v1/enfants/{child.pk}"))
    assert response.status_code == 403
    assert response.json()["detail"] == "Cet espace est réservé aux familles."


def test_session_authentication(family):
    client = APIClient(HTTP_HOST=ALPHA_HOST, enforce_csrf_checks=True)
    client.force_login(family.guardians.get().user)
    assert client.get("/api/v1/enfants/").status_code == 200
    # A browser session writes only with its CSRF token.
    response = client.patch("/api/v1/famille/", {"quotient": 700}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_closed_family_gets_403(api, family):
    Family.objects.filter(pk=family.pk).update(status=Family.Status.CLOSED)
    assert api.get("/api/v1/famille/").status_code == 403


def test_unknown_child_is_404(api, family):
    response = api.get("/api/v1/enfants/999999/")
    assert response.status_code == 404
    assert response.json()["detail"] == "Enfant introuvable"
