"""`manage.py demo seed`: demo staff and families in every active commune (idempotent).

Everything goes through the same services as the web pages: sign-up data, children,
documents (uploaded then accepted by the demo agent) and enrolments in the services the
children are old enough for.
"""

from datetime import date

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from tenants.models import Commune

DEMO_PASSWORD = "marelle-demo-2026"
# (key, civility, first name, last name, quotient, children as (first name, birth date, sex))
DEMO_FAMILIES = [
    ("martin", "mme", "Claire", "Martin", 620, [("Léa", date(2018, 3, 14), "f"), ("Tom", date(2020, 11, 2), "m")]),
    ("benali", "m", "Karim", "Benali", 1150, [("Inès", date(2016, 6, 30), "f")]),
    ("petit", "mme", "Julie", "Petit", None, [("Noé", date(2024, 9, 5), "m")]),
]
MINIMAL_PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


class Command(BaseCommand):
    help = "Crée les comptes de démonstration (agents et familles) dans chaque commune active."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("seed", help="Créer ou compléter les données de démonstration.")

    def handle(self, *args, action, **options):
        communes = Commune.objects.filter(status=Commune.Status.ACTIVE).exclude(kind=Commune.Kind.PLATFORM)
        for commune in communes:
            with tenant_context(commune):
                created = self.seed_commune(commune)
            self.stdout.write(f"{commune.slug} : {created} compte(s) de démonstration créé(s) "
                              f"(mot de passe : {DEMO_PASSWORD})")

    @transaction.atomic
    def seed_commune(self, commune) -> int:
        User = get_user_model()
        staff, created_staff = User.objects.get_or_create(
            email=f"agent@{commune.slug}.demo",
            defaults={"first_name": "Agent", "last_name": "Démo", "is_active": True, "is_staff": True,
                      "staff_role": "administrateur", "email_verified_at": timezone.now()})
        if created_staff:
            staff.set_password(DEMO_PASSWORD)
            staff.save(update_fields=["password"])
        created = int(created_staff)
        for key, civility, first, last, quotient, children in DEMO_FAMILIES:
            email = f"{key}@{commune.slug}.demo"
            if User.objects.filter(email=email).exists():
                continue
            # The Martins' requests are already validated; the others wait in the staff queues.
            self.seed_family(staff, email, civility, first, last, quotient, children, validated=key == "martin")
            created += 1
        return created

    def seed_family(self, staff, email, civility, first, last, quotient, children, *, validated: bool):
        from marelle.booking.services import (
            EnrolmentRefused,
            enrolment_adhesion_paid,
            enrolment_create,
            enrolment_decide,
            enrolment_obstacles,
        )
        from marelle.catalog.models import AuthorisationType, DocumentType, Service
        from marelle.documents.services import document_accept, document_upload
        from marelle.families.models import ChildContact, Family, Guardian
        from marelle.families.services import authorisations_save, child_create

        user = get_user_model().objects.create_user(email, DEMO_PASSWORD, first_name=first, last_name=last,
                                                    is_active=True, email_verified_at=timezone.now())
        family = Family.objects.create(quotient=quotient, situation="maries", allowance_scheme="caf",
                                       allowance_number="1234567", dependent_children=len(children),
                                       quotient_verified_until=date(timezone.now().year + 1, 12, 31) if quotient else None)
        Guardian.objects.create(family=family, user=user, position=1, civility=civility, first_name=first,
                                last_name=last, email=email, phone_mobile="06 12 34 56 78",
                                address_line="12 rue de la Mairie", postcode="26300", city="Alixan")
        authorisations = list(AuthorisationType.objects.active())
        for name, birth, sex in children:
            child, _ = child_create(actor=staff, family=family,
                                    data={"last_name": last, "first_name": name, "birth_date": birth, "sex": sex})
            ChildContact.objects.create(child=child, last_name="Roux", first_name="Anne", relationship="Grand-mère",
                                        phone_1="04 75 00 00 00", is_emergency_contact=True, can_pick_up=True)
            authorisations_save(actor=staff, child=child, answers={a.pk: "oui" for a in authorisations})
            for document_type in DocumentType.objects.active():
                if document_type.scope == "child" or child == family.children.first():
                    upload = SimpleUploadedFile(f"{document_type.code}.pdf", MINIMAL_PDF, "application/pdf")
                    document = document_upload(actor=staff, family=family, document_type=document_type,
                                               child=child if document_type.scope == "child" else None,
                                               uploaded_file=upload)
                    document_accept(staff=staff, document_id=document.pk)
            for service in Service.objects.active().prefetch_related("establishments", "periods"):
                period = service.periods.filter(archived_at__isnull=True).first()
                establishment = service.establishments.filter(archived_at__isnull=True).first()
                if period is None or establishment is None or enrolment_obstacles(child, service, period):
                    continue
                try:
                    enrolment = enrolment_create(actor=staff, child=child, service=service,
                                                 establishment=establishment, period=period)
                except EnrolmentRefused:
                    continue  # e.g. enrolments not open yet for that period
                if validated and enrolment.status == "pending":
                    enrolment_decide(staff=staff, enrolment_id=enrolment.pk, accept=True)
                if enrolment.adhesion == "awaiting_payment" and name != children[0][0]:
                    enrolment_adhesion_paid(actor=staff, enrolment_id=enrolment.pk, source="démonstration")
