"""Request id, access log line, request metrics and the /metrics endpoint.

Order in MIDDLEWARE (first = outermost), before tenant routing::

    "marelle.ops.middleware.RequestIdMiddleware",       # X-Request-ID, log context, access log
    "marelle.ops.middleware.MetricsEndpointMiddleware", # /metrics, not tenant-routed
    "marelle.core.health.HealthCheckMiddleware",
    "marelle.ops.middleware.RequestMetricsMiddleware",  # counts what routing and views answer
    "tenants.middleware.CommuneMiddleware",
    ...

None of them touches the database.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from django.http import HttpResponse

from marelle.ops import metrics
from marelle.ops.logging import (
    _user_id_from_request,
    request_id_var,
    request_var,
    tenant_var,
    user_id_var,
)

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted as given (from the ingress or a caller) when it looks like an id; anything else
# (too long, spaces, control characters: log injection) is replaced by a fresh one.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")
_NOT_MEASURED = ("/healthz/", metrics.METRICS_PATH)

access_logger = logging.getLogger("marelle.request")


def _tenant_of(request) -> str:
    tenant = getattr(request, "tenant", None)
    return getattr(tenant, "schema_name", None) or "-"


class RequestIdMiddleware:
    """Gives the request an id (``X-Request-ID`` if sane, else a new UUID), makes it and the
    user id available to every log line, echoes the header on the response, and writes one
    ``marelle.request`` line per request (method, path without query string, status,
    duration, view)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        request.request_id = request_id
        tokens = (request_id_var.set(request_id), request_var.set(request), user_id_var.set(None),
                  tenant_var.set(None))
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            if not request.path.startswith(_NOT_MEASURED):
                user_id = _user_id_from_request(request)
                if user_id is not None:
                    user_id_var.set(user_id)
                match = getattr(request, "resolver_match", None)
                access_logger.info(
                    "%s %s %s", request.method, request.path, response.status_code,
                    extra={"status": response.status_code,
                           "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                           "view": match.view_name if match else None,
                           "method": request.method, "path": request.path},
                )
            return response
        finally:
            request_id_var.reset(tokens[0])
            request_var.reset(tokens[1])
            user_id_var.reset(tokens[2])
            tenant_var.reset(tokens[3])


class MetricsEndpointMiddleware:
    """Answers ``/metrics`` on any host, before tenant routing. With METRICS_TOKEN set (env or
    settings), only ``Authorization: Bearer <token>`` gets the metrics; others get 401."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != metrics.METRICS_PATH:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
        if not metrics.authorized(request.headers.get("Authorization")):
            return HttpResponse("unauthorized\n", status=401, content_type="text/plain",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
        body, content_type = metrics.render(request.headers.get("Accept"))
        return HttpResponse(body, content_type=content_type)


class RequestMetricsMiddleware:
    """Counts each answered request by commune schema, URL name, method and status class,
    and observes its duration by URL name. Put it just before the tenant middleware: it
    then also counts the 404s for unknown hosts (tenant ``-``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(_NOT_MEASURED):
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        # URL names are bounded; an unresolved path (404) is one label, never the path.
        view = (match.view_name or match._func_path) if match else "<unresolved>"
        metrics.observe_request(tenant=_tenant_of(request), view=view, method=request.method,
                                status_code=response.status_code,
                                seconds=time.perf_counter() - started)
        return response
