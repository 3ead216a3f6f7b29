"""Reads for the back-office: searches, the family page, the change-request queue.

Querysets here are shaped so that a page costs a fixed number of queries whatever the
number of families, guardians or children it shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from django.db.models import Count, Exists, F, Func, OuterRef, Prefetch, Q, Subquery, Value
from django.utils.dateparse import parse_date
from django.utils.formats import date_format

from marelle.catalog.models import AuthorisationType
from marelle.families.models import (
    ALLERGIES,
    ILLNESSES,
    VACCINES,
    ChangeRequest,
    Child,
    ChildAuthorisation,
    ChildHealth,
    Family,
    Guardian,
)
from marelle.families.services import TARGETS

PHONE_LIKE = re.compile(r"^[\d\s.\-+()/]+$")
REFERENCE = re.compile(r"^[Ff]0*(\d{1,12})$")
GUARDIAN_PHONES = ("phone_mobile", "phone_home", "phone_work")


# --- Search ------------------------------------------------------------------------------


def _digits(field: str):
    return Func(F(field), Value(r"[^0-9]"), Value(""), Value("g"), function="regexp_replace")


def _phone_digits(query: str) -> str | None:
    """The digits of ``query`` when it reads as a phone number ("+33 6 12…" -> "06 12…")."""
    if not PHONE_LIKE.match(query):
        return None
    digits = re.sub(r"\D", "", query)
    if query.lstrip().startswith("+33") or digits.startswith("0033"):
        digits = "0" + digits.removeprefix("00").removeprefix("33")
    return digits if len(digits) >= 4 else None


def _term_filter(term: str) -> Q:
    """One word of the search: found in a guardian (names, e-mails) or a child (names)."""
    guardians = Guardian.objects.filter(family=OuterRef("pk")).filter(
        Q(last_name__icontains=term) | Q(first_name__icontains=term) | Q(email__icontains=term)
        | Q(user__email__icontains=term))
    children = Child.objects.filter(family=OuterRef("pk")).filter(
        Q(last_name__icontains=term) | Q(first_name__icontains=term))
    condition = Q(Exists(guardians)) | Q(Exists(children))
    reference = REFERENCE.match(term)
    if reference:
        condition |= Q(pk=int(reference.group(1)))
    return condition


def family_search(query: str = ""):
    """Families matching ``query`` (every word must match; a phone number matches whatever
    its spacing), ordered by the first guardian's name, guardians and children prefetched."""
    first_guardian = Guardian.objects.filter(family=OuterRef("pk"), position=1)
    families = (Family.objects
                .annotate(sort_last_name=Subquery(first_guardian.values("last_name")[:1]),
                          sort_first_name=Subquery(first_guardian.values("first_name")[:1]),
                          pending_requests=Count("change_requests",
                                                 filter=Q(change_requests__status=ChangeRequest.Status.PENDING)))
                .prefetch_related(
                    Prefetch("guardians", queryset=Guardian.objects.select_related("user").order_by("position")),
                    Prefetch("children", queryset=Child.objects.exclude(status=Child.Status.ARCHIVED)))
                .order_by(F("sort_last_name").asc(nulls_last=True), "sort_first_name", "pk"))
    query = " ".join((query or "").split())
    if not query:
        return families
    digits = _phone_digits(query)
    if digits:
        phones = Q()
        for field in GUARDIAN_PHONES:
            phones |= Q(**{f"{field}_digits__contains": digits})
        by_phone = Guardian.objects.filter(family=OuterRef("pk")).annotate(
            **{f"{field}_digits": _digits(field) for field in GUARDIAN_PHONES}).filter(phones)
        condition = Q(Exists(by_phone))
        if not query.startswith("+"):
            condition |= _term_filter(query.replace(" ", ""))
        return families.filter(condition)
    for term in query.split(" "):
        families = families.filter(_term_filter(term))
    return families


# --- Family page -------------------------------------------------------------------------


