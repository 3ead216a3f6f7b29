"""Public-schema models: the communes (tenants), their domains and their sync history."""

from django.db import models
from django.utils.translation import gettext_lazy as _
from django_tenants.models import DomainMixin, TenantMixin


class Commune(TenantMixin):
    class Kind(models.TextChoices):
        PLATFORM = "platform", _("Plateforme")
        COMMUNE = "commune", _("Commune")
        COMMUNAUTE_DE_COMMUNES = "communaute_de_communes", _("Communauté de communes")
        COMMUNAUTE_D_AGGLOMERATION = "communaute_d_agglomeration", _("Communauté d'agglomération")
        SYNDICAT = "syndicat", _("Syndicat")
        AUTRE = "autre", _("Autre collectivité")

    class Status(models.TextChoices):
        PROVISIONING = "provisioning", _("En cours de mise en service")
        ACTIVE = "active", _("Active")
        SUSPENDED = "suspended", _("Suspendue")
        ARCHIVED = "archived", _("Archivée")

    slug = models.SlugField(_("identifiant"), max_length=63, unique=True)
    name = models.CharField(_("nom"), max_length=200)
    kind = models.CharField(_("type"), max_length=40, choices=Kind.choices, default=Kind.COMMUNE)
    siren = models.CharField(_("SIREN"), max_length=9, blank=True)
    status = models.CharField(_("statut"), max_length=20, choices=Status.choices, default=Status.PROVISIONING)
    # The validated YAML, canonical JSON: what the portal reads at runtime (identity,
    # branding, rules) without re-reading files, and the digest that makes re-syncs no-ops.
    config = models.JSONField(_("configuration"), default=dict, blank=True)
    config_digest = models.CharField(_("empreinte de la configuration"), max_length=64, blank=True)
    config_file = models.CharField(_("fichier de configuration"), max_length=300, blank=True)
    last_synced_at = models.DateTimeField(_("dernière synchronisation"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Schemas are created by `communes sync`, an operator action, never by a request.
    auto_create_schema = False
    auto_drop_schema = False

    class Meta:
        verbose_name = _("commune")
        verbose_name_plural = _("communes")
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_platform(self) -> bool:
        return self.kind == self.Kind.PLATFORM


class Domain(DomainMixin):
    class Meta:
        verbose_name = _("domaine")
        verbose_name_plural = _("domaines")

    def __str__(self):
        return self.domain


class SyncRun(models.Model):
    """One `communes sync` of one commune: what it planned and whether it applied it."""

    class Outcome(models.TextChoices):
        APPLIED = "applied", _("Appliquée")
        DRY_RUN = "dry_run", _("Simulation")
        FAILED = "failed", _("Échec")

    commune = models.ForeignKey(Commune, on_delete=models.CASCADE, related_name="sync_runs", null=True)
    slug = models.SlugField(max_length=63)
    config_file = models.CharField(max_length=300)
    config_digest = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    plan = models.JSONField(default=list)
    plan_text = models.TextField(blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    run_by = models.CharField(max_length=150, blank=True)

    class Meta:
        verbose_name = _("synchronisation")
        verbose_name_plural = _("synchronisations")
        ordering = ["-started_at"]

    def __str__(self):
        return f"{self.slug} {self.started_at:%Y-%m-%d %H:%M} {self.get_outcome_display()}"
