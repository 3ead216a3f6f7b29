"""Prometheus metrics (prometheus_client, the Prometheus project's own Python client).

Metric names and labels (label values are bounded: communes are a bounded list, views are
the URL names of the code, queues and task names come from the code, states and rules
are enumerations):

==========================================  ==================================  =========
name                                        labels                              type
==========================================  ==================================  =========
marelle_http_requests_total                 tenant, view, method, status        counter
marelle_http_request_duration_seconds       view, method                        histogram
marelle_celery_tasks_total                  queue, task, state                  counter
marelle_celery_task_duration_seconds        queue, task                         histogram
marelle_celery_task_queue_wait_seconds      queue                               histogram
marelle_payments_total                      tenant, state                       counter
marelle_booking_rejections_total            tenant, rule                        counter
==========================================  ==================================  =========

``status`` is the status class (``2xx``…``5xx``), not the code. The duration histogram has
no tenant label: buckets × communes × views would be too many series.

Multi-process servers (gunicorn workers, Celery prefork children): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable directory (a tmpfs ``emptyDir``) in the
environment of the whole pod *before* the process starts; every process then writes its
samples there and ``/metrics`` adds them up (see docs/operations.md).
"""

from __future__ import annotations

import hmac
import os

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder

# No `_created` series next to every counter and histogram: they double the series count
# and dashboards use the counters' resets instead.
disable_created_metrics()

METRICS_PATH = "/metrics"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0)
_WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)

HTTP_REQUESTS = Counter(
    "marelle_http_requests", "HTTP requests answered, by commune schema and view.",
    ["tenant", "view", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "marelle_http_request_duration_seconds", "Time to answer an HTTP request, by view.",
    ["view", "method"], buckets=_LATENCY_BUCKETS,
)
TASKS = Counter(
    "marelle_celery_tasks", "Celery tasks finished, by queue, task and final state.",
    ["queue", "task", "state"],
)
TASK_LATENCY = Histogram(
    "marelle_celery_task_duration_seconds", "Run time of Celery tasks, by queue and task.",
    ["queue", "task"], buckets=_TASK_BUCKETS,
)
TASK_QUEUE_WAIT = Histogram(
    "marelle_celery_task_queue_wait_seconds",
    "Time between publishing a task and a worker starting it (countdowns included), by queue.",
    ["queue"], buckets=_WAIT_BUCKETS,
)
PAYMENTS = Counter(
    "marelle_payments", "Payment state changes, by commune schema and new state.",
    ["tenant", "state"],
)
BOOKING_REJECTIONS = Counter(
    "marelle_booking_rejections", "Booking lines refused, by commune schema and rule.",
    ["tenant", "rule"],
)
BOOKING_WRITE_RETRIES = Counter(
    "marelle_booking_write_retries",
    "Réservations written again because another one changed the same days meanwhile (days now full on a "
    "waiting list, a place freed) or PostgreSQL broke a lock cycle (deadlock), by commune schema and reason.",
    ["tenant", "reason"],
)

# Metric names every /metrics answer contains (tests, dashboards).
METRIC_NAMES = (
    "marelle_http_requests_total",
    "marelle_http_request_duration_seconds",
    "marelle_celery_tasks_total",
    "marelle_celery_task_duration_seconds",
    "marelle_celery_task_queue_wait_seconds",
    "marelle_payments_total",
    "marelle_booking_rejections_total",
    "marelle_booking_write_retries_total",
)


def _tenant_label() -> str:
    from marelle.ops.logging import current_tenant

    return current_tenant() or "-"


def _bounded(value: object, limit: int = 64) -> str:
    text = str(value or "-")
    return text[:limit]


def count_payment_state(state: str, *, tenant: str | None = None) -> None:
    """Count one payment reaching ``state`` (e.g. ``Payment.State`` values: pending,
    validated, refused…). Call it where the state change is saved, after the transaction
    commits (``transaction.on_commit``) so a rolled-back change is not counted."""
    PAYMENTS.labels(tenant=tenant or _tenant_label(), state=_bounded(state)).inc()


def count_booking_rejection(rule: str, *, tenant: str | None = None, amount: int = 1) -> None:
    """Count booking lines refused by ``rule`` (a rule code from marelle.booking.rules:
    deadline, capacity, not_enrolled, closed_day…, never free text)."""
    BOOKING_REJECTIONS.labels(tenant=tenant or _tenant_label(), rule=_bounded(rule)).inc(amount)


def count_booking_write_retry(reason: str, *, tenant: str | None = None) -> None:
    """Count one réservation written again (``reason``: deadlock, days_changed)."""
    BOOKING_WRITE_RETRIES.labels(tenant=tenant or _tenant_label(), reason=_bounded(reason)).inc()


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def registry() -> CollectorRegistry:
    """What to expose: this process's metrics, or all processes' in multi-process mode."""
    if multiprocess_mode():
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    return DEFAULT_REGISTRY


def render(accept_header: str | None = None) -> tuple[bytes, str]:
    """The exposition body and its content type, negotiated like Prometheus expects
    (text format 0.0.4 by default, OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(accept_header or "")
    return encoder(registry()), content_type


def metrics_token() -> str:
    from django.conf import settings

    return getattr(settings, "METRICS_TOKEN", None) or os.environ.get("METRICS_TOKEN", "")


def authorized(authorization_header: str | None) -> bool:
    """True when no METRICS_TOKEN is configured, or the header is ``Bearer <token>``."""
    token = metrics_token()
    if not token:
        return True
    scheme, _, given = (authorization_header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def status_class(status_code: int) -> str:
    return f"{status_code // 100}xx"


def observe_request(*, tenant: str, view: str, method: str, status_code: int, seconds: float) -> None:
    method = method if method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"} else "OTHER"
    HTTP_REQUESTS.labels(tenant=tenant, view=view, method=method, status=status_class(status_code)).inc()
    HTTP_LATENCY.labels(view=view, method=method).observe(seconds)


def start_worker_metrics_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics of a Celery worker (all its prefork children in multi-process mode)
    on ``port``: workers answer no HTTP otherwise."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=registry())
