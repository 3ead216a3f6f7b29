"""The booking API, mounted at /api/v1/ on each commune's host (see marelle.booking.api)."""

from django.urls import path

from marelle.booking import api

app_name = "booking_api"
urlpatterns = [
    path("enfants/<int:child_id>/inscriptions/", api.ChildEnrolmentListApi.as_view(), name="child-enrolments"),
    path("enfants/<int:child_id>/reservations/", api.ChildReservationListApi.as_view(), name="child-reservations"),
    path("inscriptions/<int:enrolment_id>/planning/", api.PlanningApi.as_view(), name="enrolment-planning"),
    path("inscriptions/<int:enrolment_id>/reservations/", api.EnrolmentReservationCreateApi.as_view(),
         name="enrolment-reservations"),
    path("reservations/<str:number>/", api.ReservationDetailApi.as_view(), name="reservation"),
]
