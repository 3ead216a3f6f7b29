from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "marelle.core"
    label = "marelle_core"
    verbose_name = "Marelle"
