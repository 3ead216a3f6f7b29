"""Back-office of a commune, mounted at /gestion/."""

from django.urls import path

from marelle.backoffice import views

app_name = "backoffice"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("familles/", views.family_list, name="families"),
    path("familles/nouvelle/", views.family_create, name="family_create"),
    path("familles/<int:family_id>/", views.family_detail, name="family"),
    path("demandes/", views.change_request_list, name="change_requests"),
    path("demandes/<int:change_request_id>/", views.change_request_detail, name="change_request"),
    path("demandes/<int:change_request_id>/accepter/", views.change_request_accept_view,
         name="change_request_accept"),
    path("demandes/<int:change_request_id>/refuser/", views.change_request_refuse_view,
         name="change_request_refuse"),
    path("comptes/", views.staff_accounts, name="staff_accounts"),
]
