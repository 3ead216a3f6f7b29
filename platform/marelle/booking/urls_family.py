"""The families' enrolment and booking pages, mounted at /reservations/."""

from django.urls import path

from marelle.booking import views_family as views

app_name = "booking"

urlpatterns = [
    path("", views.index, name="index"),
    path("inscrire/", views.enrol, name="enrol"),
    path("inscription/<int:enrolment_id>/", views.enrolment, name="enrolment"),
    # The "payment required" step of an adhesion paid immediately: the billing module
    # replaces this view (keep the name) when online payment arrives.
    path("inscription/<int:enrolment_id>/adhesion/", views.adhesion_payment, name="adhesion_payment"),
    path("<int:enrolment_id>/planning/", views.planning_view, name="planning"),
    path("<int:enrolment_id>/recapitulatif/", views.recap, name="recap"),
    path("reservation/<str:number>/", views.reservation, name="reservation"),
    path("historique/<int:child_id>/", views.history, name="history"),
]
