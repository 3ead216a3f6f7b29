from django.shortcuts import render

from tenants.models import Commune


def platform_home(request):
    communes = (
        Commune.objects.filter(status=Commune.Status.ACTIVE)
        .exclude(kind=Commune.Kind.PLATFORM)
        .prefetch_related("domains")
        .order_by("name")
    )
    port = request.get_port()
    suffix = f":{port}" if port not in ("80", "443") else ""
    entries = [
        {"commune": c, "url": f"{request.scheme}://{next((d.domain for d in c.domains.all() if d.is_primary), c.slug)}{suffix}/"}
        for c in communes
    ]
    return render(request, "marelle/platform_home.html", {"entries": entries})
