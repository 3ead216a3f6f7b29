from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "marelle.ops"
    label = "ops"
    verbose_name = "Exploitation"

    def ready(self):
        from marelle.ops import signals

        signals.connect()
