"""Route each request to its commune's schema, and say so plainly when there is none."""

from django.shortcuts import render
from django_tenants.middleware.main import TenantMainMiddleware

from tenants.models import Commune


class CommuneMiddleware(TenantMainMiddleware):
    def process_request(self, request):
        response = super().process_request(request)
        if response is not None:
            return response
        commune = request.tenant
        if commune.status == Commune.Status.ACTIVE:
            return None
        if commune.status == Commune.Status.ARCHIVED:
            return render(request, "tenants/unknown_host.html", {"host": request.get_host()}, status=404)
        template = ("tenants/suspended.html" if commune.status == Commune.Status.SUSPENDED
                    else "tenants/provisioning.html")
        response = render(request, template, {"commune": commune}, status=503)
        response["Retry-After"] = "3600"
        return response

    def no_tenant_found(self, request, hostname):
        return render(request, "tenants/unknown_host.html", {"host": hostname}, status=404)
