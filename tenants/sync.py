"""``communes sync``: provision and update communes from their validated YAML.

Each commune is applied in one transaction: its public row, its domains, its schema (for
a new commune) and its catalog either all change or none does. A commune whose YAML
digest is unchanged is skipped without touching its schema, so a re-sync of every commune
costs one query.
"""

from __future__ import annotations

import time as monotonic
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import schema_context, schema_exists
from marelle.catalog.sync import Change, apply_catalog, plan_catalog

from tenants.commune_config.validation import LoadedCommune
from tenants.models import Commune, Domain, SyncRun

Outcome = Literal["created", "updated", "unchanged", "failed"]


@dataclass
class CommunePlan:
    slug: str
    file: str
    outcome: Outcome
    commune_fields: dict[str, tuple] = field(default_factory=dict)
    domains_added: list[str] = field(default_factory=list)
    domains_removed: list[str] = field(default_factory=list)
    catalog: list[Change] = field(default_factory=list)
    error: str = ""
    duration_ms: int = 0

    def lines(self) -> list[str]:
        title = {"created": "créée", "updated": "mise à jour", "unchanged": "inchangée",
                 "failed": "ÉCHEC"}[self.outcome]
        out = [f"{self.slug} ({self.file}) : {title} en {self.duration_ms} ms"]
        for name, (old, new) in self.commune_fields.items():
            if self.outcome == "updated":
                out.append(f"  commune : {name} « {old} » → « {new} »")
        out += [f"  domaine ajouté : {d}" for d in self.domains_added]
        out += [f"  domaine retiré : {d}" for d in self.domains_removed]
        out += [f"  {change.describe()}" for change in self.catalog]
        if self.error:
            out.append(f"  erreur : {self.error}")
        return out

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for change in self.catalog:
            counts[change.action] = counts.get(change.action, 0) + 1
        return counts


def platform_domain_for(slug: str) -> str:
    return f"{slug}.{settings.PLATFORM_DOMAIN}"


def display_path(path) -> str:
    """The file as operators know it: relative to the repository when it lives there."""
    try:
        return str(path.resolve().relative_to(settings.REPO_DIR))
    except ValueError:
        return str(path)


def wanted_domains(loaded: LoadedCommune) -> list[str]:
    return [platform_domain_for(loaded.config.slug), *loaded.config.domains]


def commune_field_values(loaded: LoadedCommune) -> dict:
    identity = loaded.config.identity
    return {
        "name": identity.name,
        "kind": identity.kind,
        "siren": identity.siren,
        "config_file": display_path(loaded.path),
    }


def sync_communes(communes: list[LoadedCommune], *, dry_run: bool = False, force: bool = False,
                  run_by: str = "") -> list[CommunePlan]:
    ensure_public_tenant()
    return [sync_commune(loaded, dry_run=dry_run, force=force, run_by=run_by) for loaded in communes]


def sync_commune(loaded: LoadedCommune, *, dry_run: bool = False, force: bool = False,
                 run_by: str = "") -> CommunePlan:
    started, clock = timezone.now(), monotonic.perf_counter()
    config = loaded.config
    plan = CommunePlan(slug=config.slug, file=str(loaded.path), outcome="unchanged")
    commune = Commune.objects.filter(slug=config.slug).first()

    if (commune and not force and commune.config_digest == loaded.digest
            and commune.status != Commune.Status.PROVISIONING):
        plan.duration_ms = int((monotonic.perf_counter() - clock) * 1000)
        return plan  # fast path: nothing to look at, nothing recorded

    try:
        conflicts = Domain.objects.filter(domain__in=wanted_domains(loaded)).exclude(tenant__slug=config.slug)
        conflict = conflicts.select_related("tenant").first()
        if conflict:
            raise SyncError(f"le domaine « {conflict.domain} » appartient déjà à {conflict.tenant.slug}")
        if dry_run:
            _plan(plan, loaded, commune)
        else:
            with transaction.atomic():
                _apply(plan, loaded, commune)
    except Exception as exc:  # recorded, reported, and the transaction rolled back
        plan.outcome = "failed"
        plan.error = str(exc) if isinstance(exc, SyncError) else f"{type(exc).__name__}: {exc}"
        connection.set_schema_to_public()
    plan.duration_ms = int((monotonic.perf_counter() - clock) * 1000)
    _record(plan, loaded, started, dry_run=dry_run, run_by=run_by)
    return plan


