"""URLs of the platform's own domain (public schema): landing page and operators' site."""

from django.contrib import admin
from django.urls import path

from marelle.core import views

admin.site.site_header = "Marelle — opérateurs de la plateforme"
admin.site.site_title = "Marelle"

urlpatterns = [
    path("", views.platform_home, name="platform-home"),
    path("admin/", admin.site.urls),
]
