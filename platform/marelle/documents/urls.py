"""/documents/: the family's pièces justificatives, and their review by staff (gestion/)."""

from django.urls import path

from marelle.documents import views

app_name = "documents"
urlpatterns = [
    path("", views.mine, name="mine"),
    path("envoyer/", views.upload, name="upload"),
    path("<int:pk>/telecharger/", views.download, name="download"),
    path("gestion/", views.review_queue, name="review_queue"),
    path("gestion/<int:pk>/", views.review, name="review"),
    path("gestion/<int:pk>/accepter/", views.accept, name="accept"),
    path("gestion/<int:pk>/refuser/", views.refuse, name="refuse"),
    path("gestion/<int:pk>/telecharger/", views.staff_download, name="staff_download"),
]
