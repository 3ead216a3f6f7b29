"""The Celery app: every task carries the schema of the tenant that enqueued it.

tenant-schemas-celery (the integration django-tenants documents) puts the current schema
name into each task's headers when it is sent and switches the worker's connection to
that schema before the task runs, then back afterwards.
"""

import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marelle.settings")

app = CeleryApp("marelle")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
