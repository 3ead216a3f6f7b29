from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "marelle.recovery"
    label = "recovery"
    verbose_name = "Recouvrement (Trésor public)"
