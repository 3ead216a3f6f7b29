"""URLs of a commune's portal (<slug>.<platform domain>)."""

from django.urls import path

from marelle.portal import views as portal_views

urlpatterns = [
    path("", portal_views.home, name="home"),
]
