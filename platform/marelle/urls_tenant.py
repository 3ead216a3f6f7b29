"""URLs of a commune's portal (<slug>.<platform domain>)."""

from django.urls import path

from marelle.core import views as core_views
from marelle.portal import views as portal_views

urlpatterns = [
    path("", portal_views.home, name="home"),
    path("healthz", core_views.health, name="tenant-health"),
]
