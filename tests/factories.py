"""Small builders for test data, used inside an active commune schema."""

from datetime import date

from django.contrib.auth import get_user_model
from django.utils import timezone
from marelle.families.models import Child, ChildHealth, Family, Guardian

PASSWORD = "Un-mot-de-passe-solide-42"


def make_family(email="parent@example.fr", *, last_name="Martin", first_name="Claire", children=("Léa",),
                password=PASSWORD) -> Family:
    """An active account holding a family with its first guardian and children."""
    user = get_user_model().objects.create_user(email, password, first_name=first_name, last_name=last_name,
                                                is_active=True)
    family = Family.objects.create(quotient=650)
    Guardian.objects.create(family=family, user=user, position=1, civility="mme", last_name=last_name,
                            first_name=first_name, email=email, phone_mobile="06 12 34 56 78",
                            address_line="1 place de la Mairie", postcode="26300", city="Alixan")
    for index, name in enumerate(children):
        child = Child.objects.create(family=family, last_name=last_name, first_name=name,
                                     birth_date=date(2018, 3, 1 + index), sex="f", consent_at=timezone.now())
        ChildHealth.objects.create(child=child, allergies={"alimentaire": {"has": True, "details": "arachide"}})
    return family


def make_staff(email="agent@example.fr", role="agent", password=PASSWORD):
    return get_user_model().objects.create_user(email, password, first_name="Agent", last_name="Mairie",
                                                is_active=True, is_staff=True, staff_role=role)


def accept_document(child, code="assurance"):
    """An accepted, valid piece of ``code`` for ``child`` (its family for family-scope types)."""
    from marelle.catalog.models import DocumentType
    from marelle.documents.models import Document

    document_type = DocumentType.objects.get(code=code)
    return Document.objects.create(
        family=child.family, child=child if document_type.scope == "child" else None, document_type=document_type,
        file=f"documents/{child.family_id}/test.pdf", original_name="test.pdf", content_type="application/pdf",
        size_bytes=100, sha256="0" * 64, status="accepted", reviewed_at=timezone.now())


def enrol(child, service_code, *, actor=None):
    """An accepted enrolment of ``child`` in the first establishment and period of the service."""
    from marelle.booking.services import enrolment_create
    from marelle.catalog.models import Service

    service = Service.objects.get(code=service_code)
    return enrolment_create(actor=actor, child=child, service=service, establishment=service.establishments.first(),
                            period=service.periods.first())