def family_for_staff(family_id) -> Family:
    """The family with everything its back-office page shows, in a fixed number of queries.

    Raises Family.DoesNotExist (also for an id that is not a number)."""
    try:
        family_id = int(family_id)
    except (TypeError, ValueError):
        raise Family.DoesNotExist from None
    children = (Child.objects.select_related("health")
                .prefetch_related("contacts",
                                  Prefetch("authorisations",
                                           queryset=ChildAuthorisation.objects.select_related("authorisation_type"))))
    return (Family.objects
            .prefetch_related(
                Prefetch("guardians", queryset=Guardian.objects.select_related("user").order_by("position")),
                Prefetch("children", queryset=children),
                Prefetch("change_requests",
                         queryset=ChangeRequest.objects.filter(status=ChangeRequest.Status.PENDING)
                         .select_related("requested_by").order_by("requested_at", "pk"),
                         to_attr="pending_requests"))
            .get(pk=family_id))


def authorisation_rows(child: Child, types: list[AuthorisationType]) -> list[tuple[str, str]]:
    """(label, answer) for every active authorisation type, then answers to archived types."""
    answers = {a.authorisation_type_id: a for a in child.authorisations.all()}
    rows = []
    for kind in types:
        answer = answers.pop(kind.pk, None)
        rows.append((kind.label, answer.get_answer_display() if answer else "Non renseignée"))
    for answer in answers.values():
        rows.append((answer.authorisation_type.label, answer.get_answer_display()))
    return rows


def active_authorisation_types() -> list[AuthorisationType]:
    return list(AuthorisationType.objects.active())


def quotient_bracket(config, quotient: int | None) -> str | None:
    """The label of the commune's bracket the quotient falls in."""
    if quotient is None:
        return None
    for bracket in config.quotient_brackets:
        if bracket.max_quotient is None or quotient <= bracket.max_quotient:
            return bracket.label
    return None


# --- Display of values -------------------------------------------------------------------


def _format_date(value) -> str:
    if isinstance(value, str):
        parsed = parse_date(value)
        if parsed is None:
            return value
        value = parsed
    return date_format(value, "d/m/Y")


def vaccinations_display(value: dict) -> list[str]:
    labels = dict(VACCINES)
    lines = []
    for code, state in (value or {}).items():
        if not isinstance(state, dict) or not state.get("done"):
            continue
        line = labels.get(code, code)
        if state.get("last"):
            line += f" (dernier rappel le {_format_date(state['last'])})"
        lines.append(line)
    return lines


def illnesses_display(value: dict) -> list[str]:
    labels = dict(ILLNESSES)
    return [labels.get(code, code) for code, had in (value or {}).items() if had]


def allergies_display(value: dict) -> list[str]:
    labels = dict(ALLERGIES)
    lines = []
    for code, state in (value or {}).items():
        if isinstance(state, dict):
            if not state.get("has"):
                continue
            details = state.get("details")
        elif state:
            details = None
        else:
            continue
        lines.append(labels.get(code, code) + (f" ({details})" if details else ""))
    return lines


JSON_DISPLAY = {"vaccinations": vaccinations_display, "illnesses": illnesses_display, "allergies": allergies_display}
JSON_LABELS = {"vaccinations": "vaccinations", "illnesses": "maladies déjà eues", "allergies": "allergies"}
# Targets that are not model rows of TARGETS.
OTHER_LABELS = {"email": {"email": "adresse e-mail de connexion"}}


def value_display(model, name: str, value) -> str:
    """A stored (JSON) value as staff should read it."""
    if name in JSON_DISPLAY and model is ChildHealth:
        lines = JSON_DISPLAY[name](value if isinstance(value, dict) else {})
        return ", ".join(lines) if lines else "aucune"
    if value is None or value == "":
        return "—"
    field = None
    if model is not None:
        try:
            field = model._meta.get_field(name)
        except Exception:  # noqa: BLE001 - a field removed since the request was filed
            field = None
    if field is not None and field.choices:
        return str(dict(field.flatchoices).get(value, value))
    if isinstance(value, bool):
        return "Oui" if value else "Non"
    if field is not None and field.get_internal_type() == "DateField":
        return _format_date(value)
    if isinstance(value, date):
        return _format_date(value)
    return str(value)


