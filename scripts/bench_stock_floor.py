"""The floor of the booking benchmark's target (scripts/bench_booking.py, phase
``floor_stock``): the bare stack's tenant-routed read of 20 rows, as
shared/reference/perf-floor.md measured it (§3). The benchmark's second gunicorn serves it
(``bench_stock_floor:server_app()``); it is never part of the product.

The stack's stock parts only: django-tenants' own middleware (its Domain⋈Client lookup on
every request, no host cache) before Django's default middleware, and a view that reads one
child's 20 bookings as model instances with their unit joined, sent as JSON. Otherwise the
product's settings, database and persistent connections (CONN_MAX_AGE).

Imported by gunicorn with DJANGO_SETTINGS_MODULE set: the middleware below subclasses
django-tenants', which reads the settings when imported.
"""

from bench_booking import FLOOR_ROWS, STOCK_FLOOR_PATH
from django_tenants.middleware.main import TenantMainMiddleware

MIDDLEWARE = [
    "bench_stock_floor.StockTenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
urlpatterns: list = []  # filled by server_app()


class StockTenantMiddleware(TenantMainMiddleware):
    """django-tenants' middleware as it comes, except that its lookup leaves out our
    communes' configuration (a JSON document of some 3 kB): perf-floor.md's tenants had
    none, and the floor must not be slowed by a cost of ours."""

    def get_tenant(self, domain_model, hostname):
        return domain_model.objects.select_related("tenant").defer("tenant__config").get(domain=hostname).tenant


def floor_view(request, child_id):
    from django.http import JsonResponse
    from marelle.booking.models import Booking

    # Rows as narrow as perf-floor.md's (a booking: child, day, unit, state; its service): ours
    # have some twenty columns, and building them would slow the floor down.
    bookings = (Booking.objects.filter(child_id=child_id).select_related("unit")
                .only("child_id", "day", "state", "unit__code", "unit__label").order_by("-day", "unit")[:FLOOR_ROWS])
    return JsonResponse({"rows": [{"id": b.pk, "child": b.child_id, "day": b.day, "unit": b.unit.code,
                                   "label": b.unit.label, "state": b.state} for b in bookings]})


def server_app():
    """WSGI entry point: Django set up with the product's settings, then this module's
    middleware and its one URL."""
    import django
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.urls import path

    django.setup(set_prefix=False)
    global urlpatterns
    urlpatterns = [path(STOCK_FLOOR_PATH.format(child_id="<int:child_id>").lstrip("/"), floor_view)]
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = MIDDLEWARE
    return WSGIHandler()
