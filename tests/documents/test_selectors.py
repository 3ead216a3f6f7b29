"""What "Mes documents" shows: per piece the latest state, and what is missing."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from marelle.catalog.models import DocumentType, Service
from marelle.documents.models import DocumentState
from marelle.documents.selectors import document_status_for_family
from marelle.documents.services import document_accept, document_refuse, document_upload
from marelle.families.models import Child

from tests.documents.conftest import PDF, real_queries, upload

PARIS = ZoneInfo("Europe/Paris")


def send(family, document_type, child=None, content=PDF):
    return document_upload(actor=family.guardians.get().user, family=family, document_type=document_type,
                           child=child, uploaded_file=upload("piece.pdf", content))


def missing_labels(family, **kwargs):
    return sorted(slot.label for slot in document_status_for_family(family, **kwargs).missing)


def test_required_child_piece_is_missing_for_each_child(family, assurance):
    status = document_status_for_family(family)
    assert missing_labels(family) == ["Attestation d'assurance – Hugo", "Attestation d'assurance – Léa"]
    assert status.missing_count == 2
    slot = status.missing[0]
    assert slot.required and [s.code for s in slot.required_for] == ["cantine"]
    assert slot.latest is None and slot.state is None


def test_missing_follows_the_latest_state(family, assurance, staff):
    lea = family.children.get(first_name="Léa")
    first = send(family, assurance, child=lea)
    assert missing_labels(family) == ["Attestation d'assurance – Hugo"]  # pending: sent, not missing

    document_refuse(staff=staff, document_id=first.pk, reason="Illisible")
    assert "Attestation d'assurance – Léa" in missing_labels(family)  # refused: to send again
    slot = document_status_for_family(family).slot(assurance.pk, lea.pk)
    assert slot.state == DocumentState.REFUSED and slot.latest.refusal_reason == "Illisible"

    second = send(family, assurance, child=lea, content=PDF + b"v2")
    document_accept(staff=staff, document_id=second.pk)
    slot = document_status_for_family(family).slot(assurance.pk, lea.pk)
    assert slot.state == DocumentState.ACCEPTED and slot.valid_document == second
    assert [d.pk for d in slot.documents] == [second.pk, first.pk]
    assert missing_labels(family) == ["Attestation d'assurance – Hugo"]


def test_expired_piece_is_missing_again_and_a_newer_pending_one_is_not(family, staff):
    quotient = DocumentType.objects.create(code="quotient", label="Attestation CAF", scope="family",
                                           required_for_services=["cantine"], validity_months=12)
    with time_machine.travel(datetime(2026, 1, 10, 9, tzinfo=PARIS), tick=False):
        document_accept(staff=staff, document_id=send(family, quotient).pk)
    assert "Attestation CAF" not in missing_labels(family, today=date(2027, 1, 10))
    assert "Attestation CAF" in missing_labels(family, today=date(2027, 1, 11))
    slot = document_status_for_family(family, today=date(2027, 1, 11)).slot(quotient.pk, None)
    assert slot.state == DocumentState.EXPIRED and slot.valid_document is None

    send(family, quotient, content=PDF + b"2027")
    slot = document_status_for_family(family, today=date(2027, 1, 11)).slot(quotient.pk, None)
    assert slot.state == DocumentState.PENDING and not slot.is_missing


def test_a_pending_renewal_keeps_the_accepted_one_valid(family, staff):
    quotient = DocumentType.objects.create(code="quotient", label="Attestation CAF", scope="family",
                                           required_for_services=["cantine"], validity_months=12)
    accepted = document_accept(staff=staff, document_id=send(family, quotient).pk)
    send(family, quotient, content=PDF + b"renouvellement")
    slot = document_status_for_family(family).slot(quotient.pk, None)
    assert slot.state == DocumentState.PENDING and slot.valid_document == accepted


def test_optional_types_are_listed_but_never_missing(family, domicile):
    status = document_status_for_family(family)
    slot = status.slot(domicile.pk, None)
    assert slot is not None and not slot.required and not slot.is_missing
    assert [s.document_type.code for s in status.family_slots] == ["domicile"]


def test_required_through_the_service_enrolment_rules(family, domicile):
    cantine = Service.objects.get(code="cantine")
    cantine.rules = {**cantine.rules, "enrolment": {**cantine.rules.get("enrolment", {}),
                                                    "required_documents": ["domicile"]}}
    cantine.save()
    assert "Justificatif de domicile" in missing_labels(family)


def test_archived_service_or_type_requires_nothing(family, assurance):
    Service.objects.filter(code="cantine").update(archived_at=datetime(2026, 1, 1, tzinfo=PARIS))
    assert missing_labels(family) == []
    DocumentType.objects.filter(pk=assurance.pk).update(archived_at=datetime(2026, 1, 1, tzinfo=PARIS))
    assert document_status_for_family(family).slots == []


def test_archived_children_have_no_slot_but_their_documents_stay_in_the_history(family, assurance):
    hugo = family.children.get(first_name="Hugo")
    document = send(family, assurance, child=hugo)
    hugo.status = Child.Status.ARCHIVED
    hugo.save()
    status = document_status_for_family(family)
    assert [child.first_name for child, _ in status.child_slots] == ["Léa"]
    assert status.history == [document]


def test_fixed_number_of_queries(family, other_family, assurance, domicile, staff):
    for index in range(4):
        DocumentType.objects.create(code=f"extra-{index}", label=f"Pièce {index}", scope="child" if index % 2 else
                                    "family", required_for_services=["cantine"])
    for child in family.children.all():
        for index in range(3):
            document = send(family, assurance, child=child, content=PDF + bytes([index]))
            if index:
                document_accept(staff=staff, document_id=document.pk)
    send(family, domicile)
    with CaptureQueriesContext(connection) as captured:
        status = document_status_for_family(family)
        for slot in status.slots:
            _ = (slot.state, slot.is_missing, slot.label, slot.required_for, slot.valid_document)
        for document in status.history:
            _ = (document.document_type.label, document.child and document.child.first_name, document.state)
    assert len(status.slots) == 1 + 2 + 2 * 3 and len(status.history) == 7
    # types, services, children, documents (django-tenants adds a SET search_path before each)
    assert len(real_queries(captured)) == 4
