"""Reads for the family pages."""

from dataclasses import dataclass, field

from django.db.models import Count, Q

from marelle.catalog.models import AuthorisationType
from marelle.families.models import ChangeRequest, Child, Family


@dataclass
class ChildSummary:
    child: Child
    to_do: list[str] = field(default_factory=list)


@dataclass
class FamilySummary:
    guardian_to_do: list[str]
    children: list[ChildSummary]
    pending_requests: list[ChangeRequest]
    documents: object = None  # the documents app's status, when installed

    @property
    def attention_count(self) -> int:
        return len(self.guardian_to_do) + sum(len(c.to_do) for c in self.children)


def family_home_summary(family: Family) -> FamilySummary:
    """What the family home shows, and what needs the family's attention (fixed query count)."""
    guardian = family.primary_guardian
    guardian_to_do = []
    if guardian and not (guardian.address_line and guardian.postcode and guardian.city):
        guardian_to_do.append("Adresse à compléter")
    if guardian and not (guardian.phone_mobile or guardian.phone_home or guardian.phone_work):
        guardian_to_do.append("Téléphone à compléter")
    if family.quotient is None:
        guardian_to_do.append("Quotient familial non renseigné (tarif le plus élevé appliqué)")

    authorisation_count = AuthorisationType.objects.active().count()
    children = (
        family.children.exclude(status=Child.Status.ARCHIVED)
        .annotate(emergency_contacts=Count("contacts", filter=Q(contacts__is_emergency_contact=True), distinct=True),
                  answered=Count("authorisations", filter=Q(authorisations__authorisation_type__archived_at__isnull=True),
                                 distinct=True))
    )
    summaries = []
    for child in children:
        to_do = []
        if child.status == Child.Status.PENDING:
            to_do.append("Fiche en attente de validation par la commune")
        if child.consent_at is None:
            to_do.append("Fiche à valider (« J'accepte »)")
        if child.emergency_contacts == 0:
            to_do.append("Aucune personne à contacter en cas d'urgence")
        if child.answered < authorisation_count:
            to_do.append("Autorisations à renseigner")
        summaries.append(ChildSummary(child, to_do))

    documents = None
    try:
        from marelle.documents.selectors import document_status_for_family
    except ImportError:
        document_status_for_family = None
    if document_status_for_family is not None:
        documents = document_status_for_family(family)
    pending = list(family.change_requests.filter(status=ChangeRequest.Status.PENDING))
    return FamilySummary(guardian_to_do, summaries, pending, documents)
