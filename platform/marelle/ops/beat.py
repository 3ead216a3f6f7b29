"""Celery beat for many communes: one beat entry fans out to one task per active commune.

Beat runs in the public schema and knows no commune. Each periodic job is therefore an
entry that calls :func:`fan_out` with the name of the per-commune task; ``fan_out`` enqueues
that task once per *active* commune, inside the commune's schema (tenant-schemas-celery
records the schema in the task's headers and the worker switches to it), each with a random
countdown in ``[0, max_jitter_seconds]`` so that 1,000 communes do not hit the database, a
payment provider or the SMTP relay in the same second.

The per-commune tasks must be idempotent (a retried or duplicated run changes nothing more):
fan-out plus ``acks_late`` delivers at least once, not exactly once.

Countdowns are held by the worker that receives the task until due (Celery ETA): keep
``max_jitter_seconds`` well under the broker's visibility timeout (Redis: 1 hour by default)
and under the period of the entry.
"""

from __future__ import annotations

import logging
import random

from celery import current_app, shared_task
from django.conf import settings
from django_tenants.utils import tenant_context

from marelle.ops.schedule import FAN_OUT_TASK

logger = logging.getLogger(__name__)


def active_communes():
    from tenants.models import Commune

    return (Commune.objects.filter(status=Commune.Status.ACTIVE)
            .exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
            .order_by("schema_name"))


@shared_task(name=FAN_OUT_TASK, ignore_result=True)
def fan_out(task_name: str, *, max_jitter_seconds: float = 300, kwargs: dict | None = None,
            queue: str | None = None, expires: float | None = None) -> dict:
    """Enqueue ``task_name`` once per active commune, in its schema, with a random countdown.

    ``kwargs`` are passed to every task; ``queue`` overrides the task's route; ``expires``
    (seconds from now, counted after the jitter) drops a task a busy worker could not start
    in time rather than running it late. Returns ``{"task", "enqueued", "schemas"}``.
    """
    if max_jitter_seconds < 0:
        raise ValueError("max_jitter_seconds must be >= 0")
    task = current_app.tasks.get(task_name)
    if task is None:
        # Workers register every task of the project (autodiscovery): an unknown name is a
        # typo or a task not written yet. Enqueue nothing rather than N unregistered messages.
        logger.error("fan-out of unknown task %s: nothing enqueued", task_name)
        return {"task": task_name, "enqueued": 0, "schemas": [], "error": "unknown task"}
    options = {}
    if queue:
        options["queue"] = queue
    schemas = []
    for commune in active_communes():
        countdown = random.uniform(0, max_jitter_seconds) if max_jitter_seconds else 0
        call_options = dict(options, countdown=countdown)
        if expires is not None:
            call_options["expires"] = countdown + expires
        with tenant_context(commune):
            task.apply_async(kwargs=kwargs or {}, **call_options)
        schemas.append(commune.schema_name)
    logger.info("fan-out of %s to %d communes (jitter <= %ss)", task_name, len(schemas), max_jitter_seconds,
                extra={"fanned_task": task_name, "communes": len(schemas)})
    return {"task": task_name, "enqueued": len(schemas), "schemas": schemas}
