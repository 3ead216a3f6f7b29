from django.db import connection


def commune(request):
    """The current commune and its branding, for every template."""
    tenant = getattr(request, "tenant", None) or getattr(connection, "tenant", None)
    if tenant is None or getattr(tenant, "is_platform", True):
        return {"commune": None, "branding": {"primary_color": "#1d4ed8", "secondary_color": "#f59e0b"}}
    identity = (tenant.config or {}).get("identity", {})
    return {"commune": tenant, "identity": identity, "branding": identity.get("branding", {})}
