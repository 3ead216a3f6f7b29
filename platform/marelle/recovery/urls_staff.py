"""Régisseur's pages for invoices sent to the Trésor public, mounted at /gestion/tresor-public/
(namespace "recovery_staff")."""

from django.urls import path

from marelle.recovery import views_staff as views

app_name = "recovery_staff"
urlpatterns = [
    path("", views.batches, name="batches"),
    path("regies/<int:regie_id>/preparer/", views.prepare, name="prepare"),
    path("regies/<int:regie_id>/retours/", views.feedback, name="feedback"),
    path("bordereaux/<int:batch_id>/", views.batch_detail, name="batch"),
    path("bordereaux/<int:batch_id>/generer/", views.export, name="export"),
    path("bordereaux/<int:batch_id>/abandonner/", views.abandon, name="abandon"),
    path("bordereaux/<int:batch_id>/fichier/", views.download, name="download"),
]
