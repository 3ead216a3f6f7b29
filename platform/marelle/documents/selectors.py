"""Reads on pièces justificatives: what a family has sent, what it still has to send.

Which pieces are *required*: a document type is required when at least one active
service of the commune needs it, whether the YAML says so on the type
(``required_for_services``) or on the service (``enrolment.required_documents``). Types
no active service needs are shown as optional ("facultative"): a family may send them,
they are never "missing". A family-scope type is one slot for the household; a
child-scope type is one slot per child of the family that is not archived (active, or
added and awaiting validation).

Until enrolments exist, every service of the commune counts; once they do, a slot should
only be required for the services the family (or that child) is enrolled in.

A slot is *missing* when it is required and has neither a valid accepted document (not
expired) nor one waiting to be checked. Refused and expired ones must be sent again.

Queries: a fixed number (types, services, children, documents), however many types,
children and documents the family has.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from marelle.catalog.models import DocumentType, Service
from marelle.core import clock
from marelle.documents.formats import accept_attribute, accepted_codes, formats_label
from marelle.documents.models import Document, DocumentState
from marelle.families.models import Child, Family


@dataclass
class DocumentSlot:
    """One piece to provide: a document type, for the family or for one child."""

    document_type: DocumentType
    child: Child | None
    required_for: list[Service]
    today: date
    # This slot's documents, most recent first.
    documents: list[Document] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Unique per slot; used for HTML ids and anchors."""
        return f"{self.document_type.pk}-{self.child.pk if self.child else 0}"

    @property
    def required(self) -> bool:
        return bool(self.required_for)

    @property
    def latest(self) -> Document | None:
        return self.documents[0] if self.documents else None

    @property
    def state(self) -> str | None:
        """The latest document's state, None when nothing was sent."""
        return self.latest.state_on(self.today) if self.latest else None

    @property
    def state_label(self) -> str:
        return DocumentState(self.state).label if self.state else ""

    @property
    def valid_document(self) -> Document | None:
        """The most recent accepted document that has not expired."""
        return next((d for d in self.documents if d.state_on(self.today) == DocumentState.ACCEPTED), None)

    @property
    def has_pending(self) -> bool:
        return any(d.status == Document.Status.PENDING for d in self.documents)

    @property
    def is_missing(self) -> bool:
        return self.required and self.valid_document is None and not self.has_pending

    @property
    def formats_label(self) -> str:
        return formats_label(accepted_codes(self.document_type))

    @property
    def accept(self) -> str:
        return accept_attribute(accepted_codes(self.document_type))

    @property
    def label(self) -> str:
        if self.child is None:
            return self.document_type.label
        return f"{self.document_type.label} – {self.child.first_name}"


@dataclass
class FamilyDocuments:
    today: date
    family_slots: list[DocumentSlot]
    # (child, its slots), children in the family's order.
    child_slots: list[tuple[Child, list[DocumentSlot]]]
    # Everything the family sent, most recent first (including types no longer asked for).
    history: list[Document]

    @property
    def slots(self) -> list[DocumentSlot]:
        return self.family_slots + [slot for _, slots in self.child_slots for slot in slots]

    @property
    def missing(self) -> list[DocumentSlot]:
        return [slot for slot in self.slots if slot.is_missing]

    @property
    def missing_count(self) -> int:
        return len(self.missing)

    def slot(self, document_type_id: int, child_id: int | None) -> DocumentSlot | None:
        return next((s for s in self.slots if s.document_type.pk == document_type_id
                     and (s.child.pk if s.child else None) == child_id), None)


def services_requiring(document_types: list[DocumentType]) -> dict[int, list[Service]]:
    """Document type id -> active services that need it (one query)."""
    services = list(Service.objects.active().only("code", "label", "position", "rules"))
    by_code = {s.code: s for s in services}
    result: dict[int, list[Service]] = {}
    for document_type in document_types:
        needed = {code for code in document_type.required_for_services if code in by_code}
        needed |= {s.code for s in services
                   if document_type.code in ((s.rules or {}).get("enrolment") or {}).get("required_documents", [])}
        result[document_type.pk] = [s for s in services if s.code in needed]
    return result


def document_status_for_family(family: Family, *, today: date | None = None) -> FamilyDocuments:
    """Per slot (type × family or child), its documents, latest state, and whether it is
    missing; plus the family's whole history. Four queries."""
    today = today or clock.today()
    types = list(DocumentType.objects.active().order_by("label", "pk"))
    required = services_requiring(types)
    children = list(family.children.exclude(status=Child.Status.ARCHIVED).order_by("birth_date", "first_name"))
    history = list(family.documents.select_related("document_type", "child").order_by("-uploaded_at", "-pk"))

    by_slot: dict[tuple[int, int | None], list[Document]] = defaultdict(list)
    for document in history:
        by_slot[(document.document_type_id, document.child_id)].append(document)

    def make(document_type: DocumentType, child: Child | None) -> DocumentSlot:
        return DocumentSlot(document_type=document_type, child=child, required_for=required[document_type.pk],
                            today=today, documents=by_slot.get((document_type.pk, child.pk if child else None), []))

    # Required pieces first, then optional ones; alphabetical within each.
    ordered = sorted(types, key=lambda t: (not required[t.pk], t.label.lower()))
    family_slots = [make(t, None) for t in ordered if t.scope == "family"]
    child_slots = [(child, [make(t, child) for t in ordered if t.scope == "child"]) for child in children]
    child_slots = [(child, slots) for child, slots in child_slots if slots]
    return FamilyDocuments(today=today, family_slots=family_slots, child_slots=child_slots, history=history)


def pending_documents():
    """The staff review queue, oldest first."""
    return Document.objects.for_review()


def pending_documents_count() -> int:
    return Document.objects.pending().count()


def missing_documents_for_service(child: Child, service: Service, *, today: date | None = None) -> list[str]:
    """Labels of the pieces ``service`` requires that ``child`` (or its family) has not
    provided: no valid accepted document and none waiting to be checked."""
    status = document_status_for_family(child.family, today=today)
    missing = []
    for slot in status.slots:
        needs_it = any(s.pk == service.pk for s in slot.required_for)
        concerns_child = slot.child is None or slot.child.pk == child.pk
        if needs_it and concerns_child and slot.is_missing:
            missing.append(slot.label)
    return missing
