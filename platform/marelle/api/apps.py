from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "marelle.api"
    label = "api"
    verbose_name = "API des familles"

    def ready(self):
        from marelle.api import signals  # noqa: F401
