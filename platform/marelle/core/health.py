"""Liveness and readiness, answered before tenant routing (probes know no commune host)."""

import time

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse

LIVE_PATH = "/healthz/live"
READY_PATH = "/healthz/ready"
# Checking pending migrations loads the migration graph: do it once a minute, not per probe.
_MIGRATIONS_CACHE_SECONDS = 60
_migrations_checked_at = 0.0
_migrations_ok = False


def check_database() -> str | None:
    try:
        connection.set_schema_to_public()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"database: {type(exc).__name__}"
    return None


def check_redis() -> str | None:
    if not settings.REDIS_URL:
        return None
    try:
        import redis

        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        return f"redis: {type(exc).__name__}"
    return None


def check_migrations() -> str | None:
    global _migrations_checked_at, _migrations_ok
    now = time.monotonic()
    if now - _migrations_checked_at > _MIGRATIONS_CACHE_SECONDS or not _migrations_ok:
        executor = MigrationExecutor(connection)
        _migrations_ok = not executor.migration_plan(executor.loader.graph.leaf_nodes())
        _migrations_checked_at = now
    return None if _migrations_ok else "migrations: pending on the public schema"


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == LIVE_PATH:
            return JsonResponse({"status": "ok"})
        if request.path == READY_PATH:
            problems = [p for p in (check_database(), check_redis()) if p]
            if not problems:
                problems = [p for p in (check_migrations(),) if p]
            status = 503 if problems else 200
            return JsonResponse({"status": "ok" if not problems else "unavailable", "problems": problems},
                                status=status)
        return self.get_response(request)
