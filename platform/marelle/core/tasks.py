"""Platform-level tasks."""

from celery import shared_task
from django.db import connection


@shared_task(name="marelle.core.tenant_probe")
def tenant_probe() -> dict:
    """Report which schema the worker ran this task in (health checks, tenancy tests)."""
    from marelle.catalog.models import Service

    tenant = getattr(connection, "tenant", None)
    return {
        "schema": connection.schema_name,
        "commune": getattr(tenant, "slug", None),
        "services": sorted(Service.objects.values_list("code", flat=True))
        if connection.schema_name != "public" else [],
    }
