"""Régisseur's billing pages, mounted at /gestion/facturation/ (namespace "billing_staff")."""

from django.urls import path

from marelle.billing import views_staff as views

app_name = "billing_staff"
urlpatterns = [
    path("", views.runs, name="runs"),
    path("facturations/nouvelle/", views.run_create, name="run_create"),
    path("facturations/<int:run_id>/", views.run_detail, name="run"),
    path("facturations/<int:run_id>/emettre/", views.run_issue, name="run_issue"),
    path("facturations/<int:run_id>/abandonner/", views.run_abandon, name="run_abandon"),
    path("journal/", views.journal, name="journal"),
    path("impayes/", views.unpaid, name="unpaid"),
    path("impayes/relancer/", views.remind, name="remind"),
    path("exports/", views.exports, name="exports"),
    path("exports/factures.csv", views.export_invoices_csv, name="export_invoices"),
    path("exports/paiements.csv", views.export_payments_csv, name="export_payments"),
    path("reglements/nouveau/", views.manual_payment, name="manual_payment"),
    path("factures/<int:invoice_id>/", views.invoice_detail, name="invoice"),
    path("factures/<int:invoice_id>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("factures/<int:invoice_id>/avoir/", views.credit_note, name="credit_note"),
    path("factures/<int:invoice_id>/utiliser-credit/", views.credit_use, name="credit_use"),
    path("paiements/<int:payment_id>/", views.payment_detail, name="payment"),
    path("paiements/<int:payment_id>/rembourser/", views.payment_refund, name="payment_refund"),
    path("paiements/<int:payment_id>/accepter-montant/", views.payment_accept_amount, name="payment_accept_amount"),
]
