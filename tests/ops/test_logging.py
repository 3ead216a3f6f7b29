"""Structured logs: one JSON object per line with tenant, request id and user id, no e-mail."""

import io
import json
import logging

import pytest
from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils.module_loading import import_string
from django_tenants.utils import schema_context
from marelle.ops.logging import (
    ContextFilter,
    JsonFormatter,
    build_logging,
    request_id_var,
    tenant_var,
)

from tests.factories import make_family

HOST = "alpha.marelle.test"


@pytest.fixture
def json_lines():
    """A handler configured like production's (filter + JSON formatter) on the root logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    root.removeHandler(handler)
    root.setLevel(previous)


def test_request_log_line_has_tenant_request_id_and_user_id_but_no_email(db, alpha, ops_middleware, json_lines):
    client = Client(HTTP_HOST=HOST)
    with schema_context(alpha.schema_name):
        make_family("claire.martin@example.fr")
        user = get_user_model().objects.get(email="claire.martin@example.fr")
        client.force_login(user)

    response = client.get("/?email=claire.martin@example.fr", HTTP_X_REQUEST_ID="req-0123456789abcdef")

    assert response["X-Request-ID"] == "req-0123456789abcdef"
    lines = [line for line in json_lines() if line["logger"] == "marelle.request"]
    assert len(lines) == 1, json_lines()
    line = lines[0]
    assert line["tenant"] == "alpha"
    assert line["request_id"] == "req-0123456789abcdef"
    assert line["user_id"] == user.pk
    assert line["status"] == response.status_code and line["view"] == "home"
    assert {"time", "level", "message"} <= set(line)
    raw = json.dumps(json_lines())
    assert "claire.martin@example.fr" not in raw and "@example.fr" not in raw


def test_a_request_without_a_usable_id_gets_a_generated_one(db, alpha, ops_middleware, json_lines):
    response = Client(HTTP_HOST=HOST).get("/", HTTP_X_REQUEST_ID="bad id\nwith newline")
    generated = response["X-Request-ID"]
    assert len(generated) == 32 and "\n" not in generated
    line = [x for x in json_lines() if x["logger"] == "marelle.request"][0]
    assert line["request_id"] == generated and line["user_id"] is None and line["tenant"] == "alpha"


def test_formatter_redacts_emails_and_formats_exceptions():
    tokens = request_id_var.set("r-1"), tenant_var.set("beta")
    try:
        logger = logging.getLogger("marelle.test.ops")
        record = None
        try:
            raise ValueError("cannot send to jean@example.org")
        except ValueError:
            record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "mail to %s failed",
                                       ("jean@example.org",), exc_info=__import__("sys").exc_info())
        ContextFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(tokens[0])
        tenant_var.reset(tokens[1])
    assert line["message"] == "mail to [email] failed"
    assert line["tenant"] == "beta" and line["request_id"] == "r-1" and line["level"] == "ERROR"
    assert line["exception"]["type"] == "ValueError"
    assert "jean@example.org" not in json.dumps(line)


def test_logging_setting_is_json_in_production_and_readable_in_development():
    prod = build_logging(json_logs=True)
    dev = build_logging(json_logs=False, level="DEBUG")
    assert prod["handlers"]["console"]["formatter"] == "json"
    assert dev["handlers"]["console"]["formatter"] == "dev" and dev["root"]["level"] == "DEBUG"
    for factory in [*(f["()"] for f in prod["formatters"].values()), prod["filters"]["context"]["()"]]:
        assert callable(import_string(factory))


@shared_task(name="tests.ops.log_something")
def log_something():
    logging.getLogger("marelle.test.task").warning("inside the task")
    return connection.schema_name


def test_celery_task_logs_carry_its_tenant_and_task_id(db, alpha, ops_signals, json_lines):
    with schema_context(alpha.schema_name):
        result = log_something.delay()
    assert result.get(disable_sync_subtasks=False) == "alpha"
    line = [x for x in json_lines() if x["logger"] == "marelle.test.task"][0]
    assert line["tenant"] == "alpha" and line["task"] == "tests.ops.log_something"
    assert line["task_id"] == result.id
    assert tenant_var.get() is None  # reset after the task
