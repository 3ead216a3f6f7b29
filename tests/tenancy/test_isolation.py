"""Sessions and background tasks stay inside their commune."""

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from marelle.celery import app as celery_app
from marelle.core.tasks import tenant_probe


def test_session_cookie_from_one_commune_is_not_valid_on_another(alpha, beta):
    User = get_user_model()
    connection.set_tenant(alpha)
    claire_alpha = User.objects.create_user("claire@example.fr", first_name="Claire", last_name="Alpha", is_active=True)
    connection.set_tenant(beta)
    # Same e-mail in another commune: another account, unrelated to the first.
    User.objects.create_user("claire@example.fr", first_name="Claire", last_name="Bêta")

    connection.set_tenant(alpha)
    client = Client()
    client.force_login(claire_alpha)  # the session row is written in alpha's schema
    connection.set_schema_to_public()

    assert "Connecté : Claire Alpha" in client.get("/", HTTP_HOST="alpha.marelle.test").content.decode()
    # The test client sends the cookie to any host, as an attacker copying it would.
    beta_page = client.get("/", HTTP_HOST="beta.marelle.test").content.decode()
    assert "Connecté" not in beta_page
    assert settings.SESSION_COOKIE_DOMAIN is None and settings.CSRF_COOKIE_DOMAIN is None
    assert client.cookies[settings.SESSION_COOKIE_NAME]["domain"] == ""


@pytest.fixture(scope="module")
def celery_worker(django_db_blocker):
    """A real worker thread consuming from the real Redis broker."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    assert celery_app.conf.broker_url.startswith("redis://"), "the test needs the Redis broker"
    try:
        with django_db_blocker.unblock():
            with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING",
                              shutdown_timeout=10):
                yield
    finally:
        celery_app.conf.task_always_eager = eager


def test_task_enqueued_in_a_commune_runs_in_its_schema(alpha, beta, celery_worker):
    connection.set_tenant(alpha)
    from_alpha = tenant_probe.delay()
    connection.set_tenant(beta)
    from_beta = tenant_probe.delay()
    connection.set_schema_to_public()
    from_public = tenant_probe.delay()

    assert from_alpha.get(timeout=20) == {"schema": "alpha", "commune": "alpha", "services": ["cantine"]}
    assert from_beta.get(timeout=20) == {"schema": "beta", "commune": "beta", "services": ["alsh"]}
    assert from_public.get(timeout=20)["schema"] == "public"


def test_search_path_is_set_again_after_a_savepoint_rollback(alpha, beta):
    """TENANT_LIMIT_SET_CALLS is on (one SET search_path per request, not one per query):
    PostgreSQL undoes a SET issued inside a rolled-back savepoint, so the cached schema must
    be forgotten, or the next query would read the other commune's rows (django-tenants#1262,
    fixed in the pinned 4.0.1: this test fails on versions without the fix)."""
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    assert settings.TENANT_LIMIT_SET_CALLS
    User = get_user_model()
    connection.set_tenant(alpha)
    User.objects.create_user("seulement-alpha@example.fr", first_name="A", last_name="Alpha")
    with CaptureQueriesContext(connection) as queries:
        assert User.objects.filter(email="seulement-alpha@example.fr").exists()
        assert User.objects.filter(email="seulement-alpha@example.fr").count() == 1
    assert not any(q["sql"].startswith("SET search_path") for q in queries.captured_queries)

    with pytest.raises(RuntimeError), transaction.atomic():
        connection.set_tenant(beta)
        assert not User.objects.filter(email="seulement-alpha@example.fr").exists()
        raise RuntimeError("rolled back")
    # The connection says beta; the database went back to alpha's search_path with the savepoint.
    assert connection.tenant == beta
    assert not User.objects.filter(email="seulement-alpha@example.fr").exists()
