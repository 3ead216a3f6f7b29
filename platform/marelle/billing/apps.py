from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "marelle.billing"
    label = "billing"
    verbose_name = "Facturation et paiements"
