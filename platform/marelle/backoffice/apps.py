from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "marelle.backoffice"
    label = "backoffice"