class SyncError(Exception):
    pass


def _plan(plan: CommunePlan, loaded: LoadedCommune, commune: Commune | None) -> None:
    values = commune_field_values(loaded)
    wanted = wanted_domains(loaded)
    if commune is None or not schema_exists(loaded.config.schema_name):
        plan.outcome = "created"
        plan.domains_added = wanted
        plan.catalog = plan_catalog(loaded.config, schema_is_new=True)
        return
    plan.commune_fields = {
        name: (getattr(commune, name), value)
        for name, value in values.items()
        if getattr(commune, name) != value
    }
    current = set(commune.domains.values_list("domain", flat=True))
    plan.domains_added = [d for d in wanted if d not in current]
    plan.domains_removed = sorted(current - set(wanted))
    with schema_context(commune.schema_name):
        plan.catalog = plan_catalog(loaded.config)
    changed = plan.commune_fields or plan.domains_added or plan.domains_removed or plan.catalog
    plan.outcome = "updated" if changed or commune.config_digest != loaded.digest else "unchanged"


def _apply(plan: CommunePlan, loaded: LoadedCommune, commune: Commune | None) -> None:
    config = loaded.config
    is_new = commune is None
    if commune is None:
        commune = Commune(slug=config.slug, schema_name=config.schema_name,
                          status=Commune.Status.PROVISIONING, **commune_field_values(loaded))
        commune.save()
    if not schema_exists(commune.schema_name):
        # Inside the caller's transaction: PostgreSQL DDL is transactional, so a failure
        # later in this commune leaves no half-made schema behind.
        commune.create_schema(check_if_exists=True, verbosity=0)
    _plan(plan, loaded, commune)
    if is_new:
        plan.outcome = "created"
        plan.commune_fields = {}

    for name, value in commune_field_values(loaded).items():
        setattr(commune, name, value)
    commune.config = config.model_dump(mode="json")
    commune.config_digest = loaded.digest
    commune.last_synced_at = timezone.now()
    if commune.status == Commune.Status.PROVISIONING:
        commune.status = Commune.Status.ACTIVE
    commune.save()

    Domain.objects.filter(tenant=commune, domain__in=plan.domains_removed).delete()
    for domain in plan.domains_added:
        Domain.objects.create(tenant=commune, domain=domain, is_primary=False)
    primary = platform_domain_for(config.slug)
    Domain.objects.filter(tenant=commune).exclude(domain=primary).update(is_primary=False)
    Domain.objects.filter(tenant=commune, domain=primary).update(is_primary=True)

    with schema_context(commune.schema_name):
        apply_catalog(config, plan.catalog)


def _record(plan: CommunePlan, loaded: LoadedCommune, started: datetime, *, dry_run: bool, run_by: str):
    outcome = SyncRun.Outcome.FAILED if plan.outcome == "failed" else (
        SyncRun.Outcome.DRY_RUN if dry_run else SyncRun.Outcome.APPLIED)
    SyncRun.objects.create(
        commune=Commune.objects.filter(slug=plan.slug).first(),
        slug=plan.slug,
        config_file=str(loaded.path),
        config_digest=loaded.digest,
        outcome=outcome,
        plan=[change.as_json() for change in plan.catalog],
        plan_text="\n".join(plan.lines()),
        error=plan.error,
        started_at=started,
        duration_ms=plan.duration_ms,
        run_by=run_by,
    )


def ensure_public_tenant() -> Commune:
    """The platform's own row (public schema) answering on PLATFORM_DOMAIN and localhost."""
    public, _ = Commune.objects.get_or_create(
        schema_name=settings.PUBLIC_SCHEMA_NAME,
        defaults={"slug": "plateforme", "name": "Marelle", "kind": Commune.Kind.PLATFORM,
                  "status": Commune.Status.ACTIVE},
    )
    for host in dict.fromkeys([settings.PLATFORM_DOMAIN, "localhost", "127.0.0.1"]):
        Domain.objects.get_or_create(domain=host, defaults={"tenant": public, "is_primary": host == settings.PLATFORM_DOMAIN})
    return public
