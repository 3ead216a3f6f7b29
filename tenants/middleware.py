"""Route each request to its commune's schema, and say so plainly when there is none."""

import threading
import time

from django.conf import settings
from django.shortcuts import render
from django_tenants.middleware.main import TenantMainMiddleware

from tenants.models import Commune

_host_cache: dict[str, tuple[float, Commune]] = {}
_host_cache_lock = threading.Lock()


def clear_host_cache() -> None:
    with _host_cache_lock:
        _host_cache.clear()


class CommuneMiddleware(TenantMainMiddleware):
    def get_tenant(self, domain_model, hostname):
        """Host -> commune, remembered for TENANT_HOST_CACHE_SECONDS in this process: the
        Domain lookup was a third of the cost of a small tenant-routed request
        (perf-floor.md). A suspension or a new domain takes effect within that delay."""
        ttl = settings.TENANT_HOST_CACHE_SECONDS
        if ttl <= 0:
            return super().get_tenant(domain_model, hostname)
        now = time.monotonic()
        cached = _host_cache.get(hostname)
        if cached and cached[0] > now:
            return cached[1]
        tenant = super().get_tenant(domain_model, hostname)
        with _host_cache_lock:
            if len(_host_cache) > 10_000:
                _host_cache.clear()
            _host_cache[hostname] = (now + ttl, tenant)
        return tenant

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
