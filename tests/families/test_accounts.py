"""Accounts end to end through the web client: sign-up, confirmation, login, passwords, e-mail."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone
from marelle.families.models import ChangeRequest, Family

from tests.factories import PASSWORD, make_family
from tests.families.conftest import HOST, last_link

SIGNUP = {"civility": "mme", "last_name": "Durand", "first_name": "Inès", "email": "Ines.Durand@Example.fr",
          "password1": PASSWORD, "password2": PASSWORD}


def page(response) -> str:
    return response.content.decode()


def test_signup_confirm_and_single_use_link(client, in_alpha, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/compte/inscription/", SIGNUP)
    assert "Vérifiez votre boîte e-mail" in page(response)
    user = get_user_model().objects.get(email="ines.durand@example.fr")
    assert not user.is_active and user.guardian.family.status == Family.Status.ACTIVE
    assert mail.outbox[-1].to == ["ines.durand@example.fr"]
    assert mail.outbox[-1].subject == "Confirmez votre adresse e-mail – Commune d'Alpha"

    refused = client.post("/compte/connexion/", {"username": "ines.durand@example.fr", "password": PASSWORD})
    assert "Adresse e-mail ou mot de passe incorrect" in page(refused) or "pas encore activé" in page(refused)

    link = last_link("/compte/confirmer/")
    response = client.get(link, follow=True)
    assert "Votre adresse e-mail est confirmée" in page(response)
    assert response.wsgi_request.user.is_authenticated
    user.refresh_from_db()
    assert user.is_active and user.email_verified_at is not None

    again = Client(HTTP_HOST=HOST).get(link)
    assert again.status_code == 400 and "déjà été utilisé" in page(again)


def test_confirmation_link_expires_and_a_new_one_can_be_asked(client, in_alpha, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/compte/inscription/", SIGNUP)
    link = last_link("/compte/confirmer/")
    with time_machine.travel(timezone.now() + timedelta(days=3)):
        expired = client.get(link)
    assert expired.status_code == 400 and "Ce lien a expiré" in page(expired)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/compte/confirmer-a-nouveau/", {"email": "ines.durand@example.fr"})
    assert client.get(last_link("/compte/confirmer/")).status_code == 302


def test_signup_errors_are_shown_at_the_field_and_keep_what_was_typed(client, in_alpha):
    make_family("ines.durand@example.fr")
    response = client.post("/compte/inscription/", {**SIGNUP, "password2": "autre-chose-123"})
    body = page(response)
    assert "Un compte existe déjà avec cette adresse" in body
    assert "Les deux mots de passe ne sont pas identiques" in body
    assert 'value="Inès"' in body and 'value="Durand"' in body
    assert 'aria-invalid="true"' in body and 'id="id_email_error"' in body

    weak = client.post("/compte/inscription/", {**SIGNUP, "email": "autre@example.fr", "password1": "12345678",
                                                "password2": "12345678"})
    assert "Ce mot de passe est trop court" in page(weak)
    assert get_user_model().objects.filter(email="autre@example.fr").count() == 0


def test_invitation_mode_closes_self_signup(client, families_config):
    families_config(signup="invitation")
    response = client.get("/compte/inscription/")
    assert "crée les comptes des familles lors de l'inscription au guichet" in page(response)
    assert client.post("/compte/inscription/", SIGNUP).status_code == 200
    assert not get_user_model().objects.filter(email="ines.durand@example.fr").exists()


def test_invitation_link_sets_the_password_once(client, in_alpha, django_capture_on_commit_callbacks, rf):
    from marelle.accounts.services import send_invitation

    user = get_user_model().objects.create_user("guichet@example.fr", first_name="Paul")
    with django_capture_on_commit_callbacks(execute=True):
        send_invitation(user, base=f"http://{HOST}")
    link = last_link("/compte/invitation/")
    response = client.post(link, {"new_password1": PASSWORD, "new_password2": PASSWORD})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.is_active and user.check_password(PASSWORD)
    assert Client(HTTP_HOST=HOST).get(link).status_code == 400


def test_login_rotates_the_session_and_wrong_password_is_explained(client, in_alpha):
    make_family("claire@example.fr")
    client.get("/compte/connexion/")
    wrong = client.post("/compte/connexion/", {"username": "claire@example.fr", "password": "mauvais"})
    assert "Adresse e-mail ou mot de passe incorrect" in page(wrong)
    client.session.save()
    before = client.session.session_key
    ok = client.post("/compte/connexion/", {"username": "CLAIRE@example.fr", "password": PASSWORD})
    assert ok.status_code == 302 and ok["Location"] == "/famille/"
    assert client.session.session_key != before


def test_repeated_failures_lock_the_account_even_with_the_right_password(client, in_alpha, settings):
    make_family("claire@example.fr")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/compte/connexion/", {"username": "claire@example.fr", "password": "mauvais"},
                    REMOTE_ADDR="203.0.113.9")
    locked = Client(HTTP_HOST=HOST).post("/compte/connexion/", {"username": "claire@example.fr", "password": PASSWORD},
                                         REMOTE_ADDR="198.51.100.7")
    assert locked.status_code == 429 and "Trop de tentatives" in page(locked)


def test_password_reset_link_is_single_use(client, in_alpha, django_capture_on_commit_callbacks):
    make_family("claire@example.fr")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/compte/mot-de-passe-oublie/", {"email": "claire@example.fr"}, follow=True)
    assert "Vérifiez votre boîte e-mail" in page(response)
    assert PASSWORD not in mail.outbox[-1].body
    link = last_link("/compte/nouveau-mot-de-passe/")
    form_page = client.get(link, follow=True)
    new = "Un-autre-mot-de-passe-99"
    done = client.post(form_page.wsgi_request.path, {"new_password1": new, "new_password2": new}, follow=True)
    assert "Votre mot de passe a été changé" in page(done)
    assert get_user_model().objects.get(email="claire@example.fr").check_password(new)
    reused = Client(HTTP_HOST=HOST).get(link, follow=True)
    assert "Ce lien a expiré ou a déjà été utilisé" in page(reused)


def test_unknown_address_gets_the_same_answer_and_no_mail(client, in_alpha, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/compte/mot-de-passe-oublie/", {"email": "personne@example.fr"}, follow=True)
    assert "Si un compte actif existe" in page(response) and mail.outbox == []


def test_password_change_logs_out_the_other_sessions(client, in_alpha):
    make_family("claire@example.fr")
    other_device = Client(HTTP_HOST=HOST)
    other_device.post("/compte/connexion/", {"username": "claire@example.fr", "password": PASSWORD})
    client.post("/compte/connexion/", {"username": "claire@example.fr", "password": PASSWORD})
    wrong = client.post("/compte/mot-de-passe/", {"old_password": "faux", "new_password1": "Nouveau-secret-2026",
                                                  "new_password2": "Nouveau-secret-2026"})
    assert "ancien mot de passe est incorrect" in page(wrong)
    client.post("/compte/mot-de-passe/", {"old_password": PASSWORD, "new_password1": "Nouveau-secret-2026",
                                          "new_password2": "Nouveau-secret-2026"})
    assert client.get("/famille/").status_code == 200
    assert other_device.get("/famille/").status_code == 302  # back to the login page


def test_email_change_keeps_the_old_login_until_confirmed(client, in_alpha, django_capture_on_commit_callbacks):
    make_family("claire@example.fr")
    client.post("/compte/connexion/", {"username": "claire@example.fr", "password": PASSWORD})
    bad = client.post("/compte/adresse/", {"new_email": "claire.new@example.fr", "password": "faux"})
    assert "Mot de passe incorrect" in page(bad) and 'value="claire.new@example.fr"' in page(bad)
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/compte/adresse/", {"new_email": "claire.new@example.fr", "password": PASSWORD})
    assert mail.outbox[-1].to == ["claire.new@example.fr"]
    user = get_user_model().objects.get(guardian__family__isnull=False, email="claire@example.fr")
    link = last_link("/compte/adresse/confirmer/")
    client.get(link)
    user.refresh_from_db()
    assert user.email == "claire.new@example.fr" and user.guardian.email == "claire.new@example.fr"
    assert Client(HTTP_HOST=HOST).get(link).status_code == 400


def test_email_change_waits_for_staff_where_configured(client, families_config, django_capture_on_commit_callbacks):
    families_config(email_change_needs_staff_validation=True)
    make_family("claire@example.fr")
    client.post("/compte/connexion/", {"username": "claire@example.fr", "password": PASSWORD})
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/compte/adresse/", {"new_email": "claire.new@example.fr", "password": PASSWORD})
    client.get(last_link("/compte/adresse/confirmer/"))
    request = ChangeRequest.objects.get(target="email")
    assert request.status == "pending" and request.data == {"email": "claire.new@example.fr"}
    assert get_user_model().objects.filter(email="claire@example.fr").exists()

    from marelle.families.services import change_request_accept

    from tests.factories import make_staff

    change_request_accept(staff=make_staff(), change_request_id=request.pk)
    assert get_user_model().objects.filter(email="claire.new@example.fr").exists()


@pytest.mark.parametrize("path", ["/famille/", "/compte/", "/famille/enfants/nouveau/"])
def test_private_pages_need_a_login(client, in_alpha, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/compte/connexion/")
