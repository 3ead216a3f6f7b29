"""Back-office forms (French labels, errors at the field)."""

import re

from django import forms
from django.contrib.auth import get_user_model

from marelle.accounts.models import User
from marelle.families.models import Civility

try:  # the project's accessible rendering (labels, aria-describedby, aria-invalid)
    from marelle.core.forms import Form
except ImportError:  # pragma: no cover - only while the core forms module is not there
    Form = forms.Form


def _email_free(email: str) -> str:
    email = get_user_model().objects.normalize_email(email)
    if get_user_model().objects.filter(email__iexact=email).exists():
        raise forms.ValidationError("Un compte existe déjà avec cette adresse e-mail dans la commune.")
    return email


class RefuseForm(Form):
    reason = forms.CharField(
        label="Motif du refus", widget=forms.Textarea(attrs={"rows": 3}), max_length=2000,
        help_text="Il est envoyé à la famille avec la décision.",
        error_messages={"required": "Indiquez le motif du refus : il est envoyé à la famille."})

    def __init__(self, *args, change_request_id=None, **kwargs):
        # One form per request on the queue page: ids must not collide.
        if change_request_id is not None:
            kwargs.setdefault("auto_id", f"id_refus_{change_request_id}_%s")
        super().__init__(*args, **kwargs)


class StaffAccountForm(Form):
    email = forms.EmailField(label="Adresse e-mail", max_length=254,
                             help_text="L'invitation à choisir un mot de passe est envoyée à cette adresse.")
    first_name = forms.CharField(label="Prénom", max_length=150)
    last_name = forms.CharField(label="Nom", max_length=150)
    role = forms.ChoiceField(label="Rôle", choices=User.StaffRole.choices, widget=forms.RadioSelect)

    def clean_email(self):
        return _email_free(self.cleaned_data["email"])


class DeskFamilyForm(Form):
    civility = forms.ChoiceField(label="Civilité", choices=Civility.choices, widget=forms.RadioSelect,
                                 required=False)
    last_name = forms.CharField(label="Nom", max_length=100)
    first_name = forms.CharField(label="Prénom", max_length=100)
    email = forms.EmailField(label="Adresse e-mail", max_length=254,
                             help_text="La famille y reçoit le lien pour choisir son mot de passe.")
    phone_mobile = forms.CharField(label="Téléphone portable", max_length=20, required=False,
                                   widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}))
    address_line = forms.CharField(label="Adresse", max_length=200)
    address_complement = forms.CharField(label="Complément d'adresse", max_length=200, required=False)
    postcode = forms.CharField(label="Code postal", max_length=5,
                               widget=forms.TextInput(attrs={"inputmode": "numeric"}))
    city = forms.CharField(label="Ville", max_length=100)

    def clean_email(self):
        return _email_free(self.cleaned_data["email"])

    def clean_postcode(self):
        postcode = self.cleaned_data["postcode"].replace(" ", "")
        if not re.fullmatch(r"\d{5}", postcode):
            raise forms.ValidationError("Le code postal compte 5 chiffres (par exemple 26300).")
        return postcode

    def clean_phone_mobile(self):
        phone = self.cleaned_data["phone_mobile"].strip()
        if phone and len(re.sub(r"\D", "", phone)) < 10:
            raise forms.ValidationError("Le numéro de téléphone compte au moins 10 chiffres.")
        return phone
