from django.apps import AppConfig


class BookingConfig(AppConfig):
    name = "marelle.booking"
    label = "booking"
    verbose_name = "Inscriptions et réservations"
