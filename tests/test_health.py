from django.test import Client


def test_liveness_answers_on_any_host_without_touching_the_database(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz/live", HTTP_HOST="10.0.0.7")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readiness_checks_database_redis_and_migrations(db):
    response = Client().get("/healthz/ready", HTTP_HOST="pod-ip")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "problems": []}


def test_readiness_reports_an_unreachable_redis(db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/healthz/ready", HTTP_HOST="pod-ip")
    assert response.status_code == 503
    assert response.json()["problems"] == ["redis: ConnectionError"]
