from datetime import date

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from marelle.catalog.models import AuthorisationType
from marelle.core.clock import today
from marelle.core.forms import Form, ModelForm
from marelle.families.models import (
    ALLERGIES,
    ILLNESSES,
    VACCINES,
    Child,
    ChildContact,
    ChildHealth,
    Family,
    Guardian,
)
from marelle.families.validators import (
    normalize_phone,
    validate_city_for_postcode,
    validate_postcode,
)

YES_NO = [("oui", _("Oui")), ("non", _("Non"))]
RELATIONSHIPS = ["Mère", "Père", "Grand-mère", "Grand-père", "Tante", "Oncle", "Sœur", "Frère",
                 "Beau-père", "Belle-mère", "Assistante maternelle", "Voisin·e", "Ami·e de la famille"]


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class AddressMixin:
    """Postcode must exist and the city must be one it serves (official spelling kept)."""

    address_required = True

    def clean_postcode(self):
        value = self.cleaned_data.get("postcode", "")
        if not value and not self.address_required:
            return value
        return validate_postcode(value)

    def clean(self):
        data = super().clean()
        postcode, city = data.get("postcode"), data.get("city")
        if postcode and city:
            try:
                data["city"] = validate_city_for_postcode(postcode, city)
            except ValidationError as error:
                self.add_error("city", error)
        elif postcode and not city:
            self.add_error("city", _("Indiquez la ville."))
        return data


def _phone_cleaner(name, required=False):
    def clean(self):
        value = self.cleaned_data.get(name, "")
        if not value:
            if required:
                raise ValidationError(_("Ce champ est obligatoire."))
            return ""
        return normalize_phone(value)

    return clean


class FamilyForm(ModelForm):
    class Meta:
        model = Family
        fields = ["situation", "allowance_scheme", "allowance_number", "quotient", "dependent_children"]
        help_texts = {
            "quotient": _("Indiqué sur votre attestation CAF ou MSA. Sans justificatif, le tarif le plus élevé "
                          "s'applique."),
        }

    def clean(self):
        data = super().clean()
        if data.get("allowance_scheme") in ("caf", "msa") and not data.get("allowance_number"):
            self.add_error("allowance_number", _("Indiquez votre numéro d'allocataire."))
        return data


