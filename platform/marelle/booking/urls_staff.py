"""Staff side of booking, mounted at /gestion/reservations/ (back-office)."""

from django.urls import path

from marelle.booking import views_staff as views

app_name = "booking_staff"
urlpatterns = [
    path("", views.index, name="index"),
    path("demandes/", views.requests_queue, name="requests"),
    path("inscriptions/", views.enrolments, name="enrolments"),
    path("inscriptions/<int:enrolment_id>/accepter/", views.enrolment_accept, name="enrolment_accept"),
    path("inscriptions/<int:enrolment_id>/refuser/", views.enrolment_refuse, name="enrolment_refuse"),
    path("inscriptions/<int:enrolment_id>/adhesion-payee/", views.enrolment_adhesion_paid,
         name="enrolment_adhesion_paid"),
    path("presences/", views.expected, name="expected"),
    path("simulation/", views.simulate, name="simulate"),
]
