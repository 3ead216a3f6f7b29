"""Forms of the billing pages. Amounts are typed in euros ("12,50") and handled in cents."""

from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError

from marelle.billing.models import Invoice, PaymentAttempt
from marelle.billing.pricing import format_euros
from marelle.billing.selectors import DESK_MEANS
from marelle.catalog.models import Regie
from marelle.core import clock
from marelle.core.forms import Form

CASH_LIMIT_CENTS = 30000
AMOUNT = re.compile(r"^(\d{1,7})(?:[.,](\d{1,2}))?$")


def parse_euros(text: str) -> int:
    """"12,5" → 1250, "1 234,56 €" → 123456; ValueError on anything else."""
    cleaned = re.sub(r"[\s\u00a0\u202f€]", "", str(text or ""))
    match = AMOUNT.match(cleaned)
    if not match:
        raise ValueError(text)
    euros, cents = match.group(1), (match.group(2) or "0").ljust(2, "0")
    return int(euros) * 100 + int(cents)


class EurosField(forms.CharField):
    """A positive amount in euros, cleaned to integer cents."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 20)
        kwargs.setdefault("help_text", "En euros, par exemple 12,50.")
        super().__init__(**kwargs)
        self.widget.attrs.update({"inputmode": "decimal", "autocomplete": "off"})

    def clean(self, value):
        value = super().clean(value)
        if value in ("", None):
            return None
        try:
            cents = parse_euros(value)
        except ValueError:
            raise ValidationError("Montant invalide : indiquez un montant en euros, par exemple 12,50.") from None
        if cents <= 0:
            raise ValidationError("Le montant doit être supérieur à 0.")
        return cents


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class RunCreateForm(Form):
    regie = forms.ModelChoiceField(label="Régie", queryset=Regie.objects.none())
    period_start = forms.DateField(label="Début de la période", widget=DateInput())
    period_end = forms.DateField(label="Fin de la période", widget=DateInput())
    label = forms.CharField(label="Libellé", max_length=100,
                            help_text="Repris sur chaque facture, par exemple « Septembre 2026 ».")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["regie"].queryset = Regie.objects.active()

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("period_start"), cleaned.get("period_end")
        if start and end and end < start:
            self.add_error("period_end", "La fin de la période doit être postérieure ou égale à son début.")
        if start and end and (end - start).days > 366:
            self.add_error("period_end", "Une facturation couvre au plus un an.")
        return cleaned


class JournalForm(Form):
    regie = forms.ModelChoiceField(label="Régie", queryset=Regie.objects.none(), empty_label=None)
    jour = forms.DateField(label="Jour", widget=DateInput())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["regie"].queryset = Regie.objects.active()


class ExportForm(Form):
    regie = forms.ModelChoiceField(label="Régie", queryset=Regie.objects.none(), required=False,
                                   empty_label="Toutes les régies")
    du = forms.DateField(label="Du", required=False, widget=DateInput())
    au = forms.DateField(label="Au", required=False, widget=DateInput())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["regie"].queryset = Regie.objects.active()

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("du") and cleaned.get("au") and cleaned["au"] < cleaned["du"]:
            self.add_error("au", "La date de fin doit être postérieure ou égale à la date de début.")
        return cleaned


class UnpaidFilterForm(Form):
    regie = forms.ModelChoiceField(label="Régie", queryset=Regie.objects.none(), required=False,
                                   empty_label="Toutes les régies")
    echues = forms.BooleanField(label="Seulement les factures échues", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["regie"].queryset = Regie.objects.active()


class FamilySearchForm(Form):
    q = forms.CharField(label="Famille", max_length=100, required=False,
                        help_text="Nom d'un responsable ou d'un enfant, e-mail, téléphone ou référence (F000123).")


class ManualPaymentForm(Form):
    """A payment received at the desk for one family: which invoices it settles, how, how much."""

    regie = forms.ModelChoiceField(label="Régie", queryset=Regie.objects.none(), empty_label=None)
    invoices = forms.ModelMultipleChoiceField(
        label="Factures réglées", queryset=Invoice.objects.none(), required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Sans facture cochée, le montant reste en avoir sur le compte de la famille.")
    means = forms.ChoiceField(label="Moyen de paiement",
                              choices=[(m.value, m.label) for m in DESK_MEANS])
    amount = EurosField(label="Montant reçu")
    reference = forms.CharField(label="Référence", max_length=40, required=False,
                                help_text="Numéro du chèque, référence du virement…")
    received_on = forms.DateField(label="Reçu le", widget=DateInput())

    def __init__(self, *args, family, **kwargs):
        super().__init__(*args, **kwargs)
        from marelle.billing.selectors import family_unpaid_invoices

        self.family = family
        unpaid = family_unpaid_invoices(family)
        self.fields["invoices"].queryset = unpaid
        self.fields["invoices"].label_from_instance = (
            lambda i: f"{i.number} – {i.label} – reste {format_euros(i.balance_cents)} ({i.regie.label})")
        self.fields["regie"].queryset = Regie.objects.active()
        first = next(iter(unpaid), None)
        if first is not None and not self.is_bound:
            self.fields["regie"].initial = first.regie_id
        self.fields["received_on"].initial = clock.today()

    def clean_received_on(self):
        day = self.cleaned_data["received_on"]
        if day > clock.today():
            raise ValidationError("La date de réception ne peut pas être dans le futur.")
        return day

    def clean(self):
        cleaned = super().clean()
        regie, invoices = cleaned.get("regie"), cleaned.get("invoices") or []
        if regie is not None:
            other = [i.number for i in invoices if i.regie_id != regie.pk]
            if other:
                self.add_error("invoices", f"Ces factures ne sont pas de la régie choisie : {', '.join(other)}.")
        if cleaned.get("means") == PaymentAttempt.Means.CASH and (cleaned.get("amount") or 0) > CASH_LIMIT_CENTS:
            self.add_error("amount", "Un paiement en espèces est limité à 300,00 €.")
        return cleaned


class CreditNoteForm(Form):
    amount = EurosField(label="Montant de l'avoir")
    reason = forms.CharField(label="Motif", max_length=120,
                             help_text="Repris sur l'avoir, par exemple « Repas non servi (grève du 14/09) ».")

    def __init__(self, *args, invoice: Invoice, **kwargs):
        super().__init__(*args, **kwargs)
        self.invoice = invoice

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        already = -sum(c.total_cents for c in self.invoice.credit_notes.all())
        remaining = self.invoice.total_cents - already
        if amount is not None and amount > remaining:
            raise ValidationError(f"L'avoir ne peut pas dépasser {format_euros(remaining)} "
                                  "(montant de la facture moins les avoirs déjà faits).")
        return amount

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Le motif de l'avoir est obligatoire.")
        return reason


class RefundForm(Form):
    amount = EurosField(label="Montant à rembourser")
    reason = forms.CharField(label="Motif", max_length=200)
    through_provider = forms.BooleanField(
        label="Rembourser par le prestataire de paiement en ligne (carte bancaire)", required=False,
        help_text="Sinon, le remboursement fait par un autre moyen (virement, espèces…) est seulement enregistré.")

    def __init__(self, *args, payment: PaymentAttempt, **kwargs):
        super().__init__(*args, **kwargs)
        self.payment = payment
        if payment.means != PaymentAttempt.Means.ONLINE:
            del self.fields["through_provider"]

    def clean_amount(self):
        amount = self.cleaned_data["amount"]
        refundable = self.payment.amount_cents - self.payment.refunded_cents
        if amount is not None and amount > refundable:
            raise ValidationError(f"Au plus {format_euros(refundable)} (montant du paiement moins ce qui a déjà "
                                  "été remboursé).")
        return amount

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise ValidationError("Le motif du remboursement est obligatoire.")
        return reason
