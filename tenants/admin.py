"""Operators' site (public schema): communes, their domains and sync history."""

from django.contrib import admin

from tenants.models import Commune, Domain, SyncRun


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0
    fields = ["domain", "is_primary"]


class SyncRunInline(admin.TabularInline):
    model = SyncRun
    extra = 0
    fields = ["started_at", "outcome", "duration_ms", "run_by", "plan_text", "error"]
    readonly_fields = fields
    can_delete = False
    ordering = ["-started_at"]
    max_num = 0

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-started_at")


@admin.register(Commune)
class CommuneAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "kind", "status", "last_synced_at", "primary_domain"]
    list_filter = ["status", "kind"]
    search_fields = ["name", "slug", "siren"]
    # The YAML is the source of truth: only the status is an operator's decision here.
    readonly_fields = ["slug", "schema_name", "name", "kind", "siren", "config_file", "config_digest",
                       "last_synced_at", "created_at", "config"]
    fields = ["name", "slug", "schema_name", "kind", "siren", "status", "config_file", "config_digest",
              "last_synced_at", "created_at", "config"]
    inlines = [DomainInline, SyncRunInline]
    actions = ["suspend", "reactivate"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("domains")

    @admin.display(description="Domaine principal")
    def primary_domain(self, commune):
        return next((d.domain for d in commune.domains.all() if d.is_primary), "")

    def has_add_permission(self, request):
        return False  # communes are created by `manage.py communes sync`

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Suspendre les communes choisies")
    def suspend(self, request, queryset):
        queryset.exclude(kind=Commune.Kind.PLATFORM).update(status=Commune.Status.SUSPENDED)

    @admin.action(description="Réactiver les communes choisies")
    def reactivate(self, request, queryset):
        queryset.filter(status=Commune.Status.SUSPENDED).update(status=Commune.Status.ACTIVE)


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ["slug", "started_at", "outcome", "duration_ms", "run_by"]
    list_filter = ["outcome", "slug"]
    readonly_fields = [f.name for f in SyncRun._meta.fields]

    def has_add_permission(self, request):
        return False
