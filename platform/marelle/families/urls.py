from django.urls import path

from marelle.families import views

app_name = "families"

urlpatterns = [
    path("", views.home, name="home"),
    path("informations/", views.family_edit, name="edit"),
    path("enfants/nouveau/", views.child_new, name="child_new"),
    path("enfants/<int:child_id>/", views.child_detail, name="child"),
    path("enfants/<int:child_id>/modifier/", views.child_edit, name="child_edit"),
    path("enfants/<int:child_id>/contacts/nouveau/", views.contact_edit, name="contact_new"),
    path("enfants/<int:child_id>/contacts/<int:contact_id>/", views.contact_edit, name="contact_edit"),
    path("enfants/<int:child_id>/contacts/<int:contact_id>/supprimer/", views.contact_delete, name="contact_delete"),
    path("demandes/", views.change_requests, name="change_requests"),
    path("mes-donnees.json", views.export, name="export"),
    path("cloture/", views.close, name="close"),
    path("communes", views.postcode_lookup, name="postcode_lookup"),
]
