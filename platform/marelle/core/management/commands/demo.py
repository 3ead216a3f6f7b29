"""`manage.py demo seed`: demo accounts in every active commune (idempotent).

Family records, children and bookings are added here as those features land.
"""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django_tenants.utils import tenant_context

from tenants.models import Commune

DEMO_PASSWORD = "marelle-demo-2026"
DEMO_FAMILIES = [
    ("martin", "Claire", "Martin"),
    ("benali", "Karim", "Benali"),
]


class Command(BaseCommand):
    help = "Crée les comptes de démonstration (agents et familles) dans chaque commune active."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("seed", help="Créer ou compléter les données de démonstration.")

    def handle(self, *args, action, **options):
        User = get_user_model()
        communes = Commune.objects.filter(status=Commune.Status.ACTIVE).exclude(kind=Commune.Kind.PLATFORM)
        for commune in communes:
            with tenant_context(commune):
                accounts = [(f"agent@{commune.slug}.demo", "Agent", "Démo", True)] + [
                    (f"{key}@{commune.slug}.demo", first, last, False) for key, first, last in DEMO_FAMILIES
                ]
                created = 0
                for email, first, last, staff in accounts:
                    user, was_created = User.objects.get_or_create(
                        email=email, defaults={"first_name": first, "last_name": last, "is_active": True,
                                               "is_staff": staff, "staff_role": "administrateur" if staff else ""})
                    if was_created:
                        user.set_password(DEMO_PASSWORD)
                        user.save(update_fields=["password"])
                        created += 1
                self.stdout.write(f"{commune.slug} : {created} compte(s) de démonstration créé(s) "
                                  f"(mot de passe : {DEMO_PASSWORD})")
