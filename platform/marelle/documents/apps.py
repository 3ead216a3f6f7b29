from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "marelle.documents"
    label = "documents"
    verbose_name = "Pièces justificatives"

    def ready(self):
        # Connects the post_delete receiver that removes a deleted document's file.
        from marelle.documents import services  # noqa: F401
