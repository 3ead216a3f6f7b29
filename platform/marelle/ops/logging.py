"""Structured logs: one JSON object per line, with the commune, the request and the user.

Every record carries:

- ``tenant``: the schema the current database connection is on (``public`` outside a
  commune), or the schema a Celery task was enqueued from (set at ``task_prerun``);
- ``request_id``: the ``X-Request-ID`` of the HTTP request (or one generated for it), also
  carried into the Celery tasks the request enqueues;
- ``user_id``: the primary key of the authenticated account, never its e-mail or name;
- ``task_id`` / ``task`` inside Celery tasks.

Personal data stays out: e-mail addresses found in a message, an argument or a traceback are
replaced by ``[email]``, and nothing reads ``request.user`` beyond what the request already
loaded (logging never runs a query). Health data must never be passed to a logger at all:
log identifiers (child id, document id), not the record.

This module is imported by ``settings.py`` (``build_logging``): it must not import Django's
database layer at import time.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import traceback
from datetime import UTC, datetime

# What the current request or task is about. The middleware and the Celery signals set them;
# ContextVar values are per thread and per asyncio task, so concurrent requests never mix.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("marelle_request_id", default=None)
tenant_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("marelle_tenant", default=None)
user_id_var: contextvars.ContextVar[object | None] = contextvars.ContextVar("marelle_user_id", default=None)
request_var: contextvars.ContextVar[object | None] = contextvars.ContextVar("marelle_request", default=None)
task_var: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("marelle_task", default=None)

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
REDACTED_EMAIL = "[email]"

# Attributes every LogRecord has: anything else on a record came from `extra=` and is output.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "tenant", "request_id", "user_id", "task_id", "task_name", "taskName",
}


def redact(text: str) -> str:
    return EMAIL_RE.sub(REDACTED_EMAIL, text)


def current_tenant() -> str | None:
    """The schema this code runs in: the task's (set at prerun) or the DB connection's."""
    tenant = tenant_var.get()
    if tenant:
        return tenant
    try:
        from django.db import connection

        return getattr(connection, "schema_name", None)
    except Exception:  # noqa: BLE001 - settings not configured yet (start-up, tooling)
        return None


def _user_id_from_request(request) -> object | None:
    """The authenticated user's pk *if the request already loaded the user*: reading
    ``request.user`` could run queries (session, user) from inside a log call."""
    if request is None:
        return None
    user = request.__dict__.get("user")
    if user is None:
        return None
    try:
        from django.utils.functional import SimpleLazyObject, empty
    except Exception:  # noqa: BLE001
        return None
    if isinstance(user, SimpleLazyObject):
        wrapped = user._wrapped
        user = getattr(request, "_cached_user", None) if wrapped is empty else wrapped
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return getattr(user, "pk", None)


def current_user_id() -> object | None:
    user_id = user_id_var.get()
    if user_id is not None:
        return user_id
    return _user_id_from_request(request_var.get())


class ContextFilter(logging.Filter):
    """Puts tenant, request id, user id and task on every record (for any formatter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "tenant"):
            record.tenant = current_tenant()
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "user_id"):
            record.user_id = current_user_id()
        task = task_var.get()
        if not hasattr(record, "task_id"):
            record.task_id = task[0] if task else None
            record.task_name = task[1] if task else None
        return True


def _jsonable(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Keys: time (UTC, ISO 8601, ms), level, logger, message,
    tenant, request_id, user_id, [task_id, task], [exception, stack], then `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "tenant"):
            ContextFilter().filter(record)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad %-format must not lose the line
            message = f"{record.msg!r} % {record.args!r}"
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(message),
            "tenant": record.tenant,
            "request_id": record.request_id,
            "user_id": record.user_id,
        }
        if getattr(record, "task_id", None):
            entry["task_id"] = record.task_id
            entry["task"] = record.task_name
        if record.exc_info:
            exc_type, exc_value, _ = record.exc_info
            entry["exception"] = {
                "type": getattr(exc_type, "__name__", str(exc_type)),
                "message": redact(str(exc_value)),
                "traceback": redact("".join(traceback.format_exception(*record.exc_info))),
            }
        elif record.exc_text:
            entry["exception"] = {"traceback": redact(record.exc_text)}
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = _jsonable(value)
        return json.dumps(entry, ensure_ascii=False, default=str)


class DevFormatter(logging.Formatter):
    """Human-readable lines for a developer's terminal, with the same context."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s [%(tenant)s %(request_id)s u=%(user_id)s] %(name)s: %(message)s",
                         datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "tenant"):
            ContextFilter().filter(record)
        return redact(super().format(record))


def build_logging(*, json_logs: bool, level: str = "INFO") -> dict:
    """The LOGGING setting: JSON lines on stdout in production, readable lines otherwise.

    Django's own request errors (``django.request``) and Celery's loggers go through the
    same handler, so they carry the same context. ``django.db.backends`` stays at WARNING:
    SQL at DEBUG would put personal data in the logs.
    """
    formatter = "json" if json_logs else "dev"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "marelle.ops.logging.ContextFilter"}},
        "formatters": {
            "json": {"()": "marelle.ops.logging.JsonFormatter"},
            "dev": {"()": "marelle.ops.logging.DevFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": formatter,
                "filters": ["context"],
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # Django logs 4xx/5xx itself; keep them, without a second handler.
            "django.request": {"level": "WARNING"},
        },
    }
