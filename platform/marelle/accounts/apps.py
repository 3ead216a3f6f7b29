from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "marelle.accounts"
    label = "accounts"
    verbose_name = "Comptes"
