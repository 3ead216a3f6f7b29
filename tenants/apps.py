from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Communes"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Fail at start-up, not at a family's first payment, if a plugin is broken or a
        # hookimpl is misspelled.
        from marelle.plugin_api.manager import get_registry

        get_registry()
