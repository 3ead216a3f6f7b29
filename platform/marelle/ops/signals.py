"""Celery signals: log context and metrics for every task.

- ``before_task_publish``: the task's headers get the request id of the HTTP request (or
  task) that enqueues it, and the time it was published;
- ``task_prerun``: the log context gets the task's tenant (the schema tenant-schemas-celery
  put in its headers), its id and name, and the enqueuing request id;
- ``task_postrun``: run time by queue and task, final state, queue wait; context reset;
- ``celeryd_init``: a worker started with METRICS_PORT serves its metrics on that port.

``connect()`` is idempotent (dispatch_uid) and called from ``OpsConfig.ready()``.
"""

from __future__ import annotations

import logging
import os
import time

from celery import signals as celery_signals

from marelle.ops import metrics
from marelle.ops.logging import request_id_var, task_var, tenant_var

logger = logging.getLogger(__name__)

_HEADER_REQUEST_ID = "marelle_request_id"
_HEADER_PUBLISHED = "marelle_published_at"
_running: dict[str, tuple[float, tuple]] = {}


def _header(task, name):
    request = task.request
    headers = getattr(request, "headers", None) or {}
    value = headers.get(name) if isinstance(headers, dict) else None
    return value if value is not None else getattr(request, name, None)


def _queue_of(task) -> str:
    delivery = getattr(task.request, "delivery_info", None) or {}
    queue = delivery.get("routing_key") or delivery.get("queue")
    if queue:
        return str(queue)[:64]
    if getattr(task.request, "is_eager", False):
        return "eager"
    return getattr(task, "queue", None) or "default"


def on_before_publish(sender=None, headers=None, **kwargs):
    if headers is None:
        return
    request_id = request_id_var.get()
    if request_id and _HEADER_REQUEST_ID not in headers:
        headers[_HEADER_REQUEST_ID] = request_id
    headers.setdefault(_HEADER_PUBLISHED, time.time())


def on_task_prerun(task_id=None, task=None, **kwargs):
    if task is None:
        return
    schema = _header(task, "_schema_name")
    tokens = (
        tenant_var.set(schema or None),
        task_var.set((task_id, task.name)),
        request_id_var.set(_header(task, _HEADER_REQUEST_ID) or request_id_var.get()),
    )
    _running[task_id] = (time.perf_counter(), tokens)
    published = _header(task, _HEADER_PUBLISHED)
    if published and not getattr(task.request, "is_eager", False):
        try:
            metrics.TASK_QUEUE_WAIT.labels(queue=_queue_of(task)).observe(max(0.0, time.time() - float(published)))
        except (TypeError, ValueError):
            pass


def on_task_postrun(task_id=None, task=None, state=None, **kwargs):
    started, tokens = _running.pop(task_id, (None, None))
    if task is not None and started is not None:
        queue = _queue_of(task)
        metrics.TASK_LATENCY.labels(queue=queue, task=task.name).observe(time.perf_counter() - started)
        metrics.TASKS.labels(queue=queue, task=task.name, state=state or "UNKNOWN").inc()
    if tokens:
        # Reset in reverse order; a token from another context (should not happen) is ignored.
        for var, token in zip((request_id_var, task_var, tenant_var), reversed(tokens), strict=True):
            try:
                var.reset(token)
            except ValueError:
                var.set(None)


def on_worker_init(**kwargs):
    port = os.environ.get("METRICS_PORT")
    if port:
        metrics.start_worker_metrics_server(int(port))
        logger.info("metrics served on port %s", port)


def connect() -> None:
    celery_signals.before_task_publish.connect(on_before_publish, dispatch_uid="marelle.ops.publish", weak=False)
    celery_signals.task_prerun.connect(on_task_prerun, dispatch_uid="marelle.ops.prerun", weak=False)
    celery_signals.task_postrun.connect(on_task_postrun, dispatch_uid="marelle.ops.postrun", weak=False)
    celery_signals.celeryd_init.connect(on_worker_init, dispatch_uid="marelle.ops.worker_init", weak=False)
