"""Bring a commune schema's catalog in line with its validated YAML.

``plan_catalog`` compares what the YAML describes with the rows in the current schema and
returns the changes; ``apply_catalog`` carries them out. Both run inside the commune's
schema (the caller activates it). Nothing is ever deleted: a row that left the YAML is
archived, and comes back (restored) if the YAML names it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from django.db import models
from django.utils import timezone

from marelle.catalog.models import (
    AuthorisationType,
    DocumentType,
    Establishment,
    Period,
    Regie,
    Service,
    Unit,
)
from tenants.commune_config.schema import CommuneConfig

Action = Literal["create", "update", "archive", "restore"]


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str  # model label, e.g. "service"
    key: str  # natural key, e.g. "cantine" or "cantine/repas"
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        verb = {"create": "créé", "update": "modifié", "archive": "archivé", "restore": "restauré"}[self.action]
        detail = ""
        if self.action == "update" and self.fields:
            detail = " (" + ", ".join(sorted(self.fields)) + ")"
        return f"{self.kind} « {self.key} » {verb}{detail}"

    def as_json(self) -> dict:
        return {"action": self.action, "kind": self.kind, "key": self.key,
                "fields": {k: [_jsonable(a), _jsonable(b)] for k, (a, b) in self.fields.items()}}


def _jsonable(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


@dataclass(frozen=True)
class Entity:
    """How one catalog model is keyed and which parent it hangs under."""

    kind: str
    model: type[models.Model]
    parent_field: str | None = None  # FK to Service for child rows


ENTITIES = [
    Entity("régie", Regie),
    Entity("service", Service),
    Entity("établissement", Establishment, "service"),
    Entity("période", Period, "service"),
    Entity("unité", Unit, "service"),
    Entity("type de pièce", DocumentType),
    Entity("type d'autorisation", AuthorisationType),
]


def desired_rows(config: CommuneConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Per entity kind, natural key -> field values (foreign keys as codes)."""
    tz = ZoneInfo(config.identity.timezone)

    def aware(value: datetime | None):
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=tz)

    rows: dict[str, dict[str, dict[str, Any]]] = {e.kind: {} for e in ENTITIES}
    for regie in config.regies:
        rows["régie"][regie.code] = {
            "label": regie.label,
            "invoice_prefix": regie.invoice_prefix,
            # No plugin: payable only at the régie's own desk.
            "payment_plugin": regie.payment.plugin if regie.payment else "",
            "payment_settings": regie.payment.settings if regie.payment else {},
            "online_payment_windows": [w.model_dump(mode="json") for w in regie.online_payment_windows],
            "invoicing": regie.invoicing.model_dump(mode="json"),
        }
    for position, service in enumerate(config.services):
        rows["service"][service.code] = {
            "kind": service.kind,
            "label": service.label,
            "description": service.description or "",
            "regie": service.regie,
            "min_age_months": service.age_range.min_age_months,
            "max_age_months": service.age_range.max_age_months,
            "position": position,
            "rules": service.model_dump(mode="json", include={"enrolment", "opening", "booking", "pricing"}),
        }
        for establishment in service.establishments:
            rows["établissement"][f"{service.code}/{establishment.code}"] = {
                "service": service.code,
                "label": establishment.label,
                "address": establishment.address or "",
                "capacity": establishment.capacity,
                "unit_capacities": establishment.unit_capacities,
            }
        for period in service.periods:
            rows["période"][f"{service.code}/{period.code}"] = {
                "service": service.code,
                "label": period.label,
                "kind": period.kind,
                "start": period.start,
                "end": period.end,
                "enrolment_opens": aware(period.enrolment_opens),
                "enrolment_closes": aware(period.enrolment_closes),
                "booking_opens": aware(period.booking_opens),
                "booking_closes": aware(period.booking_closes),
            }
        for unit_position, unit in enumerate(service.units):
            rows["unité"][f"{service.code}/{unit.code}"] = {
                "service": service.code,
                "label": unit.label,
                "kind": unit.kind,
                "start_time": unit.start,
                "end_time": unit.end,
                "step_minutes": unit.step_minutes,
                "weekdays": unit.weekdays or [],
                "position": unit_position,
            }
    for document in config.document_types:
        rows["type de pièce"][document.code] = {
            "label": document.label,
            "scope": document.scope,
            "required_for_services": document.required_for_services,
            "validity_months": document.validity_months,
            "accepted_formats": document.accepted_formats,
            "max_size_mb": document.max_size_mb,
        }
    for position, authorisation in enumerate(config.authorisation_types):
        rows["type d'autorisation"][authorisation.code] = {
            "label": authorisation.label,
            "description": authorisation.description or "",
            "position": position,
        }
    return rows


def _existing(entity: Entity) -> dict[str, models.Model]:
    queryset = entity.model.objects.all()
    if entity.kind == "service":
        queryset = queryset.select_related("regie")
    if entity.parent_field:
        queryset = queryset.select_related(entity.parent_field)
        return {f"{row.service.code}/{row.code}": row for row in queryset}
    return {row.code: row for row in queryset}


def _current_value(row: models.Model, name: str):
    if name in ("regie", "service"):
        return getattr(row, name).code
    return getattr(row, name)


def plan_catalog(config: CommuneConfig, *, schema_is_new: bool = False) -> list[Change]:
    wanted = desired_rows(config)
    changes: list[Change] = []
    for entity in ENTITIES:
        existing = {} if schema_is_new else _existing(entity)
        for key, values in wanted[entity.kind].items():
            row = existing.get(key)
            if row is None:
                changes.append(Change("create", entity.kind, key))
                continue
            diff = {
                name: (_current_value(row, name), value)
                for name, value in values.items()
                if _current_value(row, name) != value
            }
            if row.archived_at is not None:
                changes.append(Change("restore", entity.kind, key, diff))
            elif diff:
                changes.append(Change("update", entity.kind, key, diff))
        for key, row in existing.items():
            if key not in wanted[entity.kind] and row.archived_at is None:
                changes.append(Change("archive", entity.kind, key))
    return changes


def apply_catalog(config: CommuneConfig, changes: list[Change]) -> None:
    """Carry out ``changes`` (from :func:`plan_catalog`) in the current schema."""
    if not changes:
        return
    wanted = desired_rows(config)
    now = timezone.now()
    by_kind: dict[str, list[Change]] = {}
    for change in changes:
        by_kind.setdefault(change.kind, []).append(change)
    for entity in ENTITIES:  # parents before children
        todo = by_kind.get(entity.kind)
        if not todo:
            continue
        existing = _existing(entity)
        regies = {r.code: r for r in Regie.objects.all()} if entity.kind == "service" else {}
        services = {s.code: s for s in Service.objects.all()} if entity.parent_field else {}
        for change in todo:
            if change.action == "archive":
                row = existing[change.key]
                row.archived_at = now
                row.save(update_fields=["archived_at"])
                continue
            values = dict(wanted[entity.kind][change.key])
            if "regie" in values:
                values["regie"] = regies[values["regie"]]
            if "service" in values:
                values["service"] = services[values["service"]]
            code = change.key.split("/")[-1]
            row = existing.get(change.key) or entity.model(code=code)
            for name, value in values.items():
                setattr(row, name, value)
            row.archived_at = None
            row.save()
