"""Families' billing pages, mounted at /factures/ (namespace "billing")."""

from django.urls import path

from marelle.billing import views_family as views

app_name = "billing"
urlpatterns = [
    path("", views.invoices, name="invoices"),
    path("<int:invoice_id>/", views.invoice, name="invoice"),
    path("<int:invoice_id>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("payer/", views.pay, name="pay"),
    path("paiements/<int:payment_id>/", views.payment, name="payment"),
    path("a-payer/", views.baskets, name="baskets"),
    path("a-payer/payer/", views.basket_pay, name="basket_pay"),
]
