"""Only the commune's staff enter /gestion/, and some pages only for some roles."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory
from marelle.backoffice.access import login_url, staff_required

from tests.backoffice.conftest import HOST

PAGES = ["/gestion/", "/gestion/familles/", "/gestion/demandes/", "/gestion/comptes/"]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitor_is_sent_to_login_and_back(db, path):
    response = Client(HTTP_HOST=HOST).get(path)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == login_url()
    assert parse_qs(location.query)["next"] == [path]


@pytest.mark.parametrize("path", PAGES)
def test_family_account_gets_a_403_page_in_french(family_client, path):
    response = family_client.get(path)
    assert response.status_code == 403
    body = response.content.decode()
    assert "Accès refusé" in body and "réservé au personnel de la commune" in body


def test_family_cannot_open_its_own_nor_another_family_page(family_client, family, in_alpha):
    from tests.factories import make_family

    other = make_family("autre@example.fr", last_name="Durand", children=("Tom",))
    for family_id in (family.pk, other.pk):
        response = family_client.get(f"/gestion/familles/{family_id}/")
        assert response.status_code == 403
        assert "Durand" not in response.content.decode()


def test_family_cannot_decide_a_change_request(family_client, family):
    from marelle.families.models import ChangeRequest

    request = ChangeRequest.objects.create(family=family, target="family", object_id=family.pk,
                                           data={"quotient": 100}, previous={"quotient": 650}, summary="x")
    response = family_client.post(f"/gestion/demandes/{request.pk}/accepter/")
    assert response.status_code == 403
    request.refresh_from_db()
    assert request.status == "pending"
    family.refresh_from_db()
    assert family.quotient == 650


def test_agent_reaches_the_back_office_but_not_the_staff_accounts(staff_client):
    client, _ = staff_client("agent")
    assert client.get("/gestion/").status_code == 200
    assert client.get("/gestion/familles/").status_code == 200
    assert client.get("/gestion/demandes/").status_code == 200
    response = client.get("/gestion/comptes/")
    assert response.status_code == 403
    assert "Administrateur·rice" in response.content.decode()
    response = client.post("/gestion/comptes/", {"email": "x@mairie.fr", "first_name": "X", "last_name": "Y",
                                                 "role": "administrateur"})
    assert response.status_code == 403
    from django.contrib.auth import get_user_model
    assert not get_user_model().objects.filter(email="x@mairie.fr").exists()


@pytest.mark.parametrize("role", ["directeur", "regisseur"])
def test_other_non_admin_roles_cannot_manage_accounts(staff_client, role):
    client, _ = staff_client(role)
    assert client.get("/gestion/comptes/").status_code == 403


def test_administrateur_manages_accounts_and_sees_the_link(staff_client):
    client, _ = staff_client("administrateur")
    assert client.get("/gestion/comptes/").status_code == 200
    assert 'href="/gestion/comptes/"' in client.get("/gestion/").content.decode()
    agent, _ = staff_client("agent")
    assert 'href="/gestion/comptes/"' not in agent.get("/gestion/").content.decode()


def test_inactive_staff_account_is_refused(in_alpha):
    from tests.factories import make_staff

    user = make_staff("ancien@mairie-alpha.fr", role="administrateur")
    client = Client(HTTP_HOST=HOST)
    client.force_login(user)
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    response = client.get("/gestion/")
    # Django drops an inactive user from the session (ModelBackend.get_user): back to login.
    assert response.status_code == 302


def test_back_office_pages_are_never_cached(staff_client):
    client, _ = staff_client("directeur")
    assert "no-store" in client.get("/gestion/").headers["Cache-Control"]
    assert "private" in client.get("/gestion/familles/").headers["Cache-Control"]


def test_decorator_accepts_a_role_list_or_a_single_role(in_alpha):
    from django.contrib.auth.models import AnonymousUser

    from tests.factories import make_family, make_staff

    @staff_required(roles="regisseur")
    def regie(request):
        return HttpResponse("ok")

    @staff_required
    def any_staff(request):
        return HttpResponse("ok")

    factory = RequestFactory()

    def call(view, user):
        request = factory.get("/gestion/x/")
        request.user = user
        request.tenant = in_alpha
        return view(request)

    regisseur = make_staff("r@mairie-alpha.fr", role="regisseur")
    agent = make_staff("a@mairie-alpha.fr", role="agent")
    parent = make_family("p@example.fr").guardians.get().user
    assert call(regie, regisseur).status_code == 200
    assert call(regie, agent).status_code == 403
    assert call(any_staff, agent).status_code == 200
    assert call(any_staff, parent).status_code == 403
    assert call(any_staff, AnonymousUser()).status_code == 302


def test_staff_signs_in_and_comes_back_to_the_page_asked_for(in_alpha):
    from tests.factories import PASSWORD, make_staff

    make_staff("agent@mairie-alpha.fr", role="agent")
    client = Client(HTTP_HOST=HOST)
    login = client.get("/gestion/demandes/")["Location"]
    response = client.post(login, {"username": "agent@mairie-alpha.fr", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/gestion/demandes/"
    assert client.get("/gestion/demandes/").status_code == 200


def test_mixin_guards_class_based_views(in_alpha):
    from django.contrib.auth.models import AnonymousUser
    from django.views import View
    from marelle.backoffice.access import StaffRequiredMixin

    from tests.factories import make_staff

    class Accounts(StaffRequiredMixin, View):
        staff_roles = ["administrateur"]

        def get(self, request):
            return HttpResponse("ok")

    def call(user):
        request = RequestFactory().get("/gestion/y/")
        request.user = user
        return Accounts.as_view()(request)

    assert call(make_staff("adm@mairie-alpha.fr", role="administrateur")).status_code == 200
    assert call(make_staff("ag@mairie-alpha.fr", role="agent")).status_code == 403
    assert call(AnonymousUser()).status_code == 302
