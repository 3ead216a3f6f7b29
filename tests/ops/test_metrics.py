"""Prometheus metrics: /metrics before tenant routing, optional bearer token, the metrics."""

import pytest
from celery import shared_task
from django.test import Client
from django_tenants.utils import schema_context
from marelle.ops import metrics
from marelle.ops.metrics import count_booking_rejection, count_payment_state


def sample(text: str, name: str, **labels) -> float | None:
    """The value of ``name{labels...}`` in an exposition text (labels may be a subset)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        label_text = line[len(name) + 1:line.index("}")]
        found = dict(part.split("=", 1) for part in label_text.split(","))
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def scrape(**headers) -> tuple[int, str]:
    response = Client(HTTP_HOST="10.0.0.7").get("/metrics", **headers)
    return response.status_code, response.content.decode()


@pytest.fixture
def no_token(settings, monkeypatch):
    settings.METRICS_TOKEN = ""
    monkeypatch.delenv("METRICS_TOKEN", raising=False)


def test_metrics_endpoint_answers_on_any_host_without_the_database(db, ops_middleware, no_token,
                                                                    django_assert_num_queries):
    with django_assert_num_queries(0):
        status, text = scrape()
    assert status == 200
    for name in metrics.METRIC_NAMES:
        assert f"# TYPE {name} " in text, name
    assert "_created" not in text


def test_requests_are_counted_by_tenant_and_view(db, alpha, ops_middleware, no_token):
    _, before = scrape()
    start = sample(before, "marelle_http_requests_total", tenant="alpha", view="home", method="GET") or 0
    Client(HTTP_HOST="alpha.marelle.test").get("/")
    Client(HTTP_HOST="alpha.marelle.test").get("/")
    Client(HTTP_HOST="inconnue.marelle.test").get("/")
    _, text = scrape()
    assert sample(text, "marelle_http_requests_total", tenant="alpha", view="home", method="GET") == start + 2
    assert sample(text, "marelle_http_requests_total", tenant="-", view="<unresolved>", status="4xx") >= 1
    assert sample(text, "marelle_http_request_duration_seconds_count", view="home", method="GET") >= 2
    # Probes and scrapes are not counted.
    assert 'view="<unresolved>",method="GET",status="2xx"' not in text


def test_payment_and_booking_rejection_counters(db, alpha, ops_middleware, no_token):
    with schema_context(alpha.schema_name):
        count_payment_state("validated")
        count_payment_state("validated")
        count_booking_rejection("deadline")
    count_payment_state("refused", tenant="beta")
    _, text = scrape()
    assert sample(text, "marelle_payments_total", tenant="alpha", state="validated") >= 2
    assert sample(text, "marelle_payments_total", tenant="beta", state="refused") >= 1
    assert sample(text, "marelle_booking_rejections_total", tenant="alpha", rule="deadline") >= 1


@shared_task(name="tests.ops.quick_task")
def quick_task():
    return 1


def test_task_latency_is_observed_by_queue(db, alpha, ops_middleware, no_token, ops_signals):
    with schema_context(alpha.schema_name):
        assert quick_task.delay().get(disable_sync_subtasks=False) == 1
    _, text = scrape()
    assert sample(text, "marelle_celery_task_duration_seconds_count", task="tests.ops.quick_task", queue="eager") >= 1
    assert sample(text, "marelle_celery_tasks_total", task="tests.ops.quick_task", state="SUCCESS") >= 1


def test_metrics_token_is_required_when_configured(db, ops_middleware, settings):
    settings.METRICS_TOKEN = "s3cret-token-for-prometheus"
    assert scrape()[0] == 401
    assert scrape(HTTP_AUTHORIZATION="Bearer wrong-token")[0] == 401
    assert scrape(HTTP_AUTHORIZATION="Basic czNjcmV0")[0] == 401
    status, text = scrape(HTTP_AUTHORIZATION="Bearer s3cret-token-for-prometheus")
    assert status == 200 and "# TYPE marelle_payments_total counter" in text


def test_multiprocess_mode_adds_up_the_processes_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    registry = metrics.registry()
    assert registry is not metrics.DEFAULT_REGISTRY
    from prometheus_client import generate_latest

    generate_latest(registry)  # an empty directory is a valid (empty) exposition
