from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "marelle.api"
    label = "api"
