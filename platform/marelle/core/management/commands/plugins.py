from django.core.management.base import BaseCommand

from marelle.plugin_api.manager import get_registry


class Command(BaseCommand):
    help = "Liste les plugins chargés, leurs fournisseurs de paiement et d'où ils viennent."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Lister les plugins chargés.")

    def handle(self, *args, action, **options):
        registry = get_registry()
        if not registry.plugins:
            self.stdout.write("Aucun plugin chargé.")
        for plugin in registry.plugins:
            self.stdout.write(f"{plugin.name:<16} {plugin.module:<36} {plugin.origin}  ({plugin.path})")
            for identifier, provider in registry.payment_providers.items():
                if identifier == plugin.name:
                    fields = ", ".join(provider.settings_schema.model_fields) or "aucun réglage"
                    self.stdout.write(f"    paiement : {provider.verbose_name} — réglages : {fields}")
