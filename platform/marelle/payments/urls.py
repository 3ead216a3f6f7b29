"""Mount at ``/paiement/`` in the commune's URLconf::

    path("paiement/", include("marelle.payments.urls")),
"""

from django.urls import path

from marelle.payments import views

app_name = "payments"
urlpatterns = [
    path("<int:payment_id>/demarrer/", views.start, name="start"),
    path("<int:payment_id>/retour/", views.payment_return, name="return"),
    path("notification/<slug:provider>/", views.notification, name="notification"),
    path("notification/<slug:provider>/<slug:regie_code>/", views.notification, name="notification_regie"),
]
