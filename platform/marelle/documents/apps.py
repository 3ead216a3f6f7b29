from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "marelle.documents"
    label = "documents"