def field_label(model, target: str, name: str) -> str:
    if model is not None:
        if name in JSON_LABELS and model is ChildHealth:
            return JSON_LABELS[name]
        try:
            return str(model._meta.get_field(name).verbose_name)
        except Exception:  # noqa: BLE001
            pass
    return OTHER_LABELS.get(target, {}).get(name, name.replace("_", " "))


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class ChangeRow:
    label: str
    previous: str
    new: str


def change_rows(change_request: ChangeRequest) -> list[ChangeRow]:
    """Field by field, the previous and the new value with the field's French name."""
    model = TARGETS.get(change_request.target)
    previous = change_request.previous or {}
    rows = []
    for name, new in (change_request.data or {}).items():
        rows.append(ChangeRow(
            label=_upper_first(field_label(model, change_request.target, name)),
            previous=value_display(model, name, previous.get(name)) if name in previous else "—",
            new=value_display(model, name, new)))
    return rows


def is_health_request(change_request: ChangeRequest) -> bool:
    return change_request.target == "health"


def health_request_children(change_requests) -> dict[int, int]:
    """ChildHealth id -> child id, for the health requests among ``change_requests`` (1 query)."""
    ids = {cr.object_id for cr in change_requests if is_health_request(cr) and cr.object_id}
    if not ids:
        return {}
    return dict(ChildHealth.objects.filter(pk__in=ids).values_list("pk", "child_id"))


def pending_change_requests():
    return (ChangeRequest.objects.filter(status=ChangeRequest.Status.PENDING)
            .select_related("family", "requested_by")
            .prefetch_related(Prefetch("family__guardians", queryset=Guardian.objects.order_by("position")))
            .order_by("requested_at", "pk"))


def pending_change_request_count() -> int:
    return ChangeRequest.objects.filter(status=ChangeRequest.Status.PENDING).count()


# --- Other apps, when they are there -----------------------------------------------------


def pending_documents_count() -> int | None:
    """Documents waiting for review, from the documents app's selectors (None without them)."""
    try:
        from marelle.documents import selectors as documents
    except ImportError:
        return None
    if hasattr(documents, "pending_documents_count"):
        return documents.pending_documents_count()
    if hasattr(documents, "pending_documents"):
        return documents.pending_documents().count()
    return None


def family_documents(family: Family):
    """The family's pièces justificatives per slot (documents app), or None without it."""
    try:
        from marelle.documents.selectors import document_status_for_family
    except ImportError:
        return None
    # A bare instance: the page's prefetches on ``family.children`` must not be redone for the
    # documents' own children query.
    return document_status_for_family(Family(pk=family.pk))


DOCUMENTS_QUEUE_URL_NAME = "documents:review_queue"


def documents_queue_url() -> str | None:
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse(DOCUMENTS_QUEUE_URL_NAME)
    except NoReverseMatch:
        return None


def health_rows(health: ChildHealth | None) -> list[tuple[str, str]]:
    """The medical block of a child, as (label, text) rows. Only for callers that recorded the
    read (services.reveal_health_data)."""
    if health is None:
        return [("Renseignements médicaux", "Non renseignés")]
    pai = "Oui" if health.pai else "Non"
    if health.pai and health.pai_details:
        pai += f" — {health.pai_details}"
    doctor = ", ".join(part for part in (health.doctor_name, health.doctor_phone, health.doctor_city) if part)
    return [
        ("PAI (projet d'accueil individualisé)", pai),
        ("Allergies", ", ".join(allergies_display(health.allergies)) or "Aucune signalée"),
        ("Vaccinations", ", ".join(vaccinations_display(health.vaccinations)) or "Non renseignées"),
        ("Maladies déjà eues", ", ".join(illnesses_display(health.illnesses)) or "Non renseignées"),
        ("Antécédents médicaux", health.medical_history or "—"),
        ("Observations", health.observations or "—"),
        ("Médecin traitant", doctor or "—"),
    ]


def age_label(birth_date: date, today: date) -> str:
    years = today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))
    if years >= 2:
        return f"{years} ans"
    months = (today.year - birth_date.year) * 12 + today.month - birth_date.month - (today.day < birth_date.day)
    return f"{max(months, 0)} mois"
