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


@shared_task(name="marelle.core.send_email", autoretry_for=(OSError,), retry_backoff=30, retry_backoff_max=900,
             max_retries=8)
def send_email(subject: str, body: str, sender: str, recipients: list[str]) -> int:
    """Send one plain-text e-mail; SMTP hiccups are retried with backoff."""
    from django.core.mail import send_mail

    return send_mail(subject, body, sender, recipients, fail_silently=False)
