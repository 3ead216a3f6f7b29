"""URLs of a commune's portal (<slug>.<platform domain>)."""

from django.urls import include, path

from marelle.portal import views as portal_views

urlpatterns = [
    path("", portal_views.home, name="home"),
    path("compte/", include("marelle.accounts.urls")),
    path("famille/", include("marelle.families.urls")),
    path("documents/", include("marelle.documents.urls")),
    path("gestion/", include("marelle.backoffice.urls")),
    path("api/", include("marelle.api.urls")),
]
