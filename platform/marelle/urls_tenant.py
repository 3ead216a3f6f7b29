"""URLs of a commune's portal (<slug>.<platform domain>)."""

from django.urls import include, path

from marelle.portal import views as portal_views

urlpatterns = [
    path("", portal_views.home, name="home"),
    path("compte/", include("marelle.accounts.urls")),
    path("famille/", include("marelle.families.urls")),
    path("documents/", include("marelle.documents.urls")),
    path("reservations/", include("marelle.booking.urls_family")),
    path("gestion/reservations/", include("marelle.booking.urls_staff")),
    path("factures/", include("marelle.billing.urls_family")),
    path("paiement/", include("marelle.payments.urls")),
    path("gestion/facturation/", include("marelle.billing.urls_staff")),
    path("gestion/tresor-public/", include("marelle.recovery.urls_staff")),
    path("gestion/", include("marelle.backoffice.urls")),
    path("api/v1/", include("marelle.booking.urls_api")),
    path("api/", include("marelle.api.urls")),
]
