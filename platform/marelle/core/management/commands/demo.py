"""`manage.py demo seed`: demo staff and families in every active commune (idempotent).

Everything goes through the same services as the web pages: sign-up data, children,
documents (uploaded then accepted by the demo agent) and enrolments in the services the
children are old enough for.
"""

from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from marelle.core import clock
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
        self.seed_last_month(staff)
        return created

    def seed_last_month(self, staff) -> None:
        """Last month's meals and days for the children whose bookings are open, booked as if
        at the start of that month (the rules then allowed it), and last month's invoicing
        run issued in every régie: the demo families have invoices to pay online (or, in a
        Trésor public régie, for the régisseur to transmit). Once per month and commune."""
        from datetime import datetime, time

        from marelle.billing.invoicing import MONTH_NAMES, invoicing_run_draft, invoicing_run_issue
        from marelle.billing.models import InvoicingRun
        from marelle.booking.attendance import AttendanceEntry, attendance_record
        from marelle.booking.models import Attendance, Booking, Enrolment
        from marelle.booking.services import (
            Change,
            ReservationRejected,
            booking_decide,
            plan_changes,
            reservation_submit,
            service_config,
        )
        from marelle.catalog.models import Regie
        from marelle.core import clock

        end = clock.today().replace(day=1) - timedelta(days=1)
        start = end.replace(day=1)
        if InvoicingRun.objects.filter(period_start=start, period_end=end).exists():
            return
        booked_at = datetime.combine(start - timedelta(days=21), time(9), tzinfo=clock.PARIS)
        enrolments = (Enrolment.objects.filter(status=Enrolment.Status.ACCEPTED)
                      .exclude(adhesion=Enrolment.Adhesion.AWAITING_PAYMENT)
                      .select_related("child__family", "service", "period", "establishment"))
        for enrolment in enrolments:
            unit = enrolment.service.units.filter(archived_at__isnull=True).exclude(kind="time_range").first()
            if unit is None:
                continue
            days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
            planned, _ = plan_changes(enrolment=enrolment, changes=[Change(d, unit.code) for d in days], now=booked_at)
            changes = [p.change for p in planned][:12]
            if not changes:
                continue
            try:
                reservation = reservation_submit(actor=enrolment.child.family.primary_guardian.user,
                                                 enrolment=enrolment, changes=changes, now=booked_at)
            except ReservationRejected:
                continue  # a weekly minimum or maximum the first days do not meet
            requested = list(reservation.lines.filter(state=Booking.State.REQUESTED).values_list("pk", flat=True))
            if requested:  # the agent validated the requests during the month
                booking_decide(staff=staff, booking_ids=requested, accept=True)
            if service_config(enrolment.service).pricing.basis == "attended":  # billed on the roll call
                for line in reservation.lines.filter(state=Booking.State.ACCEPTED):
                    attendance_record(staff=staff, establishment=enrolment.establishment, unit=unit, day=line.day,
                                      entries=[AttendanceEntry(enrolment.child_id, Attendance.Status.PRESENT)])
        label = f"{MONTH_NAMES[start.month - 1].capitalize()} {start.year}"
        for regie in Regie.objects.filter(archived_at__isnull=True):
            run = invoicing_run_draft(actor=staff, regie=regie, period_start=start, period_end=end, label=label)
            if run.invoices.exists():
                invoicing_run_issue(actor=staff, run_id=run.pk)
            else:
                run.delete()

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
                periods = list(service.periods.filter(archived_at__isnull=True))  # by start
                # The period under way or the next one (this year's Toussaint is over by Christmas).
                period = next((p for p in periods if p.end >= clock.today()), periods[-1] if periods else None)
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
                if validated:
                    self.seed_request(user, enrolment)

    def seed_request(self, user, enrolment) -> None:
        """Where the service's bookings are requests, two days (or the weekly minimum) of the
        first week the rules still accept, asked for by the family: they wait in the staff's
        queue."""
        from marelle.booking.models import Enrolment
        from marelle.booking.services import (
            Change,
            ReservationRejected,
            plan_changes,
            reservation_submit,
            service_config,
        )

        rules = service_config(enrolment.service).booking
        if rules.mode != "request" or not enrolment.booking_open:
            return
        # As a submission expects it: with its child's family, service, period and establishment.
        enrolment = Enrolment.objects.select_related("child__family", "service", "period", "establishment").get(
            pk=enrolment.pk)
        unit = enrolment.service.units.filter(archived_at__isnull=True).exclude(kind="time_range").first()
        if unit is None:
            return
        first = max(clock.today(), enrolment.period.start)
        days = [first + timedelta(days=n) for n in range((enrolment.period.end - first).days + 1)]
        planned, _ = plan_changes(enrolment=enrolment, changes=[Change(day, unit.code) for day in days])
        weeks: dict = {}
        for line in planned:
            weeks.setdefault(line.change.day.isocalendar()[:2], []).append(line.change)
        needed = rules.min_days_per_week or 1
        week = next((changes for changes in weeks.values() if len(changes) >= needed), None)
        if week is None:
            return
        try:
            reservation_submit(actor=user, enrolment=enrolment, changes=week[:max(needed, 2)])
        except ReservationRejected:
            pass  # another limit (days per period…): no demo request there