class GuardianForm(AddressMixin, ModelForm):
    class Meta:
        model = Guardian
        fields = ["civility", "last_name", "first_name", "email", "phone_mobile", "phone_home", "phone_work",
                  "address_line", "address_complement", "postcode", "city", "profession", "employer"]
        widgets = {
            "civility": forms.RadioSelect,
            "postcode": forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "postal-code",
                                               "data-postcode": "true"}),
            "city": forms.TextInput(attrs={"autocomplete": "address-level2", "list": "communes"}),
            "phone_mobile": forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
            "phone_home": forms.TextInput(attrs={"type": "tel"}),
            "phone_work": forms.TextInput(attrs={"type": "tel"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("civility", "address_line", "postcode", "city"):
            self.fields[name].required = True
        self.fields["civility"].choices = [c for c in self.fields["civility"].choices if c[0]]

    clean_phone_mobile = _phone_cleaner("phone_mobile")
    clean_phone_home = _phone_cleaner("phone_home")
    clean_phone_work = _phone_cleaner("phone_work")

    def clean(self):
        data = super().clean()
        if not any(data.get(name) for name in ("phone_mobile", "phone_home", "phone_work")) and not any(
                name in self.errors for name in ("phone_mobile", "phone_home", "phone_work")):
            self.add_error("phone_mobile", _("Indiquez au moins un numéro de téléphone."))
        return data


class ChildForm(ModelForm):
    class Meta:
        model = Child
        fields = ["last_name", "first_name", "birth_date", "sex", "school", "school_level", "diet", "diet_details"]
        widgets = {"birth_date": DateInput(), "sex": forms.RadioSelect}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["sex"].choices = [c for c in self.fields["sex"].choices if c[0]]

    def clean_birth_date(self):
        value = self.cleaned_data["birth_date"]
        now = today()
        if value > now:
            raise ValidationError(_("La date de naissance est dans le futur."))
        if value < date(now.year - 25, now.month, 1):
            raise ValidationError(_("La date de naissance semble erronée (plus de 25 ans)."))
        return value

    def clean(self):
        data = super().clean()
        if data.get("diet") in (Child.Diet.MEDICAL, Child.Diet.OTHER) and not data.get("diet_details"):
            self.add_error("diet_details", _("Précisez le régime alimentaire."))
        return data


class HealthForm(Form):
    """The "renseignements médicaux" block; vaccines, illnesses and allergies are rows of a table."""

    pai = forms.ChoiceField(label=_("L'enfant a-t-il un PAI (projet d'accueil individualisé) ?"), choices=YES_NO,
                            widget=forms.RadioSelect, initial="non")
    pai_details = forms.CharField(label=_("Précisions sur le PAI"), required=False, widget=forms.Textarea)
    medical_history = forms.CharField(label=_("Antécédents médicaux"), required=False, widget=forms.Textarea)
    observations = forms.CharField(label=_("Observations (lunettes, appareil dentaire, sommeil…)"), required=False,
                                   widget=forms.Textarea)
    doctor_name = forms.CharField(label=_("Médecin traitant"), max_length=150, required=False)
    doctor_phone = forms.CharField(label=_("Téléphone du médecin"), max_length=20, required=False,
                                   widget=forms.TextInput(attrs={"type": "tel"}))
    doctor_city = forms.CharField(label=_("Ville du médecin"), max_length=100, required=False)

    def __init__(self, *args, health: ChildHealth | None = None, **kwargs):
        initial = kwargs.pop("initial", {}) or {}
        if health is not None:
            initial.update(_health_initial(health))
        super().__init__(*args, initial=initial, **kwargs)
        for code, label in VACCINES:
            self.fields[f"vaccine_{code}"] = forms.BooleanField(label=label, required=False)
            self.fields[f"vaccine_{code}_last"] = forms.DateField(label=_("Dernière injection ({})").format(label),
                                                                  required=False, widget=DateInput())
        for code, label in ILLNESSES:
            self.fields[f"illness_{code}"] = forms.ChoiceField(label=label, choices=YES_NO, initial="non",
                                                               widget=forms.RadioSelect)
        for code, label in ALLERGIES:
            self.fields[f"allergy_{code}"] = forms.ChoiceField(label=label, choices=YES_NO, initial="non",
                                                               widget=forms.RadioSelect)
            self.fields[f"allergy_{code}_details"] = forms.CharField(label=_("Précisez ({})").format(label.lower()),
                                                                     max_length=300, required=False)

    def clean_doctor_phone(self):
        value = self.cleaned_data.get("doctor_phone", "")
        return normalize_phone(value) if value else ""

    def clean(self):
        data = super().clean()
        if data.get("pai") == "oui" and not data.get("pai_details"):
            self.add_error("pai_details", _("Précisez le PAI (allergie, traitement, conduite à tenir)."))
        for code, _label in ALLERGIES:
            if data.get(f"allergy_{code}") == "oui" and not data.get(f"allergy_{code}_details"):
                self.add_error(f"allergy_{code}_details", _("Précisez l'allergie."))
        for code, _label in VACCINES:
            last = data.get(f"vaccine_{code}_last")
            if last and last > today():
                self.add_error(f"vaccine_{code}_last", _("La date est dans le futur."))
        return data

    def health_values(self) -> dict:
        data = self.cleaned_data
        return {
            "pai": data["pai"] == "oui",
            "pai_details": data["pai_details"],
            "vaccinations": {code: {"done": bool(data[f"vaccine_{code}"]),
                                    "last": data[f"vaccine_{code}_last"].isoformat() if data[f"vaccine_{code}_last"] else None}
                             for code, _ in VACCINES if data[f"vaccine_{code}"] or data[f"vaccine_{code}_last"]},
            "illnesses": {code: True for code, _ in ILLNESSES if data[f"illness_{code}"] == "oui"},
            "allergies": {code: {"has": True, "details": data[f"allergy_{code}_details"]}
                          for code, _ in ALLERGIES if data[f"allergy_{code}"] == "oui"},
            "medical_history": data["medical_history"],
            "observations": data["observations"],
            "doctor_name": data["doctor_name"],
            "doctor_phone": data["doctor_phone"],
            "doctor_city": data["doctor_city"],
        }

    def vaccine_rows(self):
        return [(label, self[f"vaccine_{code}"], self[f"vaccine_{code}_last"]) for code, label in VACCINES]

    def illness_fields(self):
        return [self[f"illness_{code}"] for code, _ in ILLNESSES]

    def allergy_rows(self):
        return [(self[f"allergy_{code}"], self[f"allergy_{code}_details"]) for code, _ in ALLERGIES]


def _health_initial(health: ChildHealth) -> dict:
    initial = {
        "pai": "oui" if health.pai else "non", "pai_details": health.pai_details,
        "medical_history": health.medical_history, "observations": health.observations,
        "doctor_name": health.doctor_name, "doctor_phone": health.doctor_phone, "doctor_city": health.doctor_city,
    }
    for code, _label in VACCINES:
        entry = health.vaccinations.get(code) or {}
        initial[f"vaccine_{code}"] = entry.get("done", False)
        initial[f"vaccine_{code}_last"] = entry.get("last")
    for code, _label in ILLNESSES:
        initial[f"illness_{code}"] = "oui" if health.illnesses.get(code) else "non"
    for code, _label in ALLERGIES:
        entry = health.allergies.get(code) or {}
        initial[f"allergy_{code}"] = "oui" if entry.get("has") else "non"
        initial[f"allergy_{code}_details"] = entry.get("details", "")
    return initial


class AuthorisationsForm(Form):
    def __init__(self, *args, types: list[AuthorisationType], answers: dict[int, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.types = types
        for kind in types:
            self.fields[f"auth_{kind.pk}"] = forms.ChoiceField(
                label=kind.label, help_text=kind.description, widget=forms.RadioSelect,
                choices=[("oui", _("Oui")), ("non", _("Non")), ("non_concerne", _("Non concerné"))],
                initial=(answers or {}).get(kind.pk))

    def answers(self) -> dict[int, str]:
        return {kind.pk: self.cleaned_data[f"auth_{kind.pk}"] for kind in self.types}


class ConsentForm(Form):
    consent = forms.BooleanField(
        label=_("J'accepte : je certifie l'exactitude de ces informations et j'accepte qu'elles soient utilisées par "
                "les services de la commune pour l'accueil de mon enfant."),
        error_messages={"required": _("Cochez « J'accepte » pour enregistrer la fiche.")})


class ContactForm(AddressMixin, ModelForm):
    address_required = False

    class Meta:
        model = ChildContact
        fields = ["last_name", "first_name", "relationship", "phone_1", "phone_2", "address_line", "postcode",
                  "city", "is_emergency_contact", "can_pick_up"]
        widgets = {
            "relationship": forms.TextInput(attrs={"list": "relationships"}),
            "phone_1": forms.TextInput(attrs={"type": "tel"}),
            "phone_2": forms.TextInput(attrs={"type": "tel"}),
            "postcode": forms.TextInput(attrs={"inputmode": "numeric", "data-postcode": "true"}),
            "city": forms.TextInput(attrs={"list": "communes"}),
        }

    clean_phone_1 = _phone_cleaner("phone_1", required=True)
    clean_phone_2 = _phone_cleaner("phone_2")

    def clean(self):
        data = super().clean()
        if not data.get("is_emergency_contact") and not data.get("can_pick_up"):
            self.add_error("is_emergency_contact", _("Cochez au moins un rôle : urgence ou venir chercher l'enfant."))
        return data


class CloseAccountForm(Form):
    password = forms.CharField(label=_("Mot de passe"), strip=False, widget=forms.PasswordInput)
    confirm = forms.BooleanField(label=_("Je comprends que mes informations seront anonymisées et que je ne pourrai "
                                         "plus me connecter."))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        if not self.user.check_password(self.cleaned_data["password"]):
            raise ValidationError(_("Mot de passe incorrect."))
        return self.cleaned_data["password"]
