from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "marelle.portal"
    label = "portal"
    verbose_name = "Portail (pages publiques d'une commune)"
