from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "marelle.audit"
    label = "audit"
    verbose_name = "Journal"
